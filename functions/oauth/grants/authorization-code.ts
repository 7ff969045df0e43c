import { consumeAuthorizationCode, revokeReplayedCode } from '../../../db/queries/oauth-grants'
import { sha256Hex } from '../../crypto/hash'
import { OAuthError } from '../../errors/oauth'
import { confirmKeyRing } from '../../tokens/keys'
import { type OAuthParams, param, requiredParam } from '../form'
import { s256Challenge, verifyPkceS256 } from '../pkce'
import { MAX_RESOURCES, narrowGrant, resolveResources } from '../resources'
import {
  accessTokensExpireBy,
  type GrantContext,
  type GrantOutcome,
  issueUserTokens,
  newRefreshToken,
  refuseClient,
} from './issue'

/**
 * RFC 6749 §4.1.3 with PKCE S256 (RFC 7636 §4.6). Round trips: ONE statement that authenticates
 * the client, consumes the code (only with a proof of its DPoP key when `dpop_jkt` bound it,
 * RFC 9449 §10), starts the refresh family and writes `token_issued`. A failed
 * exchange spends one more to explain itself: why the client did not authenticate, or a replay
 * (which revokes what the first exchange issued) versus an unknown code.
 */
export async function authorizationCodeGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  const code = requiredParam(params, 'code', 200)
  const verifier = param(params, 'code_verifier', 200)
  if (verifier === undefined) {
    throw new OAuthError('invalid_request', { description: 'code_verifier is required (PKCE)' })
  }
  const redirectUri = param(params, 'redirect_uri') ?? null
  // An unknown resource is refused before the code is spent (no round trip for a cached one).
  const requested = await resolveResources(
    ctx.db.http,
    ctx.config,
    param(params, 'resource', MAX_RESOURCES * 2001),
  )
  const codeHash = await sha256Hex(code)
  const refresh = await newRefreshToken(ctx.config, ctx.now)
  const result = await consumeAuthorizationCode(ctx.db.http, {
    client: ctx.presented,
    codeHash,
    codeChallenge: await s256Challenge(verifier),
    redirectUri,
    refresh,
    audit: ctx.audit,
    now: ctx.now,
  })
  if (result === undefined) {
    return refuseClient(ctx)
  }
  const { client, code: consumed } = result
  confirmKeyRing(result.keyEpoch, ctx.now)
  if (consumed === undefined) {
    // RFC 6749 §10.5, RFC 9700 §4.5: a used code comes back → revoke what it issued.
    const replay = await revokeReplayedCode(ctx.db.http, {
      codeHash,
      client,
      audit: ctx.audit,
      now: ctx.now,
      accessTokensExpireBy: accessTokensExpireBy(ctx.config, ctx.now),
    })
    if (replay.keyBound) {
      // RFC 9449 §10: the code is bound to a DPoP key; it stays unused for the key's holder.
      throw new OAuthError('invalid_grant', {
        description: 'The authorization code is bound to another DPoP key',
        log: 'code_dpop_key_mismatch',
      })
    }
    throw new OAuthError('invalid_grant', {
      description: 'The authorization code is invalid, expired or already used',
      log: replay.replayed ? 'code_replayed' : 'code_unknown',
    })
  }
  // The statement compared the challenge too (it issues nothing on a mismatch); this is the
  // constant-time check that decides the answer.
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
  // RFC 8707 §2.2: `resource` narrows the token to some of the grant's targets (issue 11); their
  // lifetime and algorithm apply. Cached per isolate, else one round trip.
  const issued = await narrowGrant(ctx.db.http, ctx.config, requested, consumed.resource, consumed.scope)
  const response = await issueUserTokens(ctx, client, {
    grantee: consumed,
    scope: issued.scope,
    resource: issued.resource,
    jti: consumed.codeId,
    refreshToken: consumed.refreshIssued ? refresh.token : undefined,
    nonce: consumed.nonce,
    ttlSeconds: issued.ttlSeconds,
    alg: issued.alg,
  })
  return { response }
}
