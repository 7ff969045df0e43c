import { eq } from 'drizzle-orm'
import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { users } from '../../db/schema'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { bearerToken } from '../middleware/authenticate'
import { documentRoute } from '../openapi/registry'
import { verifyAccessToken } from '../tokens/verify-access-token'
import { NO_STORE } from './token'

/** OIDC Core §5.3: claims about the user the bearer token (with `openid`) speaks for. Two round trips. */
async function userinfo(c: Context<AppEnv>): Promise<Response> {
  const token = bearerToken(c.req.header('authorization'))
  if (token === undefined) {
    throw new OAuthError('invalid_token', { description: 'A bearer access token is required', bearer: true })
  }
  let principal: Awaited<ReturnType<typeof verifyAccessToken>>
  try {
    principal = await verifyAccessToken(c.var.db, c.var.config, token)
  } catch (error) {
    if (error instanceof OAuthError) {
      throw new OAuthError('invalid_token', {
        description: 'The access token is not valid',
        bearer: true,
        cause: error,
      })
    }
    throw error
  }
  if (principal.kind !== 'user' || !principal.scopes.has('openid')) {
    throw new OAuthError('insufficient_scope', {
      description: 'The token needs the openid scope',
      bearer: true,
    })
  }
  const [user] = await c.var.db.http
    .select({ email: users.email, displayName: users.displayName, emailVerifiedAt: users.emailVerifiedAt })
    .from(users)
    .where(eq(users.id, principal.userId))
    .limit(1)
  if (user === undefined) {
    throw new OAuthError('invalid_token', { description: 'The access token is not valid', bearer: true })
  }
  const claims: Record<string, unknown> = { sub: principal.userId }
  if (principal.scopes.has('email')) {
    claims.email = user.email
    claims.email_verified = user.emailVerifiedAt !== null
  }
  if (principal.scopes.has('profile') && user.displayName !== null) {
    claims.name = user.displayName
  }
  return c.json(claims, 200, NO_STORE)
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
