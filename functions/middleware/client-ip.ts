import type { Context } from 'hono'
import type { AppEnv } from '../env'

/** The header Cloudflare's edge sets to the connecting client's address (a client cannot set it). */
export const CLOUDFLARE_IP_HEADER = 'cf-connecting-ip'

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/

/**
 * `text` as a canonical IP address (dotted-quad IPv4, or RFC 5952 IPv6 as the URL parser prints
 * it), or null when it is anything else: no ports, zones, brackets, names or shortened IPv4.
 */
export function parseIpAddress(text: string): string | null {
  const value = text.trim()
  if (IPV4.test(value)) {
    return value
  }
  if (value.length > 45 || !value.includes(':') || !IPV6_CHARS.test(value)) {
    return null
  }
  try {
    const host = new URL(`http://[${value}]/`).hostname
    return host.slice(1, -1)
  } catch {
    return null
  }
}

/**
 * The caller's address, or null. Only the configured `TRUSTED_IP_HEADER` is read, and
 * `CF-Connecting-IP` only when the runtime marks the request as having come through Cloudflare's
 * edge (`request.cf`), which overwrites whatever the client sent. A list (`X-Forwarded-For`)
 * yields its last entry, the one the trusted proxy appended. Anything that is not an IP is null.
 */
export function clientIp(c: Context<AppEnv>): string | null {
  const header = c.var.config.trustedIpHeader
  if (header === undefined) {
    return null
  }
  if (header === CLOUDFLARE_IP_HEADER && c.req.raw.cf === undefined) {
    return null
  }
  const raw = c.req.header(header)
  if (raw === undefined) {
    return null
  }
  return parseIpAddress(raw.split(',').at(-1) ?? '')
}
