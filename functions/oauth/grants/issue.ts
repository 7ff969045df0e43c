import type { Db } from '../../../db/client'
import type {
  GrantAudit,
  GrantClient,
  Grantee,
  NewRefreshToken,
  PresentedClient,
} from '../../../db/queries/oauth-grants'
import type { OAuthClientRow } from '../../../db/queries/oauth-tokens'
import type { SigningAlgorithm } from '../../../db/schema'
import type { Config } from '../../config'
import { sha256Hex } from '../../crypto/hash'
import { randomToken } from '../../crypto/random'
import { OAuthError } from '../../errors/oauth'
import { mintAccessToken, mintIdToken } from '../../tokens/mint'
import { idTokenAlgorithm } from '../client-metadata'
import { resourceAudience } from '../resources'

/** RFC 6749 §5.1 successful response, snake_case as on the wire. */
export interface TokenResponse {
  access_token: string
  /** RFC 9449 §5: `DPoP` when the access token is bound to the proof's key. */
  token_type: 'Bearer' | 'DPoP'
  expires_in: number
  scope: string
  refresh_token?: string
  id_token?: string
  /** RFC 8693 §2.2.1: what a token exchange issued. */
  issued_token_type?: string
}

/**
 * What a grant returns: the response. Its audit event was written by the grant's own statement
 * (issue 16), so there is nothing left to record.
 */
export interface GrantOutcome {
  response: TokenResponse
}

export interface GrantContext {
  db: Db
  config: Config
  now: Date
  /** The credentials presented; each grant's statement authenticates them. */
  presented: PresentedClient
  audit: GrantAudit
  /**
   * Failure path only (a second round trip): looks the client up and checks the credentials,
   * throwing `invalid_client` with the reason in the log; returns the row when they hold.
   */
  explainClient(): Promise<OAuthClientRow>
}

/**
 * The grant statement found no authenticated client: explain why (invalid_client from the
 * credential check, else unauthorized_client when the grant is not registered).
 */
export async function refuseClient(ctx: GrantContext): Promise<never> {
  const client = await ctx.explainClient()
  if (!client.grantTypes.includes(ctx.presented.grantType)) {
    throw new OAuthError('unauthorized_client', {
      description: `This client may not use ${ctx.presented.grantType}`,
    })
  }
  const refusal = proofRefusal(ctx, client)
  if (refusal !== undefined) {
    throw refusal
  }
  // The row changed between the two statements (disabled, secret rotated): refuse.
  throw new OAuthError('invalid_client', {
    description: 'Client authentication failed',
    log: 'client changed',
  })
}

/** The `token_type` of what this request mints (RFC 9449 §5). */
export function tokenType(ctx: GrantContext): 'Bearer' | 'DPoP' {
  return ctx.presented.dpop === null ? 'Bearer' : 'DPoP'
}

/**
 * The grant statement found no authenticated client, and the credentials check out: with a DPoP
 * proof, its `jti` was already spent (RFC 9449 §11.1); without one, the client registered
 * `dpop_bound_access_tokens` (RFC 9449 §5.2). Undefined: neither applies.
 */
function proofRefusal(ctx: GrantContext, client: OAuthClientRow): OAuthError | undefined {
  if (ctx.presented.dpop !== null) {
    return new OAuthError('invalid_dpop_proof', {
      description: 'The DPoP proof was already used',
      log: 'dpop jti replayed',
    })
  }
  if (client.metadata.dpop_bound_access_tokens === true) {
    return new OAuthError('invalid_dpop_proof', {
      description: 'This client must send a DPoP proof',
      log: 'dpop_bound_access_tokens without a proof',
    })
  }
  return undefined
}

/** A fresh refresh token: the secret for the client, its hash and row id for the database. */
export async function newRefreshToken(
  config: Config,
  now: Date,
): Promise<NewRefreshToken & { token: string }> {
  const token = randomToken(32)
  return {
    id: crypto.randomUUID(),
    token,
    tokenHash: await sha256Hex(token),
    expiresAt: new Date(now.getTime() + config.refreshTokenTtlSeconds * 1000),
  }
}

/** Access tokens minted before `now` expire by this instant (upper bound for revocation rows). */
export function accessTokensExpireBy(config: Config, now: Date): Date {
  return new Date(now.getTime() + config.accessTokenTtlSeconds * 1000)
}

/** OIDC Core §5.4: claims released by profile and email. */
export function userClaims(grantee: Grantee, scopes: readonly string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {}
  if (scopes.includes('email')) {
    claims.email = grantee.email
    claims.email_verified = grantee.emailVerified
  }
  if (scopes.includes('profile') && grantee.displayName !== null) {
    claims.name = grantee.displayName
  }
  return claims
}

/**
 * Mints the user-facing token response: an access token (jti names the grant row so a later
 * revocation can reach it), an id_token when `openid` was granted, and the refresh token if
 * one was stored. No database access on a warm isolate.
 */
export async function issueUserTokens(
  ctx: GrantContext,
  client: GrantClient,
  input: {
    grantee: Grantee
    scope: string
    resource: string | null
    jti: string
    refreshToken: string | undefined
    nonce: string | null
    /** The resource server's access-token lifetime (issue 11): it may only shorten ACCESS_TOKEN_TTL. */
    ttlSeconds?: number | null
    /** The resource server's signing algorithm (issue 11); undefined: ACCESS_TOKEN_ALG. */
    alg?: SigningAlgorithm | undefined
  },
): Promise<TokenResponse> {
  const scopes = input.scope.split(' ').filter(Boolean)
  const authTime = input.grantee.authTime === null ? null : new Date(input.grantee.authTime * 1000)
  const access = await mintAccessToken(ctx.db, ctx.config, {
    subject: input.grantee.userId,
    audience: resourceAudience(ctx.config, input.resource),
    clientId: client.clientId,
    tenantId: client.tenantId,
    scope: input.scope,
    jti: input.jti,
    now: ctx.now,
    authTime,
    issuedAfter: input.grantee.tokensValidAfter,
    jkt: ctx.presented.dpop?.jkt ?? null,
    ...(input.ttlSeconds ? { notAfter: Math.floor(ctx.now.getTime() / 1000) + input.ttlSeconds } : {}),
    ...(input.alg === undefined ? {} : { alg: input.alg }),
  })
  const response: TokenResponse = {
    access_token: access.token,
    token_type: tokenType(ctx),
    expires_in: access.expiresIn,
    scope: input.scope,
  }
  if (input.refreshToken !== undefined) {
    response.refresh_token = input.refreshToken
  }
  if (scopes.includes('openid')) {
    response.id_token = await mintIdToken(ctx.db, ctx.config, {
      userId: input.grantee.userId,
      clientId: client.clientId,
      alg: idTokenAlgorithm(client.idTokenSignedResponseAlg),
      now: ctx.now,
      authTime,
      ...(input.grantee.amr === undefined ? {} : { amr: input.grantee.amr }),
      nonce: input.nonce,
      claims: userClaims(input.grantee, scopes),
    })
  }
  return response
}
