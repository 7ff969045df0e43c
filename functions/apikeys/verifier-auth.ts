import type { MiddlewareHandler } from 'hono'
import { secretsEqual } from '../crypto/compare'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { ProblemError } from '../errors/problem'
import { bearerToken, unauthenticated } from '../middleware/authenticate'
import { stillValidGuard, verifyOwnAccessTokenSignature } from '../tokens/verify-access-token'

export const VERIFY_SCOPE = 'apikeys:verify'

/**
 * Who may call verify: the admin token, or an access token carrying `apikeys:verify`. The
 * token's signature, claims and scope are checked here without the database; its database half
 * (not revoked, client enabled, user active) becomes `c.var.callerGuard`, which the verify
 * statement evaluates in the same round trip. No or bad credential → 401, no scope → 403.
 */
export function authenticateVerifier(): MiddlewareHandler<AppEnv> {
  return async function authenticateVerifier(c, next) {
    const token = bearerToken(c.req.header('authorization'))
    if (token === undefined) {
      throw unauthenticated('Send the admin token or an access token with scope apikeys:verify', undefined)
    }
    if (await secretsEqual(token, c.var.config.adminToken)) {
      c.set('callerGuard', undefined)
      await next()
      return
    }
    let guard: ReturnType<typeof stillValidGuard>
    try {
      const claims = await verifyOwnAccessTokenSignature(c.var.db, c.var.config, token)
      if (!(claims.scope ?? '').split(' ').includes(VERIFY_SCOPE)) {
        throw new ProblemError('insufficient_scope', {
          detail: 'Verifying keys needs the admin token or an access token with scope apikeys:verify',
        })
      }
      guard = stillValidGuard(claims)
    } catch (error) {
      if (error instanceof OAuthError) {
        throw unauthenticated('The bearer token is not valid', 'invalid_token')
      }
      throw error
    }
    c.set('callerGuard', guard)
    await next()
  }
}
