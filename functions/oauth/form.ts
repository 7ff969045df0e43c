import type { Context } from 'hono'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'

export type OAuthParams = ReadonlyMap<string, string>

function fromSearchParams(params: URLSearchParams): Map<string, string> {
  const map = new Map<string, string>()
  for (const [key, value] of params) {
    // RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once.
    if (map.has(key)) {
      throw new OAuthError('invalid_request', { description: `${key} is repeated` })
    }
    map.set(key, value)
  }
  return map
}

/**
 * The request's OAuth parameters: `application/x-www-form-urlencoded` as the RFCs require, or a
 * flat JSON object of strings (DESIGN). Repeated parameters are refused.
 */
export async function readOAuthBody(c: Context<AppEnv>): Promise<OAuthParams> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  if (type === 'application/x-www-form-urlencoded') {
    return fromSearchParams(new URLSearchParams(new TextDecoder().decode(await c.req.arrayBuffer())))
  }
  if (type === 'application/json') {
    let body: unknown
    try {
      body = JSON.parse(new TextDecoder().decode(await c.req.arrayBuffer()))
    } catch {
      throw new OAuthError('invalid_request', { description: 'The body is not valid JSON' })
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new OAuthError('invalid_request', { description: 'The body must be an object' })
    }
    const map = new Map<string, string>()
    for (const [key, value] of Object.entries(body)) {
      if (typeof value === 'string') {
        map.set(key, value)
      } else if (typeof value === 'number' || typeof value === 'boolean') {
        map.set(key, String(value))
      } else if (value !== null) {
        throw new OAuthError('invalid_request', { description: `${key} must be a string` })
      }
    }
    return map
  }
  throw new OAuthError('invalid_request', {
    description: 'Send application/x-www-form-urlencoded (or application/json)',
  })
}

/** Query parameters with the same no-repeat rule (authorization endpoint). */
export function readOAuthQuery(c: Context<AppEnv>): OAuthParams {
  return fromSearchParams(new URL(c.req.url).searchParams)
}

/** A parameter, undefined when absent or empty (RFC 6749 §3.1: empty means omitted). */
export function param(params: OAuthParams, name: string, maxLength = 2000): string | undefined {
  const value = params.get(name)
  if (value === undefined || value === '') {
    return undefined
  }
  if (value.length > maxLength) {
    throw new OAuthError('invalid_request', { description: `${name} is too long` })
  }
  return value
}

export function requiredParam(params: OAuthParams, name: string, maxLength = 2000): string {
  const value = param(params, name, maxLength)
  if (value === undefined) {
    throw new OAuthError('invalid_request', { description: `${name} is required` })
  }
  return value
}
