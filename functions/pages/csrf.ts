import type { Context } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import { secretsEqual } from '../crypto/compare'
import { randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'

export const CSRF_COOKIE = 'portcullis_csrf'
export const CSRF_FIELD = 'csrf_token'

/**
 * Double-submit CSRF protection for HTML forms: a random token in an HttpOnly, SameSite=Strict
 * cookie and the same value in a hidden field. A cross-site form can send the cookie's absence
 * or an old page's field, never a matching pair.
 */
export function issueCsrfToken(c: Context<AppEnv>): string {
  const existing = getCookie(c, CSRF_COOKIE)
  if (existing !== undefined && /^[A-Za-z0-9_-]{43}$/.test(existing)) {
    return existing
  }
  const token = randomToken(32)
  setCookie(c, CSRF_COOKIE, token, {
    httpOnly: true,
    sameSite: 'Strict',
    secure: c.var.config.issuer.startsWith('https://'),
    path: '/',
  })
  return token
}

/** Throws 403 `csrf_failed` unless the submitted field matches the cookie. */
export async function verifyCsrf(c: Context<AppEnv>, submitted: unknown): Promise<void> {
  const cookie = getCookie(c, CSRF_COOKIE)
  if (typeof submitted !== 'string' || cookie === undefined || !(await secretsEqual(submitted, cookie))) {
    throw new ProblemError('csrf_failed')
  }
}
