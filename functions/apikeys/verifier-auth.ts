import type { MiddlewareHandler } from 'hono'
import { equalsConfiguredSecret } from '../crypto/compare'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { ProblemError } from '../errors/problem'
import { accessCredential, senderConstraintProof } from '../middleware/access-credential'
import { unauthenticated } from '../middleware/authenticate'
import { serviceKeyCredential } from '../service-keys/authenticate'
import {
  type AccessTokenClaims,
  stillValidGuard,
  verifyOwnAccessTokenSignature,
} from '../tokens/verify-access-token'

export const VERIFY_SCOPE = 'apikeys:verify'

/** Verified caller tokens remembered per isolate. */
export const CALLER_TOKEN_CACHE_ENTRIES = 1000

// Caller access tokens whose signature and claims checked out, until their `exp`: a resource
// server's token then costs one signature check per isolate, not one per verify. Only what the
// signature proves is cached; the token's database half (revocation, client disabled, user
// status, tokens_valid_after) rides in every verify statement, so nothing here can hide a
// revocation. Insertion order makes eviction oldest-first.
const verifiedCallers = new Map<string, AccessTokenClaims>()
const callerCacheStats = { hits: 0, misses: 0 }

function cachedCaller(token: string, now: Date): AccessTokenClaims | undefined {
  const claims = verifiedCallers.get(token)
  if (claims !== undefined && claims.exp * 1000 <= now.getTime()) {
    verifiedCallers.delete(token)
    return undefined
  }
  return claims
}

function rememberCaller(token: string, claims: AccessTokenClaims): void {
  if (verifiedCallers.size >= CALLER_TOKEN_CACHE_ENTRIES) {
    const oldest = verifiedCallers.keys().next()
    if (!oldest.done) {
      verifiedCallers.delete(oldest.value)
    }
  }
  verifiedCallers.set(token, claims)
}

/** Hits and misses of this isolate's caller-token cache (for tests and the bench). */
export function callerTokenCacheStats(): { hits: number; misses: number; size: number } {
  return { ...callerCacheStats, size: verifiedCallers.size }
}

/**
 * Who may call verify: the admin token, a service key (`Bearer psk_…`, issue 10: only its shape
 * and checksum are checked here, its row rides in the verify statement), or an access token
 * carrying `apikeys:verify`. The
 * token's signature, claims and scope are checked here without the database; its database half
 * (not revoked, client enabled, user active) becomes `c.var.callerGuard`, which the verify
 * statement evaluates in the same round trip; a DPoP-bound token's proof is checked here and its
 * `jti` spent by that statement too (`c.var.callerProof`). No or bad credential → 401, no scope → 403.
 */
export function authenticateVerifier(): MiddlewareHandler<AppEnv> {
  return async function authenticateVerifier(c, next) {
    const credential = accessCredential(c.req.header('authorization'))
    const token = credential?.token
    if (credential === undefined || token === undefined) {
      throw unauthenticated('Send the admin token or an access token with scope apikeys:verify', undefined)
    }
    if (credential.scheme === 'Bearer' && (await equalsConfiguredSecret(token, c.var.config.adminToken))) {
      c.set('callerGuard', undefined)
      c.set('serviceKeyHash', undefined)
      c.set('callerProof', undefined)
      await next()
      return
    }
    const serviceKey = credential.scheme === 'Bearer' ? await serviceKeyCredential(token) : undefined
    if (serviceKey === 'malformed') {
      throw unauthenticated('The service key is not valid', 'invalid_token')
    }
    if (serviceKey !== undefined) {
      c.set('callerGuard', undefined)
      c.set('serviceKeyHash', serviceKey.hash)
      c.set('callerProof', undefined)
      await next()
      return
    }
    let guard: ReturnType<typeof stillValidGuard>
    let proof: Awaited<ReturnType<typeof senderConstraintProof>>
    try {
      const cached = cachedCaller(token, new Date())
      if (cached !== undefined) {
        callerCacheStats.hits++
      } else {
        callerCacheStats.misses++
      }
      const claims = cached ?? (await verifyOwnAccessTokenSignature(c.var.db, c.var.config, token))
      if (!(claims.scope ?? '').split(' ').includes(VERIFY_SCOPE)) {
        throw new ProblemError('insufficient_scope', {
          detail: 'Verifying keys needs the admin token or an access token with scope apikeys:verify',
        })
      }
      if (cached === undefined) {
        rememberCaller(token, claims)
      }
      // RFC 9449 §7: checked here without the database; its jti is spent by the verify statement.
      proof = await senderConstraintProof(c, credential, claims)
      guard = stillValidGuard(claims)
    } catch (error) {
      if (error instanceof OAuthError) {
        throw unauthenticated('The bearer token is not valid', 'invalid_token', error)
      }
      throw error
    }
    c.set('callerGuard', guard)
    c.set('serviceKeyHash', undefined)
    c.set('callerProof', proof ?? undefined)
    await next()
  }
}
