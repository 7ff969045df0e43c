import { authenticateForClientCredentials } from '../../../db/queries/oauth-grants'
import { OAuthError } from '../../errors/oauth'
import { confirmKeyRing } from '../../tokens/keys'
import { accessTokenAudience, mintAccessToken } from '../../tokens/mint'
import { type OAuthParams, param } from '../form'
import { resolveResource } from '../resources'
import { grantableScope, parseScope } from '../scope'
import { type GrantContext, type GrantOutcome, refuseClient, tokenType } from './issue'

const USER_SCOPES = ['openid', 'profile', 'email', 'offline_access']

/**
 * RFC 6749 §4.4 for confidential clients: an access token whose `sub` is the client_id
 * (RFC 9068 §2.2). Round trips: ONE statement that authenticates the client and writes
 * `token_issued` (only when the scope checks below will pass); a failure may spend one more.
 */
export async function clientCredentialsGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  const requested = param(params, 'scope')
  const asked = requested === undefined ? null : parseScope(requested).join(' ')
  // RFC 8707: unknown → invalid_target before the statement (none for the issuer or a cached one).
  const target = await resolveResource(ctx.db.http, ctx.config, param(params, 'resource'))
  const resource = target?.identifier ?? null
  const result = await authenticateForClientCredentials(ctx.db.http, {
    client: ctx.presented,
    requestedScope: asked,
    audit: ctx.audit,
    now: ctx.now,
  })
  if (result === undefined) {
    return refuseClient(ctx)
  }
  const { client } = result
  // Before it signs: the ring is current as of the statement, or re-read (keys.ts).
  confirmKeyRing(result.keyEpoch, ctx.now)
  if (client.tokenEndpointAuthMethod === 'none') {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use client_credentials' })
  }
  // No user is present: user-facing scopes make no sense here.
  const scopes = grantableScope(requested, client.scope, USER_SCOPES)
  if (scopes.includes('openid') || scopes.includes('offline_access')) {
    throw new OAuthError('invalid_scope', { description: 'openid and offline_access need a user' })
  }
  const scope = scopes.join(' ')
  const access = await mintAccessToken(ctx.db, ctx.config, {
    subject: client.clientId,
    audience: accessTokenAudience(ctx.config, resource),
    clientId: client.clientId,
    tenantId: client.tenantId,
    scope,
    jti: crypto.randomUUID(),
    now: ctx.now,
    jkt: ctx.presented.dpop?.jkt ?? null,
    // The resource server's lifetime may only shorten ACCESS_TOKEN_TTL (issue 11).
    ...(target?.accessTokenTtlSeconds
      ? { notAfter: Math.floor(ctx.now.getTime() / 1000) + target.accessTokenTtlSeconds }
      : {}),
    ...(target?.signingAlgorithm ? { alg: target.signingAlgorithm } : {}),
  })
  return {
    response: { access_token: access.token, token_type: tokenType(ctx), expires_in: access.expiresIn, scope },
  }
}
