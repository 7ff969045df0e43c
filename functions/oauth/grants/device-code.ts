import { pollDeviceCode } from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { confirmKeyRing } from '../../tokens/keys'
import { type OAuthParams, requiredParam } from '../form'
import { narrowGrant } from '../resources'
import { type GrantContext, type GrantOutcome, issueUserTokens, newRefreshToken, refuseClient } from './issue'

/**
 * RFC 8628 §3.4-3.5: ONE statement authenticates the client, records the poll, applies slow_down
 * and consumes an approved code (starting a refresh family when the client uses refresh tokens,
 * and writing `token_issued`).
 */
export async function deviceCodeGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  const deviceCodeHash = await sha256Hex(requiredParam(params, 'device_code', 200))
  const refresh = await newRefreshToken(ctx.config, ctx.now)
  const result = await pollDeviceCode(ctx.db.http, {
    client: ctx.presented,
    deviceCodeHash,
    refresh,
    audit: ctx.audit,
    now: ctx.now,
  })
  if (result === undefined) {
    return refuseClient(ctx)
  }
  const { client, poll } = result
  confirmKeyRing(result.keyEpoch, ctx.now)
  if (poll === undefined) {
    throw new OAuthError('invalid_grant', { description: 'The device code is invalid' })
  }
  if (poll.expired) {
    throw new OAuthError('expired_token', { description: 'The device code has expired' })
  }
  switch (poll.previousStatus) {
    case 'pending':
      if (poll.slowDown) {
        throw new OAuthError('slow_down', {
          description: `Poll at most every ${poll.intervalSeconds} seconds`,
        })
      }
      throw new OAuthError('authorization_pending', { description: 'The user has not decided yet' })
    case 'denied':
      throw new OAuthError('access_denied', { description: 'The user denied the request' })
    case 'consumed':
      throw new OAuthError('invalid_grant', { description: 'The device code was already used' })
    default:
      break
  }
  if (poll.status !== 'active') {
    throw new OAuthError('invalid_grant', { description: 'The user may not sign in' })
  }
  // The grant's resource servers: their token lifetime and signing algorithm (issue 11).
  const issued = await narrowGrant(ctx.db.http, ctx.config, [], poll.resource, poll.scope)
  const response = await issueUserTokens(ctx, client, {
    grantee: poll,
    scope: issued.scope,
    resource: issued.resource,
    jti: poll.deviceId,
    refreshToken: poll.refreshIssued ? refresh.token : undefined,
    nonce: null,
    ttlSeconds: issued.ttlSeconds,
    alg: issued.alg,
  })
  return { response }
}
