import type { AccessTokenClaims } from './access-tokens.js'
import type { VerifiedApiKey } from './api-keys.js'
import type { Portcullis } from './client.js'
import { PortcullisError } from './errors.js'

/** Who called, once authenticated. */
export type PortcullisAuth =
  | { kind: 'api_key'; key: VerifiedApiKey; scopes: string[] }
  | { kind: 'access_token'; claims: AccessTokenClaims; scopes: string[] }

export interface AuthenticateOptions {
  portcullis: Portcullis
  /** Which credentials the route takes (default both). */
  accept?: readonly ('api_key' | 'access_token')[]
  /** Scopes the caller must hold (an API key's scopes, or the token's `scope`). */
  scopes?: readonly string[]
  /** The `aud` access tokens must carry (default: the client's `audience`). */
  audience?: string
  /** Introspect access tokens (revocation takes effect at once; one more round trip). */
  introspect?: boolean
  /** The `endpoint` recorded with an API key's usage (default: method and path). */
  endpoint?: (request: Request) => string | undefined
}

export type AuthenticateResult = { ok: true; auth: PortcullisAuth } | { ok: false; response: Response }

function problem(
  status: number,
  code: string,
  title: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ type: 'about:blank', title, status, code }), {
    status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
  })
}

// RFC 6750 §3: the challenge says what was wrong; no details of the token itself.
const unauthorized = (code: string, error?: 'invalid_token') =>
  problem(401, code, 'Unauthorized', {
    'www-authenticate': error === undefined ? 'Bearer' : `Bearer error="${error}"`,
  })
const forbidden = (scopes: readonly string[]) =>
  problem(403, 'INSUFFICIENT_SCOPE', 'Forbidden', {
    'www-authenticate': `Bearer error="insufficient_scope", scope="${scopes.join(' ')}"`,
  })

function retryAfterSeconds(resetAt: Date | null, now: number): string {
  return String(resetAt === null ? 60 : Math.max(1, Math.ceil((resetAt.getTime() - now) / 1000)))
}

function looksLikeJwt(credential: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(credential)
}

/** `Authorization: Bearer <token or key>`, or `X-API-Key: <key>`. */
function presented(request: Request): { kind: 'api_key' | 'access_token'; value: string } | undefined {
  const apiKey = request.headers.get('x-api-key')?.trim()
  if (apiKey) {
    return { kind: 'api_key', value: apiKey }
  }
  const match = /^Bearer +(\S+) *$/i.exec(request.headers.get('authorization') ?? '')
  const value = match?.[1]
  if (value === undefined) {
    return undefined
  }
  return { kind: looksLikeJwt(value) ? 'access_token' : 'api_key', value }
}

/**
 * Authenticates a request with an API key or an access token; answers a ready response on
 * failure: 401 (no or bad credential), 403 (missing scope), 429 (quota or rate limit, with
 * `Retry-After`), 503 (Portcullis unreachable, with `Retry-After`).
 */
export async function authenticateRequest(
  request: Request,
  options: AuthenticateOptions,
): Promise<AuthenticateResult> {
  const accept = options.accept ?? ['api_key', 'access_token']
  const required = options.scopes ?? []
  const credential = presented(request)
  if (credential === undefined || !accept.includes(credential.kind)) {
    return { ok: false, response: unauthorized('CREDENTIALS_REQUIRED') }
  }
  try {
    if (credential.kind === 'access_token') {
      const result = await options.portcullis.verifyAccessToken(credential.value, {
        ...(options.audience === undefined ? {} : { audience: options.audience }),
        scopes: required,
        ...(options.introspect === undefined ? {} : { introspect: options.introspect }),
      })
      if (!result.valid) {
        return {
          ok: false,
          response:
            result.code === 'INSUFFICIENT_SCOPE'
              ? forbidden(required)
              : unauthorized(result.code, 'invalid_token'),
        }
      }
      return { ok: true, auth: { kind: 'access_token', claims: result.claims, scopes: result.scopes } }
    }
    const url = new URL(request.url)
    const endpoint =
      options.endpoint === undefined ? `${request.method} ${url.pathname}` : options.endpoint(request)
    const result = await options.portcullis.verifyApiKey(
      credential.value,
      endpoint === undefined ? {} : { endpoint: endpoint.slice(0, 200) },
    )
    if (result.code === 'QUOTA_EXCEEDED' || result.code === 'RATE_LIMITED') {
      const limit = result.code === 'QUOTA_EXCEEDED' ? result.key.quota : result.key.ratelimit
      return {
        ok: false,
        response: problem(429, result.code, 'Too Many Requests', {
          'retry-after': retryAfterSeconds(limit.resetAt, Date.now()),
        }),
      }
    }
    if (!result.valid) {
      return { ok: false, response: unauthorized(result.code, 'invalid_token') }
    }
    if (required.some((s) => !result.key.scopes.includes(s))) {
      return { ok: false, response: forbidden(required) }
    }
    return { ok: true, auth: { kind: 'api_key', key: result.key, scopes: result.key.scopes } }
  } catch (error) {
    if (
      error instanceof PortcullisError &&
      (error.code === 'unavailable' || error.code === 'caller_unauthorized')
    ) {
      // Fail closed, but as "try again", not as the caller's fault.
      return {
        ok: false,
        response: problem(503, 'AUTH_UNAVAILABLE', 'Service Unavailable', { 'retry-after': '5' }),
      }
    }
    throw error
  }
}

/** Wraps a fetch handler (Workers, Bun.serve, Deno.serve, Node's Request-based servers). */
export function withPortcullis<Rest extends unknown[]>(
  options: AuthenticateOptions,
  handler: (request: Request, auth: PortcullisAuth, ...rest: Rest) => Response | Promise<Response>,
): (request: Request, ...rest: Rest) => Promise<Response> {
  return async (request, ...rest) => {
    const result = await authenticateRequest(request, options)
    return result.ok ? handler(request, result.auth, ...rest) : result.response
  }
}
