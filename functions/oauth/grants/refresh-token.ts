import {
  explainRefreshFailure,
  type RefreshFailure,
  rotateRefreshToken,
} from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { confirmKeyRing } from '../../tokens/keys'
import { type OAuthParams, param, requiredParam } from '../form'
import { MAX_RESOURCES, narrowGrant, resolveResources } from '../resources'
import { parseScope } from '../scope'
import {
  accessTokensExpireBy,
  type GrantContext,
  type GrantOutcome,
  issueUserTokens,
  newRefreshToken,
  refuseClient,
} from './issue'

const FAILURE_DESCRIPTIONS: Record<RefreshFailure, string> = {
  unknown: 'The refresh token is invalid',
  reused: 'The refresh token was already used; the grant is revoked',
  revoked: 'The refresh token was revoked',
  expired: 'The refresh token has expired',
  user_inactive: 'The user may not sign in',
  dpop_key_mismatch: 'The refresh token is bound to another DPoP key',
  resource_mismatch: 'resource was not part of this grant',
  scope_widened: 'scope exceeds what was originally granted',
}

/**
 * RFC 6749 §6 with rotation on every use (OAuth 2.1 §4.3.1). Round trips: ONE statement that
 * authenticates the client, rotates and writes `token_issued`; a failure spends one more, which
 * revokes the family (and records the reuse) when a rotated token came back.
 */
export async function refreshTokenGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  const tokenHash = await sha256Hex(requiredParam(params, 'refresh_token', 200))
  const narrowed = parseScope(param(params, 'scope'))
  // An unknown resource is refused before the statement; a known one that is not the grant's
  // target is checked inside the rotation, so the token does not rotate (and is not lost).
  const requested = await resolveResources(
    ctx.db.http,
    ctx.config,
    param(params, 'resource', MAX_RESOURCES * 2001),
  )
  const audience =
    requested.length === 0
      ? null
      : {
          identifier: requested.map((t) => t.identifier).join(' '),
          fallback: ctx.config.defaultAudience || ctx.config.issuer,
        }
  const next = await newRefreshToken(ctx.config, ctx.now)
  const result = await rotateRefreshToken(ctx.db.http, {
    client: ctx.presented,
    tokenHash,
    requestedScope: narrowed.join(' '),
    target: audience,
    next,
    audit: ctx.audit,
    now: ctx.now,
  })
  if (result === undefined) {
    return refuseClient(ctx)
  }
  const { client, rotated } = result
  confirmKeyRing(result.keyEpoch, ctx.now)
  if (rotated === undefined) {
    const why = await explainRefreshFailure(ctx.db.http, {
      tokenHash,
      client,
      dpopJkt: ctx.presented.dpop?.jkt ?? null,
      target: audience,
      audit: ctx.audit,
      now: ctx.now,
      accessTokensExpireBy: accessTokensExpireBy(ctx.config, ctx.now),
    })
    const error =
      why.failure === 'scope_widened'
        ? 'invalid_scope'
        : why.failure === 'resource_mismatch'
          ? 'invalid_target'
          : 'invalid_grant'
    throw new OAuthError(error, {
      description: FAILURE_DESCRIPTIONS[why.failure],
      log: `refresh_${why.failure}`,
    })
  }
  // RFC 6749 §6: a narrower scope applies to this access token; the grant keeps its scope. RFC
  // 8707 §2.2: `resource` narrows the audience (and drops the scopes of the targets left out).
  const issued = await narrowGrant(
    ctx.db.http,
    ctx.config,
    requested,
    rotated.resource,
    narrowed.length > 0 ? narrowed.join(' ') : rotated.scope,
  )
  const response = await issueUserTokens(ctx, client, {
    grantee: rotated,
    scope: issued.scope,
    resource: issued.resource,
    jti: next.id,
    refreshToken: next.token,
    nonce: null,
    ttlSeconds: issued.ttlSeconds,
    alg: issued.alg,
  })
  return { response }
}
