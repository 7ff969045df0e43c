import { consumeAuthorizationCode, revokeReplayedCode } from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { type OAuthParams, param, requiredParam } from '../form'
import { s256Challenge, verifyPkceS256 } from '../pkce'
import {
  accessTokensExpireBy,
  type GrantContext,
  type GrantOutcome,
  issueUserTokens,
  newRefreshToken,
  tokenIssuedEvent,
} from './issue'

/**
 * RFC 6749 §4.1.3 with PKCE S256 (RFC 7636 §4.6). Round trips: one statement that consumes the
 * code and starts the refresh family; a failed exchange spends one more to tell a replay
 * (which revokes what the first exchange issued) from an unknown code.
 */
export async function authorizationCodeGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  if (!ctx.client.grantTypes.includes('authorization_code')) {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use authorization_code' })
  }
  const code = requiredParam(params, 'code', 200)
  const verifier = param(params, 'code_verifier', 200)
  if (verifier === undefined) {
    throw new OAuthError('invalid_request', { description: 'code_verifier is required (PKCE)' })
  }
  const redirectUri = param(params, 'redirect_uri') ?? null
  const codeHash = await sha256Hex(code)
  const refresh = ctx.client.grantTypes.includes('refresh_token')
    ? await newRefreshToken(ctx.config, ctx.now)
    : null
  const consumed = await consumeAuthorizationCode(ctx.db.http, {
    codeHash,
    clientUuid: ctx.client.id,
    codeChallenge: await s256Challenge(verifier),
    redirectUri,
    refresh,
    now: ctx.now,
  })
  if (consumed === undefined) {
    // RFC 6749 §10.5, RFC 9700 §4.5: a used code comes back → revoke what it issued.
    const replay = await revokeReplayedCode(
      ctx.db.http,
      codeHash,
      ctx.now,
      accessTokensExpireBy(ctx.config, ctx.now),
    )
    throw new OAuthError('invalid_grant', {
      description: 'The authorization code is invalid, expired or already used',
      log: replay.replayed ? 'code_replayed' : 'code_unknown',
      cause: replay.replayed ? new CodeReplayed(replay.codeId, replay.revokedRefreshTokens) : undefined,
    })
  }
  if (!(await verifyPkceS256(verifier, consumed.codeChallenge))) {
    throw new OAuthError('invalid_grant', {
      description: 'code_verifier does not match',
      log: 'pkce_mismatch',
    })
  }
  // RFC 6749 §4.1.3: redirect_uri must match when it was part of the authorization request.
  if (redirectUri !== null && redirectUri !== consumed.redirectUri) {
    throw new OAuthError('invalid_grant', {
      description: 'redirect_uri does not match',
      log: 'redirect_mismatch',
    })
  }
  if (consumed.status !== 'active') {
    throw new OAuthError('invalid_grant', { description: 'The user may not sign in', log: 'user_inactive' })
  }
  const response = await issueUserTokens(ctx, {
    grantee: consumed,
    scope: consumed.scope,
    resource: consumed.resource,
    jti: consumed.codeId,
    refreshToken: consumed.refreshIssued ? refresh?.token : undefined,
    nonce: consumed.nonce,
  })
  return { response, audit: [tokenIssuedEvent(ctx, 'authorization_code', consumed.userId)] }
}

/** Carried in `cause` so the edge can audit a replay. */
export class CodeReplayed extends Error {
  override name = this.constructor.name
  constructor(
    readonly codeId: string | null,
    readonly revokedRefreshTokens: number,
  ) {
    super('authorization code replayed')
  }
}
