import {
  explainRefreshFailure,
  type RefreshFailure,
  rotateRefreshToken,
} from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { type OAuthParams, param, requiredParam } from '../form'
import { parseScope } from '../scope'
import {
  accessTokensExpireBy,
  type GrantContext,
  type GrantOutcome,
  issueUserTokens,
  newRefreshToken,
  tokenIssuedEvent,
} from './issue'

/** Carried in `cause` so the edge can audit reuse. */
export class RefreshReuseDetected extends Error {
  override name = this.constructor.name
  constructor(
    readonly familyId: string | null,
    readonly userId: string | null,
    readonly revoked: number,
  ) {
    super('refresh token reused')
  }
}

const FAILURE_DESCRIPTIONS: Record<RefreshFailure, string> = {
  unknown: 'The refresh token is invalid',
  reused: 'The refresh token was already used; the grant is revoked',
  revoked: 'The refresh token was revoked',
  expired: 'The refresh token has expired',
  user_inactive: 'The user may not sign in',
  scope_widened: 'scope exceeds what was originally granted',
}

/**
 * RFC 6749 §6 with rotation on every use (OAuth 2.1 §4.3.1). Round trips: one statement that
 * rotates; a failure spends one more, which revokes the family when a rotated token came back.
 */
export async function refreshTokenGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  if (!ctx.client.grantTypes.includes('refresh_token')) {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use refresh_token' })
  }
  const tokenHash = await sha256Hex(requiredParam(params, 'refresh_token', 200))
  const requested = parseScope(param(params, 'scope'))
  const next = await newRefreshToken(ctx.config, ctx.now)
  const rotated = await rotateRefreshToken(ctx.db.http, {
    tokenHash,
    clientUuid: ctx.client.id,
    requestedScope: requested.join(' '),
    next,
    now: ctx.now,
  })
  if (rotated === undefined) {
    const why = await explainRefreshFailure(ctx.db.http, {
      tokenHash,
      clientUuid: ctx.client.id,
      now: ctx.now,
      accessTokensExpireBy: accessTokensExpireBy(ctx.config, ctx.now),
    })
    throw new OAuthError(why.failure === 'scope_widened' ? 'invalid_scope' : 'invalid_grant', {
      description: FAILURE_DESCRIPTIONS[why.failure],
      log: `refresh_${why.failure}`,
      cause:
        why.failure === 'reused'
          ? new RefreshReuseDetected(why.familyId, why.userId, why.revoked)
          : undefined,
    })
  }
  // RFC 6749 §6: a narrower scope applies to this access token; the grant keeps its scope.
  const scope = requested.length > 0 ? requested.join(' ') : rotated.scope
  const response = await issueUserTokens(ctx, {
    grantee: rotated,
    scope,
    resource: rotated.resource,
    jti: next.id,
    refreshToken: next.token,
    nonce: null,
  })
  return {
    response,
    audit: [tokenIssuedEvent(ctx, 'refresh_token', rotated.userId, { family_id: rotated.familyId })],
  }
}
