import { Hono } from 'hono'
import * as v from 'valibot'
import { revokeRefreshFamily } from '../../db/queries/oauth-grants'
import { revokeAccessToken } from '../../db/queries/oauth-tokens'
import { recordAudit } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { documentRoute } from '../openapi/registry'
import { verifyAccessTokenSignature } from '../tokens/verify-access-token'
import { authenticateClient } from './client-auth'
import { readOAuthBody, requiredParam } from './form'
import { accessTokensExpireBy } from './grants/issue'
import { NO_STORE } from './token'

/**
 * POST /oauth/revoke (RFC 7009). Answers 200 whether or not the token was known (§2.2); a
 * client revokes only its own tokens. Revoking a refresh token revokes its whole grant.
 */
export const revoke = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const client = await authenticateClient(c, c.var.db.http, params, now)
  const token = requiredParam(params, 'token', 8192)
  let revoked: 'access_token' | 'refresh_token' | undefined
  if (token.split('.').length === 3) {
    try {
      const claims = await verifyAccessTokenSignature(c.var.db, c.var.config, token, 'any', now)
      if (claims.client_id === client.clientId) {
        await revokeAccessToken(c.var.db.http, claims.jti, new Date(claims.exp * 1000))
        revoked = 'access_token'
      }
    } catch (error) {
      if (!(error instanceof OAuthError)) {
        throw error
      }
    }
  } else if (token.length <= 200) {
    const count = await revokeRefreshFamily(
      c.var.db.http,
      await sha256Hex(token),
      client.id,
      now,
      accessTokensExpireBy(c.var.config, now),
    )
    revoked = count > 0 ? 'refresh_token' : undefined
  }
  if (revoked !== undefined) {
    recordAudit(c, {
      type: 'token_revoked',
      actor: `client:${client.clientId}`,
      tenantId: client.tenantId,
      clientId: client.clientId,
      metadata: { token_type: revoked },
    })
  }
  return c.body(null, 200, NO_STORE)
})

documentRoute({
  method: 'post',
  path: '/oauth/revoke',
  summary: 'Token revocation (RFC 7009)',
  tags: ['oauth'],
  security: ['clientBasic'],
  requestBody: {
    schema: v.object({ token: v.string(), token_type_hint: v.optional(v.string()) }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: { 200: { description: 'Revoked, or the token was unknown' } },
})
