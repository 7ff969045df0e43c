import type { MiddlewareHandler } from 'hono'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { page } from './routes'

/** The JSON API's password endpoints: `password_login_disabled` (403) when PASSWORD_LOGIN=off. */
const API = new Set([
  'POST /auth/login',
  'POST /auth/login/mfa',
  'POST /auth/register',
  'POST /auth/password-reset',
  'POST /auth/password-reset/confirm',
  'POST /auth/change-password',
])

/** The HTML pages that take or set a password: a 403 page pointing at /login. */
function isPasswordPage(method: string, path: string): boolean {
  return (
    path === '/signup' ||
    path.startsWith('/signup/') ||
    path === '/forgot-password' ||
    (method === 'GET' && path === '/auth/password-reset/confirm') ||
    (method === 'POST' && (path === '/login' || path === '/login/mfa' || path === '/account/password'))
  )
}

/**
 * PASSWORD_LOGIN=off (issue 13): no password sign-in, sign-up, reset or change, whatever the
 * account; people sign in with a provider only (/login then shows only the provider buttons).
 * Sessions, tokens and the rest of /account are untouched.
 */
export function passwordLoginGate(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    if (c.var.config.federation.passwordLogin) {
      return next()
    }
    const path = c.req.path.length > 1 ? c.req.path.replace(/\/+$/, '') : c.req.path
    if (API.has(`${c.req.method} ${path}`)) {
      throw new ProblemError('password_login_disabled', {
        detail: 'This deployment signs people in only through an identity provider: see /login',
      })
    }
    if ((c.req.method === 'GET' || c.req.method === 'POST') && isPasswordPage(c.req.method, path)) {
      return page(
        c,
        'Passwords are turned off',
        'This service does not use passwords: sign in with one of the providers on the sign-in page.',
        403,
      )
    }
    return next()
  }
}
