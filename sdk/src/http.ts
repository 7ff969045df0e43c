import { PortcullisError } from './errors.js'

/** A `fetch` with the standard signature (tests pass the Worker's own, e.g. `SELF.fetch`). */
export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>

export const DEFAULT_TIMEOUT_MS = 5000

export interface HttpContext {
  fetch: FetchLike
  timeoutMs: number
}

/** One request with a deadline; a network failure or timeout becomes `unavailable`. */
export async function send(http: HttpContext, url: string, init: RequestInit): Promise<Response> {
  try {
    return await http.fetch(url, { ...init, signal: AbortSignal.timeout(http.timeoutMs) })
  } catch (error) {
    throw new PortcullisError('unavailable', `request to ${new URL(url).origin} failed`, { cause: error })
  }
}

/** The JSON body of a 2xx answer; 5xx is `unavailable`, anything else `unexpected_response`. */
export async function readJson(response: Response, what: string): Promise<unknown> {
  if (response.status >= 500) {
    await response.body?.cancel()
    throw new PortcullisError('unavailable', `${what}: HTTP ${response.status}`)
  }
  if (response.status === 401) {
    await response.body?.cancel()
    throw new PortcullisError('caller_unauthorized', `${what}: this service's credentials were refused`)
  }
  if (!response.ok) {
    await response.body?.cancel()
    throw new PortcullisError('unexpected_response', `${what}: HTTP ${response.status}`)
  }
  try {
    return await response.json()
  } catch (error) {
    throw new PortcullisError('unexpected_response', `${what}: the body is not JSON`, { cause: error })
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** `client_secret_basic` (RFC 6749 §2.3.1: each part form-urlencoded before base64). */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')
  return `Basic ${btoa(`${encode(clientId)}:${encode(clientSecret)}`)}`
}
