import type { MiddlewareHandler } from 'hono'
import type { AppEnv } from '../env'

/**
 * CORS for browser-based public clients (issue 11) on the endpoints they call without cookies:
 * token, register (and its management URI), revoke, userinfo, device authorization, and the
 * `/.well-known` documents. `Access-Control-Allow-Origin: *` and never
 * `Access-Control-Allow-Credentials`: a browser refuses to hand a credentialed (cookie) response
 * to another origin, so nothing here can ride a user's session. The cookie-authenticated
 * `/auth/*`, `/oauth/authorize`, `/oauth/consent` and the pages are not listed: same-origin only
 * (a preflight there still gets the 405 it always got).
 */

/** Paths (exact, or a prefix ending in `/`) and the methods a cross-origin page may use there. */
const CORS_ROUTES: readonly { path: string; prefix?: true; methods: string }[] = [
  { path: '/oauth/token', methods: 'POST' },
  { path: '/oauth/register', methods: 'POST' },
  { path: '/oauth/register/', prefix: true, methods: 'GET, PUT, DELETE' },
  { path: '/oauth/revoke', methods: 'POST' },
  { path: '/oauth/userinfo', methods: 'GET, POST' },
  { path: '/oauth/device_authorization', methods: 'POST' },
  { path: '/.well-known/', prefix: true, methods: 'GET' },
]

const ALLOW_HEADERS = 'Authorization, Content-Type, DPoP'
const EXPOSE_HEADERS = 'WWW-Authenticate, DPoP-Nonce, Retry-After'
const PREFLIGHT_MAX_AGE_SECONDS = 86_400

/** The methods a cross-origin page may use on `path`, or undefined when it is same-origin only. */
export function corsMethods(path: string): string | undefined {
  const trimmed =
    path.length > 1 && path.endsWith('/') && !path.startsWith('/.well-known/') ? path.slice(0, -1) : path
  for (const route of CORS_ROUTES) {
    if (route.prefix === true ? trimmed.startsWith(route.path) : trimmed === route.path) {
      return route.methods
    }
  }
  return undefined
}

/** Answers preflights on the listed paths (204) and marks their responses readable cross-origin. */
export function cors(): MiddlewareHandler<AppEnv> {
  return async function cors(c, next) {
    const methods = corsMethods(c.req.path)
    if (methods !== undefined && c.req.method === 'OPTIONS') {
      return new Response(null, {
        status: 204,
        headers: {
          'access-control-allow-origin': '*',
          'access-control-allow-methods': methods,
          'access-control-allow-headers': ALLOW_HEADERS,
          'access-control-max-age': String(PREFLIGHT_MAX_AGE_SECONDS),
          allow: `${methods}, OPTIONS`,
          vary: 'Origin',
        },
      })
    }
    await next()
    if (methods !== undefined) {
      c.res.headers.set('access-control-allow-origin', '*')
      c.res.headers.set('access-control-expose-headers', EXPOSE_HEADERS)
    }
    return undefined
  }
}
