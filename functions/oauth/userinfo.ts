import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { selectUserClaimsIf } from '../../db/queries/users'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { accessCredential, checkSenderConstraint } from '../middleware/access-credential'
import { documentRoute } from '../openapi/registry'
import {
  type AccessTokenClaims,
  isClientToken,
  stillValidGuard,
  verifyOwnAccessTokenSignature,
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
 * signature is checked without the database; the token's revocation, client and user state ride
 * in the statement that reads the user. One round trip.
 */
async function userinfo(c: Context<AppEnv>): Promise<Response> {
  const credential = accessCredential(c.req.header('authorization'))
  if (credential === undefined) {
    throw new OAuthError('invalid_token', { description: 'A bearer access token is required', bearer: true })
  }
  let claims: AccessTokenClaims
  try {
    claims = await verifyOwnAccessTokenSignature(c.var.db, c.var.config, credential.token)
  } catch (error) {
    if (error instanceof OAuthError) {
      throw invalidToken(error)
    }
    throw error
  }
  // RFC 9449 §7: a DPoP-bound token needs the DPoP scheme and a fresh proof (one more round trip).
  await checkSenderConstraint(c, credential, claims)
  const scopes = new Set((claims.scope ?? '').split(' '))
  if (isClientToken(claims) || !scopes.has('openid')) {
    throw new OAuthError('insufficient_scope', {
      description: 'The token needs the openid scope',
      bearer: true,
    })
  }
  const user = await selectUserClaimsIf(c.var.db.http, claims.sub, stillValidGuard(claims))
  if (user === undefined) {
    throw invalidToken(undefined)
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
