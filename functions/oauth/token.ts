import { Hono } from 'hono'
import * as v from 'valibot'
import { recordAudit } from '../audit/record'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { documentRoute } from '../openapi/registry'
import { authenticateClient } from './client-auth'
import { DEVICE_CODE_GRANT } from './client-metadata'
import { readOAuthBody, requiredParam } from './form'
import { authorizationCodeGrant, CodeReplayed } from './grants/authorization-code'
import { clientCredentialsGrant } from './grants/client-credentials'
import { deviceCodeGrant } from './grants/device-code'
import type { GrantContext, GrantOutcome } from './grants/issue'
import { RefreshReuseDetected, refreshTokenGrant } from './grants/refresh-token'

/** RFC 6749 §5.1: token responses are never cached. */
export const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const

const GRANTS: Record<
  string,
  (ctx: GrantContext, params: ReadonlyMap<string, string>) => Promise<GrantOutcome>
> = {
  authorization_code: authorizationCodeGrant,
  refresh_token: refreshTokenGrant,
  client_credentials: clientCredentialsGrant,
  [DEVICE_CODE_GRANT]: deviceCodeGrant,
}

/**
 * POST /oauth/token. Round trips per grant: client lookup + one grant statement
 * (client_credentials: the lookup only); audit goes through waitUntil.
 */
export const token = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const grantType = requiredParam(params, 'grant_type', 100)
  const grant = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined
  if (grant === undefined) {
    throw new OAuthError('unsupported_grant_type', { description: `${grantType} is not supported` })
  }
  const client = await authenticateClient(c, c.var.db.http, params, now)
  const ctx: GrantContext = { db: c.var.db, config: c.var.config, client, now }
  try {
    const outcome = await grant(ctx, params)
    recordAudit(c, ...outcome.audit)
    return c.json(outcome.response, 200, NO_STORE)
  } catch (error) {
    if (error instanceof OAuthError && error.cause instanceof CodeReplayed) {
      recordAudit(c, {
        type: 'code_replay_detected',
        actor: `client:${client.clientId}`,
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: { code_id: error.cause.codeId, revoked_refresh_tokens: error.cause.revokedRefreshTokens },
      })
    }
    if (error instanceof OAuthError && error.cause instanceof RefreshReuseDetected) {
      recordAudit(c, {
        type: 'refresh_token_reuse_detected',
        actor: `client:${client.clientId}`,
        userId: error.cause.userId,
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: { family_id: error.cause.familyId, revoked_refresh_tokens: error.cause.revoked },
      })
    }
    throw error
  }
})

const TOKEN_RESPONSE = v.object({
  access_token: v.string(),
  token_type: v.literal('Bearer'),
  expires_in: v.number(),
  scope: v.string(),
  refresh_token: v.optional(v.string()),
  id_token: v.optional(v.string()),
})

documentRoute({
  method: 'post',
  path: '/oauth/token',
  summary: 'Token endpoint (authorization_code, refresh_token, client_credentials, device_code)',
  tags: ['oauth'],
  security: ['clientBasic'],
  requestBody: {
    schema: v.object({
      grant_type: v.string(),
      code: v.optional(v.string()),
      code_verifier: v.optional(v.string()),
      redirect_uri: v.optional(v.string()),
      refresh_token: v.optional(v.string()),
      device_code: v.optional(v.string()),
      scope: v.optional(v.string()),
      resource: v.optional(v.string()),
      client_id: v.optional(v.string()),
      client_secret: v.optional(v.string()),
    }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: { 200: { description: 'Tokens', schema: TOKEN_RESPONSE } },
})
