import type { Context } from 'hono'
import { getCookie, setCookie } from 'hono/cookie'
import { cookieName, secureCookies, sessionCookieName } from '../auth/session-cookie'
import { signWithMasterKey, verifyWithMasterKeys } from '../crypto/hmac'
import { randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'

export const CSRF_COOKIE = 'portcullis_csrf'
export const CSRF_FIELD = 'csrf_token'

const BROWSER_SECRET = /^[A-Za-z0-9_-]{43}$/

// A secret minted earlier in this request (its Set-Cookie is not in the request's Cookie header).
const mintedThisRequest = new WeakMap<Request, string>()

/**
 * The message a form token signs: the browser's secret and the session cookie it holds (empty
 * before sign-in). A token taken from another browser, or from before a sign-in, sign-out or
 * session change, does not verify.
 */
function tokenMessage(c: Context<AppEnv>, browserSecret: string): string {
  const session = getCookie(c, sessionCookieName(c.var.config)) ?? ''
  return `csrf\n${browserSecret}\n${session}`
}

function browserSecretOf(c: Context<AppEnv>): string | undefined {
  const minted = mintedThisRequest.get(c.req.raw)
  if (minted !== undefined) {
    return minted
  }
  const cookie = getCookie(c, cookieName(c.var.config, CSRF_COOKIE))
  return cookie !== undefined && BROWSER_SECRET.test(cookie) ? cookie : undefined
}

/**
 * CSRF protection for HTML forms: a random per-browser secret in an HttpOnly, SameSite=Strict
 * cookie (`__Host-` with an https issuer, so no subdomain can plant one), and in the form an
 * HMAC of that secret and the session cookie under a key derived from MASTER_KEY. A cross-site
 * page can neither read the token nor compute one for a secret it planted.
 */
export async function issueCsrfToken(c: Context<AppEnv>): Promise<string> {
  let secret = browserSecretOf(c)
  if (secret === undefined) {
    secret = randomToken(32)
    mintedThisRequest.set(c.req.raw, secret)
    setCookie(c, cookieName(c.var.config, CSRF_COOKIE), secret, {
      httpOnly: true,
      sameSite: 'Strict',
      secure: secureCookies(c.var.config),
      path: '/',
    })
  }
  return signWithMasterKey(c.var.config.masterKeys, 'csrf', tokenMessage(c, secret))
}

/** Throws 403 `csrf_failed` unless the submitted field is this browser's token for this session. */
export async function verifyCsrf(c: Context<AppEnv>, submitted: unknown): Promise<void> {
  const secret = browserSecretOf(c)
  if (
    typeof submitted !== 'string' ||
    secret === undefined ||
    !(await verifyWithMasterKeys(c.var.config.masterKeys, 'csrf', tokenMessage(c, secret), submitted))
  ) {
    throw new ProblemError('csrf_failed')
  }
}
