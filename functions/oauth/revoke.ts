import { Hono } from 'hono'
import * as v from 'valibot'
import { revokeRefreshFamily } from '../../db/queries/oauth-grants'
import { revokeAccessTokenStatement } from '../../db/queries/oauth-tokens'
import { auditStatement } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { isClientToken, verifyAccessTokenSignature } from '../tokens/verify-access-token'
import { authenticateClient } from './client-auth'
import { readOAuthBody, requiredParam } from './form'
import { accessTokensExpireBy } from './grants/issue'
import { CLIENT_ASSERTION_FIELDS, NO_STORE } from './token'

/**
 * POST /oauth/revoke (RFC 7009). Answers 200 whether or not the token was known (§2.2); a
 * client revokes only its own tokens. Revoking a refresh token revokes its whole grant. The
 * `token_revoked` audit row commits with the revocation.
 */
export const revoke = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const client = await authenticateClient(c, c.var.db.http, params, now)
  const token = requiredParam(params, 'token', 8192)
  const ip = clientIp(c)
  if (token.split('.').length === 3) {
    try {
      const claims = await verifyAccessTokenSignature(c.var.db, c.var.config, token, 'any', now)
      if (claims.client_id === client.clientId) {
        // The revocation and its audit row commit together (one batch, one round trip).
        await c.var.db.http.batch([
          revokeAccessTokenStatement(c.var.db.http, claims.jti, new Date(claims.exp * 1000)),
          auditStatement(c.var.db.http, ip, {
            type: 'token_revoked',
            actor: `client:${client.clientId}`,
            userId: isClientToken(claims) ? null : claims.sub,
            tenantId: client.tenantId,
            clientId: client.clientId,
            metadata: { token_type: 'access_token', jti: claims.jti },
          }),
        ])
      }
    } catch (error) {
      if (!(error instanceof OAuthError)) {
        throw error
      }
    }
  } else if (token.length <= 200) {
    await revokeRefreshFamily(c.var.db.http, {
      tokenHash: await sha256Hex(token),
      client,
      audit: { ip },
      now,
      accessTokensExpireBy: accessTokensExpireBy(c.var.config, now),
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
    schema: v.object({
      token: v.string(),
      token_type_hint: v.optional(v.string()),
      ...CLIENT_ASSERTION_FIELDS,
    }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: { 200: { description: 'Revoked, or the token was unknown' } },
})
