import type { Context, MiddlewareHandler } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { touchSession } from '../../db/queries/sessions'
import type { Config } from '../config'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { errorForLog, log } from '../log'
import { SESSION_COOKIE } from '../middleware/authenticate'
import type { NewSession } from './login'

/** Session ids are 43-character base64url strings; anything else is not worth a lookup. */
const SESSION_TOKEN = /^[A-Za-z0-9_-]{43}$/

export function readSessionToken(c: Context<AppEnv>): string | undefined {
  const token = getCookie(c, sessionCookieName(c.var.config))
  return token !== undefined && SESSION_TOKEN.test(token) ? token : undefined
}

/** Cookies are Secure whenever the issuer is https. */
export function secureCookies(config: Config): boolean {
  return config.issuer.startsWith('https://')
}

/**
 * `__Host-<base>` with an https issuer: the browser then insists on Secure, Path=/ and no Domain,
 * so a sibling subdomain or a plain-http page can neither set nor shadow the cookie (RFC 6265bis
 * §4.1.3.2). Plain `<base>` for an http (local) issuer, where Secure cookies cannot be kept.
 */
export function cookieName(config: Config, base: string): string {
  return secureCookies(config) ? `__Host-${base}` : base
}

export function sessionCookieName(config: Config): string {
  return cookieName(config, SESSION_COOKIE)
}

/**
 * HttpOnly, SameSite=Lax, Path=/, Secure when the issuer is https. Persistent (Max-Age =
 * REMEMBER_TTL) only for "remember me"; otherwise a browser-session cookie, while the server
 * side still expires after SESSION_TTL of inactivity.
 */
export function setSessionCookie(c: Context<AppEnv>, session: NewSession): void {
  setCookie(c, sessionCookieName(c.var.config), session.token, {
    httpOnly: true,
    sameSite: 'Lax',
    secure: secureCookies(c.var.config),
    path: '/',
    ...(session.remember ? { maxAge: c.var.config.rememberTtlSeconds } : {}),
  })
}

export function clearSessionCookie(c: Context<AppEnv>): void {
  deleteCookie(c, sessionCookieName(c.var.config), {
    httpOnly: true,
    sameSite: 'Lax',
    secure: secureCookies(c.var.config),
    path: '/',
  })
}

/**
 * Refuses state-changing requests that a browser marks as coming from another site: cookie
 * authentication must not be driven by a foreign page (SameSite=Lax already withholds the
 * cookie from cross-site POSTs; this also covers same-site subdomains and older browsers).
 */
export function sameOriginOnly(): MiddlewareHandler<AppEnv> {
  return async function sameOriginOnly(c, next) {
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const fetchSite = c.req.header('sec-fetch-site')
      // Our pages send `Referrer-Policy: no-referrer`, under which a browser's own form posts
      // carry `Origin: null`; Sec-Fetch-Site (which no page can set) then says where it came from.
      const sent = c.req.header('origin')
      const origin = sent === 'null' && fetchSite === 'same-origin' ? undefined : sent
      const allowed = new Set([new URL(c.var.config.issuer).origin, new URL(c.req.url).origin])
      if ((origin !== undefined && !allowed.has(origin)) || fetchSite === 'cross-site') {
        throw new ProblemError('csrf_failed', { detail: 'Cross-site requests may not use this endpoint' })
      }
    }
    await next()
  }
}

/** Sliding sessions refresh their expiry at most this often, so busy pages do not write per request. */
export const SESSION_TOUCH_INTERVAL_SECONDS = 60

/**
 * Records activity on a live session and slides its expiry (SESSION_TTL, or REMEMBER_TTL for
 * "remember me") through `waitUntil`: never on the critical path.
 */
export function slideSession(
  c: Context<AppEnv>,
  session: { id: string; lastSeenAt: Date; remember: boolean },
  now: Date,
): void {
  if (now.getTime() - session.lastSeenAt.getTime() < SESSION_TOUCH_INTERVAL_SECONDS * 1000) {
    return
  }
  const ttl = session.remember ? c.var.config.rememberTtlSeconds : c.var.config.sessionTtlSeconds
  c.executionCtx.waitUntil(
    touchSession(c.var.db.http, session.id, now, ttl).catch((error: unknown) => {
      log('warn', 'session_touch_failed', {
        requestId: c.var.requestId,
        error: errorForLog(error),
      })
    }),
  )
}
