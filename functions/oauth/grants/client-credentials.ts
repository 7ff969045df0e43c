import { OAuthError } from '../../errors/oauth'
import { accessTokenAudience, mintAccessToken } from '../../tokens/mint'
import { type OAuthParams, param } from '../form'
import { grantableScope, parseResource } from '../scope'
import { type GrantContext, type GrantOutcome, tokenIssuedEvent } from './issue'

/**
 * RFC 6749 §4.4 for confidential clients: an access token whose `sub` is the client_id
 * (RFC 9068 §2.2). No database round trip beyond client authentication.
 */
export async function clientCredentialsGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  if (
    ctx.client.tokenEndpointAuthMethod === 'none' ||
    !ctx.client.grantTypes.includes('client_credentials')
  ) {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use client_credentials' })
  }
  // No user is present: user-facing scopes make no sense here.
  const scopes = grantableScope(param(params, 'scope'), ctx.client.scope, [
    'openid',
    'profile',
    'email',
    'offline_access',
  ])
  if (scopes.includes('openid') || scopes.includes('offline_access')) {
    throw new OAuthError('invalid_scope', { description: 'openid and offline_access need a user' })
  }
  const resource = parseResource(param(params, 'resource'))
  const scope = scopes.join(' ')
  const access = await mintAccessToken(ctx.db, ctx.config, {
    subject: ctx.client.clientId,
    audience: accessTokenAudience(ctx.config, resource),
    clientId: ctx.client.clientId,
    scope,
    jti: crypto.randomUUID(),
    now: ctx.now,
  })
  return {
    response: { access_token: access.token, token_type: 'Bearer', expires_in: access.expiresIn, scope },
    audit: [tokenIssuedEvent(ctx, 'client_credentials', null)],
  }
}
