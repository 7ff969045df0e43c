/**
 * Outbound fetches to URLs a client named (a Client ID Metadata Document, a `jwks_uri`): the
 * server-side request forgery guard. No Hono here: typed input, a tagged outcome.
 *
 * - https only (a loopback URL may be http when loopback is allowed: tests, local development);
 * - literal addresses must be public unicast: private, loopback, link-local, CGNAT, multicast,
 *   documentation, benchmark and reserved ranges are refused, IPv4-mapped/NAT64/6to4 IPv6 too;
 * - names that only resolve inside a network (`localhost`, `*.localhost`, `*.local`,
 *   `*.internal`, `*.home.arpa`, single labels) are refused the same way;
 * - no credentials in the URL, no redirects (a 3xx is a refusal), a deadline over the whole
 *   exchange including the body, a size cap counted while reading, JSON only.
 *
 * A name that resolves to a private address cannot be caught here (Workers give no resolver):
 * production deployments add the `global_fetch_strictly_public` compatibility flag for that layer.
 */

export interface PublicFetchOptions {
  /** Allow 127.0.0.0/8, ::1 and `localhost` (http or https): OUTBOUND_ALLOW_LOOPBACK, development only. */
  allowLoopback: boolean
  /** Largest body accepted, in bytes. */
  maxBytes?: number
  /** Deadline of the whole exchange (connect, headers, body). */
  timeoutMs?: number
}

export type PublicFetchRefusal =
  /** Not a URL, not https, or carries a user:password. */
  | 'bad_url'
  /** A private, loopback, link-local or otherwise non-public address or name. */
  | 'non_public_address'
  | 'redirect'
  | 'too_large'
  | 'timeout'
  /** Answered, but not 200. */
  | 'bad_status'
  /** Not `application/json` (or `+json`), or not parseable JSON. */
  | 'not_json'
  /** The connection failed. */
  | 'network'

export type PublicFetchOutcome =
  | {
      kind: 'ok'
      json: unknown
      /** The response's Cache-Control, for callers that cache (null when absent). */
      cacheControl: string | null
    }
  | { kind: 'refused'; reason: PublicFetchRefusal; detail?: string }

export const PUBLIC_FETCH_DEFAULT_MAX_BYTES = 5_120
export const PUBLIC_FETCH_DEFAULT_TIMEOUT_MS = 3_000

/** Why a URL may not be fetched, or null when it may. Exported for validating metadata up front. */
export function checkOutboundUrl(
  text: string,
  allowLoopback: boolean,
): { reason: 'bad_url' | 'non_public_address'; detail: string } | null {
  if (!URL.canParse(text)) {
    return { reason: 'bad_url', detail: 'not a URL' }
  }
  const url = new URL(text)
  if (url.username !== '' || url.password !== '') {
    return { reason: 'bad_url', detail: 'credentials in URL' }
  }
  const host = url.hostname.toLowerCase()
  const loopback = isLoopbackHost(host)
  if (loopback) {
    if (!allowLoopback) {
      return { reason: 'non_public_address', detail: 'loopback' }
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      return { reason: 'bad_url', detail: 'scheme' }
    }
    return null
  }
  if (url.protocol !== 'https:') {
    return { reason: 'bad_url', detail: 'not https' }
  }
  if (!isPublicHost(host)) {
    return { reason: 'non_public_address', detail: 'non-public host' }
  }
  return null
}

/** `127.0.0.0/8`, `::1` (bracketed, as URL prints it), `localhost` and `*.localhost`. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost') || host === '[::1]') {
    return true
  }
  const v4 = parseIpv4(host)
  return v4 !== null && v4[0] === 127
}

const INTERNAL_SUFFIXES = ['.local', '.internal', '.home.arpa', '.localdomain', '.lan', '.intranet', '.corp']

function isPublicHost(host: string): boolean {
  if (host.startsWith('[')) {
    return isPublicIpv6(host.slice(1, -1))
  }
  const v4 = parseIpv4(host)
  if (v4 !== null) {
    return isPublicIpv4(v4)
  }
  const name = host.endsWith('.') ? host.slice(0, -1) : host
  if (!name.includes('.')) {
    return false
  }
  return !INTERNAL_SUFFIXES.some((suffix) => name.endsWith(suffix))
}

/** The URL parser already canonicalises IPv4 (0x7f.1, 2130706433 → 127.0.0.1). */
function parseIpv4(host: string): [number, number, number, number] | null {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host)
  if (match === null) {
    return null
  }
  const parts = match.slice(1).map(Number)
  if (parts.some((n) => n > 255)) {
    return null
  }
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0, parts[3] ?? 0]
}

function isPublicIpv4([a, b, c]: [number, number, number, number]): boolean {
  if (a === 0 || a === 10 || a === 127 || a >= 224) {
    return false // this network, private, loopback, multicast, reserved, broadcast
  }
  if (a === 100 && b >= 64 && b <= 127) {
    return false // CGNAT 100.64/10
  }
  if (a === 169 && b === 254) {
    return false // link-local, cloud metadata
  }
  if (a === 172 && b >= 16 && b <= 31) {
    return false // private
  }
  if (a === 192 && b === 168) {
    return false // private
  }
  if (a === 192 && b === 0 && (c === 0 || c === 2)) {
    return false // IETF protocol assignments, TEST-NET-1
  }
  if (a === 192 && b === 88 && c === 99) {
    return false // 6to4 relay anycast
  }
  if (a === 198 && (b === 18 || b === 19)) {
    return false // benchmarking
  }
  if (a === 198 && b === 51 && c === 100) {
    return false // TEST-NET-2
  }
  if (a === 203 && b === 0 && c === 113) {
    return false // TEST-NET-3
  }
  return true
}

