import { pollDeviceCode } from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { DEVICE_CODE_GRANT } from '../client-metadata'
import { type OAuthParams, requiredParam } from '../form'
import {
  type GrantContext,
  type GrantOutcome,
  issueUserTokens,
  newRefreshToken,
  tokenIssuedEvent,
} from './issue'

/**
 * RFC 8628 §3.4-3.5: one statement records the poll, applies slow_down and consumes an approved
 * code (starting a refresh family when the client uses refresh tokens).
 */
export async function deviceCodeGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  if (!ctx.client.grantTypes.includes(DEVICE_CODE_GRANT)) {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use the device grant' })
  }
  const deviceCodeHash = await sha256Hex(requiredParam(params, 'device_code', 200))
  const refresh = ctx.client.grantTypes.includes('refresh_token')
    ? await newRefreshToken(ctx.config, ctx.now)
    : null
  const poll = await pollDeviceCode(ctx.db.http, {
    deviceCodeHash,
    clientUuid: ctx.client.id,
    refresh,
    now: ctx.now,
  })
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
  const response = await issueUserTokens(ctx, {
    grantee: poll,
    scope: poll.scope,
    resource: poll.resource,
    jti: poll.deviceId,
    refreshToken: poll.refreshIssued ? refresh?.token : undefined,
    nonce: null,
  })
  return { response, audit: [tokenIssuedEvent(ctx, DEVICE_CODE_GRANT, poll.userId)] }
}
