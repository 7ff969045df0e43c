import type { Context } from 'hono'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'

export type OAuthParams = ReadonlyMap<string, string>

function fromSearchParams(params: URLSearchParams): Map<string, string> {
  const map = new Map<string, string>()
  for (const [key, value] of params) {
    // RFC 8707 §2: `resource` may repeat; the values travel joined by spaces (a URI has none).
    if (key === 'resource' && map.has(key) && value !== '') {
      map.set(key, `${map.get(key)} ${value}`)
      continue
    }
    // RFC 6749 §3.1/§3.2: parameters MUST NOT be included more than once.
    if (map.has(key)) {
      throw new OAuthError('invalid_request', { description: `${key} is repeated` })
    }
    map.set(key, value)
  }
  return map
}

/**
 * The first key repeated within one JSON object of `text` (already known to be valid JSON), or
 * undefined. `JSON.parse` keeps the last of repeated keys silently; a parser that kept the first
 * would read another request, so repeats are refused as RFC 6749 §3.1 refuses repeated parameters.
 */
export function repeatedJsonKey(text: string): string | undefined {
  // One entry per open container: the keys seen so far for an object, null for an array.
  const stack: (Set<string> | null)[] = []
  let i = 0
  while (i < text.length) {
    const ch = text[i]
    if (ch === '"') {
      let end = i + 1
      while (end < text.length && text[end] !== '"') {
        end += text[end] === '\\' ? 2 : 1
      }
      const literal = text.slice(i, end + 1)
      i = end + 1
      while (i < text.length && /\s/.test(text[i] ?? '')) {
        i++
      }
      const keys = stack[stack.length - 1]
      if (text[i] === ':' && keys !== undefined && keys !== null) {
        const key = JSON.parse(literal) as string
        if (keys.has(key)) {
          return key
        }
        keys.add(key)
      }
      continue
    }
    if (ch === '{') {
      stack.push(new Set())
    } else if (ch === '[') {
      stack.push(null)
    } else if (ch === '}' || ch === ']') {
      stack.pop()
    }
    i++
  }
  return undefined
}

/**
 * The request's OAuth parameters: `application/x-www-form-urlencoded` as the RFCs require, or a
 * flat JSON object of strings (DESIGN). Repeated parameters (and repeated JSON keys) are refused.
 */
export async function readOAuthBody(c: Context<AppEnv>): Promise<OAuthParams> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  if (type === 'application/x-www-form-urlencoded') {
    return fromSearchParams(new URLSearchParams(new TextDecoder().decode(await c.req.arrayBuffer())))
  }
  if (type === 'application/json') {
    const text = new TextDecoder().decode(await c.req.arrayBuffer())
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      throw new OAuthError('invalid_request', { description: 'The body is not valid JSON' })
    }
    const repeated = repeatedJsonKey(text)
    if (repeated !== undefined) {
      throw new OAuthError('invalid_request', { description: `${repeated} is repeated` })
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
