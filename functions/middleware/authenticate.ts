import type { Context, MiddlewareHandler } from 'hono'
import { getCookie } from 'hono/cookie'
import { findLiveSession } from '../../db/queries/sessions'
import { type Principal, SESSION_SCOPES } from '../auth/principal'
import { sessionCookieName, slideSession } from '../auth/session-cookie'
import { equalsConfiguredSecret } from '../crypto/compare'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { ProblemError } from '../errors/problem'
import { verifyAccessToken } from '../tokens/verify-access-token'
import { accessCredential, senderConstraintProof } from './access-credential'

/** The session cookie's name; `__Host-` prefixed with an https issuer (`sessionCookieName`). */
export const SESSION_COOKIE = 'portcullis_session'

export type CredentialKind = 'session' | 'access_token' | 'admin_token'

export interface AuthenticateOptions {
  /** Which credentials this route accepts. */
  accept: readonly CredentialKind[]
}

/** The credential in `Authorization: Bearer …`, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header?.match(/^Bearer[ ]+([\x21-\x7E]+)[ ]*$/i)
  return match?.[1]
}

/**
 * Establishes `c.var.principal` from the first credential present that the route accepts:
 * a bearer token (the admin token, else an access token), else the session cookie.
 * No credential → 401 `unauthenticated`; a bad one → 401 as well; suspended/pending users → 403.
 */
export function authenticate(options: AuthenticateOptions): MiddlewareHandler<AppEnv> {
  if (options.accept.length === 0) {
    throw new TypeError('authenticate: accept at least one credential kind')
  }
  const accepts = new Set(options.accept)
  return async function authenticate(c, next) {
    c.set('principal', await resolvePrincipal(c, accepts))
    await next()
  }
}

async function resolvePrincipal(
  c: Context<AppEnv>,
  accepts: ReadonlySet<CredentialKind>,
): Promise<Principal> {
  const credential = accessCredential(c.req.header('authorization'))
  const token = credential?.token
  if (
    credential !== undefined &&
    token !== undefined &&
    (accepts.has('admin_token') || accepts.has('access_token'))
  ) {
    if (
      credential.scheme === 'Bearer' &&
      accepts.has('admin_token') &&
      (await equalsConfiguredSecret(token, c.var.config.adminToken))
    ) {
      return { kind: 'admin' }
    }
    if (accepts.has('access_token')) {
      try {
        return await verifyAccessToken(c.var.db, c.var.config, token, (claims) =>
          senderConstraintProof(c, credential, claims),
        )
      } catch (error) {
        if (error instanceof OAuthError) {
          throw unauthenticated('The bearer token is not valid', 'invalid_token', error)
        }
        throw error
      }
    }
    throw unauthenticated('The bearer token is not valid', 'invalid_token')
  }
  const cookie = accepts.has('session') ? getCookie(c, sessionCookieName(c.var.config)) : undefined
  if (cookie !== undefined && cookie.length > 0 && cookie.length <= 128) {
    const now = new Date()
    const session = await findLiveSession(c.var.db.http, await sha256Hex(cookie), now)
    if (session !== undefined) {
      slideSession(
        c,
        { id: session.sessionId, lastSeenAt: session.lastSeenAt, remember: session.remember },
        now,
      )
      if (session.status === 'suspended') {
        throw new ProblemError('account_suspended')
      }
      if (session.status === 'pending') {
        throw new ProblemError('account_pending')
      }
      return {
        kind: 'user',
        userId: session.userId,
        tenantId: session.tenantId,
        isAdmin: session.isAdmin,
        via: 'session',
        scopes: SESSION_SCOPES,
        sessionId: session.sessionId,
      }
    }
  }
  throw unauthenticated('Sign in, or send a bearer token', undefined)
}

/**
 * 401 with the Bearer challenge of RFC 6750 §3, or the DPoP challenge (RFC 9449 §7.1) carried by
 * `cause` when the refusal was about a DPoP binding or proof.
 */
export function unauthenticated(
  detail: string,
  error: 'invalid_token' | undefined,
  cause?: OAuthError,
): ProblemError {
  const challenge =
    cause?.options.headers?.['www-authenticate'] ??
    (error === undefined ? 'Bearer realm="portcullis"' : `Bearer realm="portcullis", error="${error}"`)
  const nonce = cause?.options.headers?.['dpop-nonce']
  return new ProblemError('unauthenticated', {
    detail,
    headers: { 'www-authenticate': challenge, ...(nonce === undefined ? {} : { 'dpop-nonce': nonce }) },
  })
}