/** Eight 16-bit groups of a canonical (URL-printed) IPv6 address, or null. */
function ipv6Groups(text: string): number[] | null {
  let address = text
  // A trailing dotted quad (::ffff:1.2.3.4) as two groups; the URL parser prints hex, but be safe.
  const dotted = /(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/.exec(address)
  if (dotted !== null) {
    const v4 = parseIpv4(dotted[1] ?? '')
    if (v4 === null) {
      return null
    }
    address = `${address.slice(0, -(dotted[1] ?? '').length)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`
  }
  const halves = address.split('::')
  if (halves.length > 2) {
    return null
  }
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':')
  const tail = halves.length === 2 ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : []
  const missing = 8 - head.length - tail.length
  if ((halves.length === 1 && missing !== 0) || missing < 0) {
    return null
  }
  const groups = [...head, ...Array<string>(missing).fill('0'), ...tail].map((g) => Number.parseInt(g, 16))
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : null
}

function isPublicIpv6(text: string): boolean {
  const g = ipv6Groups(text)
  if (g === null) {
    return false
  }
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g
  const embeddedV4 = (): [number, number, number, number] => [g6 >> 8, g6 & 0xff, g7 >> 8, g7 & 0xff]
  // IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96: judged as the IPv4 inside.
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && (g5 === 0xffff || g5 === 0)) {
    return g5 === 0xffff && isPublicIpv4(embeddedV4())
  }
  // NAT64 64:ff9b::/96 and 64:ff9b:1::/48: the IPv4 inside.
  if (g0 === 0x64 && g1 === 0xff9b) {
    return isPublicIpv4(embeddedV4())
  }
  // 6to4 2002::/16: the IPv4 in groups 1-2.
  if (g0 === 0x2002) {
    return isPublicIpv4([g1 >> 8, g1 & 0xff, g2 >> 8, g2 & 0xff])
  }
  // Only global unicast 2000::/3 is public; minus documentation 2001:db8::/32, 3fff::/20, Teredo 2001::/32.
  if ((g0 & 0xe000) !== 0x2000) {
    return false
  }
  if (g0 === 0x2001 && (g1 === 0x0db8 || g1 === 0)) {
    return false
  }
  if (g0 === 0x3fff && g1 <= 0x0fff) {
    return false
  }
  return true
}

function isJsonType(contentType: string | null): boolean {
  if (contentType === null) {
    return false
  }
  const type = (contentType.split(';')[0] ?? '').trim().toLowerCase()
  return type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))
}

/** GET `url` as JSON under the rules above. Never throws. */
export async function publicFetchJson(url: string, options: PublicFetchOptions): Promise<PublicFetchOutcome> {
  const refused = checkOutboundUrl(url, options.allowLoopback)
  if (refused !== null) {
    return { kind: 'refused', ...refused }
  }
  const maxBytes = options.maxBytes ?? PUBLIC_FETCH_DEFAULT_MAX_BYTES
  const controller = new AbortController()
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    controller.abort()
  }, options.timeoutMs ?? PUBLIC_FETCH_DEFAULT_TIMEOUT_MS)
  try {
    let response: Response
    try {
      response = await fetch(url, {
        method: 'GET',
        redirect: 'manual',
        headers: { accept: 'application/json' },
        signal: controller.signal,
      })
    } catch (error) {
      return timedOut
        ? { kind: 'refused', reason: 'timeout' }
        : { kind: 'refused', reason: 'network', detail: error instanceof Error ? error.name : 'error' }
    }
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel()
      return { kind: 'refused', reason: 'redirect', detail: String(response.status) }
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      return { kind: 'refused', reason: 'bad_status', detail: String(response.status) }
    }
    if (!isJsonType(response.headers.get('content-type'))) {
      await response.body?.cancel()
      return { kind: 'refused', reason: 'not_json' }
    }
    const declared = Number(response.headers.get('content-length') ?? '0')
    if (declared > maxBytes) {
      await response.body?.cancel()
      return { kind: 'refused', reason: 'too_large' }
    }
    const body = await readCapped(response, maxBytes, () => timedOut)
    if (body.kind !== 'ok') {
      return { kind: 'refused', reason: body.kind }
    }
    try {
      return {
        kind: 'ok',
        json: JSON.parse(new TextDecoder().decode(body.bytes)),
        cacheControl: response.headers.get('cache-control'),
      }
    } catch {
      return { kind: 'refused', reason: 'not_json' }
    }
  } finally {
    clearTimeout(timer)
  }
}

async function readCapped(
  response: Response,
  maxBytes: number,
  timedOut: () => boolean,
): Promise<{ kind: 'ok'; bytes: Uint8Array } | { kind: 'too_large' | 'timeout' | 'network' }> {
  if (response.body === null) {
    return { kind: 'ok', bytes: new Uint8Array() }
  }
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let total = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) {
        break
      }
      total += value.byteLength
      if (total > maxBytes) {
        await reader.cancel().catch(() => undefined)
        return { kind: 'too_large' }
      }
      chunks.push(value)
    }
  } catch {
    return { kind: timedOut() ? 'timeout' : 'network' }
  }
  const bytes = new Uint8Array(total)
  let at = 0
  for (const chunk of chunks) {
    bytes.set(chunk, at)
    at += chunk.byteLength
  }
  return { kind: 'ok', bytes }
}
