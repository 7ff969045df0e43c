import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { withProofSpent } from '../../db/queries/proof-jtis'
import { selectUserClaimsIfStatement } from '../../db/queries/users'
import { isUuid } from '../../db/uuid'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { accessCredential, dpopReplayed, senderConstraintProof } from '../middleware/access-credential'
import { documentRoute } from '../openapi/registry'
import {
  type ClaimsToConfirm,
  confirmedClaims,
  isClientToken,
  ownAudiences,
  stillValidGuard,
  verifyAccessTokenSignatureToConfirm,
} from '../tokens/verify-access-token'
import { NO_STORE } from './token'

function invalidToken(cause: unknown): OAuthError {
  return new OAuthError('invalid_token', {
    description: 'The access token is not valid',
    bearer: true,
    cause,
  })
}

/**
 * OIDC Core §5.3: claims about the user the bearer token (with `openid`) speaks for. The
 * signature is checked without the database; the token's revocation, client and user state (and
 * a DPoP proof's jti) ride in the statement (batch) that reads the user. One round trip.
 */
async function userinfo(c: Context<AppEnv>): Promise<Response> {
  const credential = accessCredential(c.req.header('authorization'))
  if (credential === undefined) {
    throw new OAuthError('invalid_token', { description: 'A bearer access token is required', bearer: true })
  }
  const now = new Date()
  const audiences = ownAudiences(c.var.config)
  let verified: ClaimsToConfirm
  try {
    // An isolate idle past its key ring's TTL checks the signature with the ring it has; the
    // statement below reads the key set's epoch, which settles it (confirmedClaims).
    verified = await verifyAccessTokenSignatureToConfirm(
      c.var.db,
      c.var.config,
      credential.token,
      audiences,
      now,
    )
  } catch (error) {
    if (error instanceof OAuthError) {
      throw invalidToken(error)
    }
    throw error
  }
  const claims = verified.claims
  // RFC 9449 §7: a DPoP-bound token needs the DPoP scheme and a fresh proof, whose jti is spent
  // in the batch that reads the user (still one round trip).
  const proof = await senderConstraintProof(c, credential, claims)
  const scopes = new Set((claims.scope ?? '').split(' '))
  if (isClientToken(claims) || !scopes.has('openid')) {
    throw new OAuthError('insufficient_scope', {
      description: 'The token needs the openid scope',
      bearer: true,
    })
  }
  const db = c.var.db.http
  if (!isUuid(claims.sub)) {
    throw invalidToken(undefined)
  }
  const userQuery = selectUserClaimsIfStatement(db, claims.sub, stillValidGuard(claims))
  const { result: users, proofSpent } = await withProofSpent(db, userQuery, proof)
  if (!proofSpent) {
    throw dpopReplayed()
  }
  const user = users[0]
  if (user === undefined) {
    throw invalidToken(undefined)
  }
  try {
    await confirmedClaims(c.var.db, c.var.config, credential.token, audiences, verified, user.keyEpoch, now)
  } catch (error) {
    if (error instanceof OAuthError) {
      throw invalidToken(error)
    }
    throw error
  }
  const answer: Record<string, unknown> = { sub: claims.sub }
  if (scopes.has('email')) {
    answer.email = user.email
    answer.email_verified = user.emailVerifiedAt !== null
  }
  if (scopes.has('profile') && user.displayName !== null) {
    answer.name = user.displayName
  }
  return c.json(answer, 200, NO_STORE)
}

export const userinfoEndpoint = new Hono<AppEnv>().get('/', userinfo).post('/', userinfo)

for (const method of ['get', 'post'] as const) {
  documentRoute({
    method,
    path: '/oauth/userinfo',
    summary: 'OIDC UserInfo',
    tags: ['oauth'],
    security: ['bearerToken'],
    responses: {
      200: { description: 'Claims', schema: v.object({ sub: v.string(), email: v.optional(v.string()) }) },
    },
  })
}
