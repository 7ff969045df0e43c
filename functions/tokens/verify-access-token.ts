import type { SQL } from 'drizzle-orm'
import { type JWTPayload, errors as joseErrors, jwtVerify } from 'jose'
import type { Db } from '../../db/client'
import {
  type AccessTokenState,
  accessTokenStateStatement,
  accessTokenStillValid,
} from '../../db/queries/oauth-tokens'
import { withProofSpent } from '../../db/queries/proof-jtis'
import type { Principal } from '../auth/principal'
import type { Config } from '../config'
import { OAuthError } from '../errors/oauth'
import { dpopReplayed } from '../middleware/access-credential'
import type { DpopProof } from './dpop'
import { confirmKeyRing, type SigningKey, verificationKey, verificationKeyToConfirm } from './keys'
import { ACCESS_TOKEN_TYP } from './mint'

/** Algorithms we sign with; anything else (`none` above all) is refused before any key lookup. */
const ACCEPTED_ALGORITHMS = ['ES256', 'RS256', 'EdDSA']
const MAX_TOKEN_LENGTH = 8192
/** RFC 9068 §2.2 claims, all required (oauth4webapi applies the same list). */
const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id']

export interface AccessTokenClaims extends JWTPayload {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  jti: string
  client_id: string
  scope?: string
  auth_time?: number
  /** RFC 9449 §6.1: the DPoP key the token is bound to. */
  cnf?: { jkt?: string }
  /** The tenant the token was issued in (its client's tenant); absent on tokens minted before issue 10. */
  tenant_id?: string
}

function invalid(log: string, cause?: unknown): OAuthError {
  return new OAuthError('invalid_token', { description: 'The access token is not valid', log, cause })
}

/**
 * Signature and claims only (no database): `audiences` is what the caller accepts, or 'any' for
 * introspection, where the resource server asking decides.
 */
export function verifyAccessTokenSignature(
  db: Db,
  config: Config,
  token: string,
  audiences: readonly string[] | 'any',
  now = new Date(),
): Promise<AccessTokenClaims> {
  return verifyWithKey((kid) => verificationKey(db, config, kid, now), config, token, audiences, now)
}

/** Claims verified with a key ring that the request's own statement must still confirm. */
export interface ClaimsToConfirm {
  claims: AccessTokenClaims
  /** The epoch of the ring past its TTL the signature was checked with; undefined: nothing to confirm. */
  ringEpoch: string | undefined
}

/**
 * verifyAccessTokenSignature for a request that only reads and selects `KEY_EPOCH` in the
 * statement it sends anyway: an isolate whose ring is past its TTL checks the signature with it
 * instead of reading the ring first, and `confirmedClaims` settles it with that statement's epoch.
 */
export async function verifyAccessTokenSignatureToConfirm(
  db: Db,
  config: Config,
  token: string,
  audiences: readonly string[] | 'any',
  now = new Date(),
): Promise<ClaimsToConfirm> {
  let ringEpoch: string | undefined
  const claims = await verifyWithKey(
    async (kid) => {
      const found = await verificationKeyToConfirm(db, config, kid, now)
      ringEpoch = found.epoch
      return found.key
    },
    config,
    token,
    audiences,
    now,
  )
  return { claims, ringEpoch }
}

/**
 * The claims once the statement's `KEY_EPOCH` is known: the same epoch as the ring's confirms the
 * check (and refreshes the ring for free); another one means the key set changed since the ring
 * was read, so a check made with a ring past its TTL is made again against a fresh read of it
 * (one more round trip), and throws OAuthError('invalid_token') as verifyAccessTokenSignature
 * would. A check made with a current ring stands, as it always did within the TTL.
 */
export async function confirmedClaims(
  db: Db,
  config: Config,
  token: string,
  audiences: readonly string[] | 'any',
  verified: ClaimsToConfirm,
  statementEpoch: string | null,
  now: Date,
): Promise<AccessTokenClaims> {
  if (verified.ringEpoch === undefined) {
    // Checked with a current ring: the epoch still tells the isolate about a change made elsewhere
    // (the next use re-reads the ring) or keeps the ring current.
    confirmKeyRing(statementEpoch, now)
    return verified.claims
  }
  if (statementEpoch === verified.ringEpoch && confirmKeyRing(statementEpoch, now)) {
    return verified.claims
  }
  confirmKeyRing(statementEpoch, now)
  return verifyAccessTokenSignature(db, config, token, audiences, now)
}

type KeyLookup = (kid: string) => Promise<SigningKey | undefined>

async function verifyWithKey(
  lookup: KeyLookup,
  config: Config,
  token: string,
  audiences: readonly string[] | 'any',
  now: Date,
): Promise<AccessTokenClaims> {
  if (token.length > MAX_TOKEN_LENGTH || token.split('.').length !== 3) {
    throw invalid('not a compact JWS')
  }
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const key = header.kid === undefined ? undefined : await lookup(header.kid)
        if (key === undefined || key.alg !== header.alg) {
          throw invalid('unknown kid or alg mismatch')
        }
        return key.publicKey
      },
      {
        algorithms: ACCEPTED_ALGORITHMS,
        issuer: config.issuer,
        ...(audiences === 'any' ? {} : { audience: [...audiences] }),
        typ: ACCESS_TOKEN_TYP,
        requiredClaims: REQUIRED_CLAIMS,
        currentDate: now,
      },
    )
    if (
      typeof payload.client_id !== 'string' ||
      typeof payload.jti !== 'string' ||
      typeof payload.sub !== 'string'
    ) {
      throw invalid('claims of the wrong type')
    }
    if (payload.scope !== undefined && typeof payload.scope !== 'string') {
      throw invalid('scope is not a string')
    }
    if (payload.tenant_id !== undefined && typeof payload.tenant_id !== 'string') {
      throw invalid('tenant_id is not a string')
    }
    const cnf = payload.cnf as { jkt?: unknown } | undefined
    if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || typeof cnf.jkt !== 'string')) {
      throw invalid('cnf without a jkt')
    }
    return payload as AccessTokenClaims
  } catch (error) {
    if (error instanceof OAuthError) {
      throw error
    }
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError || error instanceof SyntaxError) {
      throw invalid(error instanceof joseErrors.JOSEError ? error.code : 'malformed', error)
    }
    throw error
  }
}

/** True for a client_credentials token: RFC 9068 §2.2 puts the client_id in `sub`. */
export function isClientToken(claims: AccessTokenClaims): boolean {
  return claims.sub === claims.client_id
}

/** Whether the database state still allows the token (revocation, suspension, disabled client). */
export function principalFromState(
  claims: AccessTokenClaims,
  state: AccessTokenState | undefined,
): Principal {
  if (state === undefined || state.revoked || state.tokenClientDisabled !== false) {
    throw invalid(state === undefined ? 'client gone' : state.revoked ? 'revoked' : 'client disabled')
  }
  // Issue 10: a deactivated tenant's clients' tokens stop, and those from before a deactivation
  // stay dead after the reactivation (as its ended sessions and refresh tokens do).
  if (state.tokenTenantActive !== true || issuedBeforeCredentialEvent(claims, state.tokenTenantValidAfter)) {
    throw invalid('tenant deactivated')
  }
  const scopes = new Set((claims.scope ?? '').split(' ').filter(Boolean))
  if (isClientToken(claims)) {
    return { kind: 'client', clientId: claims.client_id, tenantId: state.tokenClientTenantId ?? '', scopes }
  }
  if (state.userStatus !== 'active' || state.userTenantId === null) {
    throw invalid(`user ${state.userStatus ?? 'gone'}`)
  }
  if (issuedBeforeCredentialEvent(claims, state.userTokensValidAfter)) {
    throw invalid('issued before a credential change')
  }
  return {
    kind: 'user',
    userId: claims.sub,
    tenantId: state.userTenantId,
    isAdmin: state.userIsAdmin === true,
    via: 'access_token',
    scopes,
    clientId: claims.client_id,
  }
}

/**
 * True when the token was issued in or before the second of the user's last credential event
 * (password reset or change, logout-all, suspension). `iat` has second resolution, so a token
 * minted earlier in that same second must die too; minting gives tokens issued after the event
 * an `iat` past that second (see `issueUserTokens`), so a fresh sign-in is never caught.
 */
export function issuedBeforeCredentialEvent(
  claims: AccessTokenClaims,
  tokensValidAfterSeconds: number | null,
): boolean {
  return tokensValidAfterSeconds !== null && !(claims.iat > tokensValidAfterSeconds)
}

/** The audiences of a token meant for our own APIs: the issuer, and DEFAULT_AUDIENCE if set. */
export function ownAudiences(config: Config): string[] {
  return [config.issuer, ...(config.defaultAudience ? [config.defaultAudience] : [])]
}

/** Signature and claims of a token meant for our own APIs (aud = issuer or DEFAULT_AUDIENCE). No database. */
export function verifyOwnAccessTokenSignature(
  db: Db,
  config: Config,
  token: string,
): Promise<AccessTokenClaims> {
  return verifyAccessTokenSignature(db, config, token, ownAudiences(config))
}

/**
 * The database half of the check as a SQL predicate, for hot paths that fold it into their own
 * statement instead of spending a round trip on `verifyAccessToken`.
 */
export function stillValidGuard(claims: AccessTokenClaims): SQL {
  return accessTokenStillValid({
    jti: claims.jti,
    tokenClientId: claims.client_id,
    userId: isClientToken(claims) ? null : claims.sub,
    issuedAt: claims.iat,
  })
}

/**
 * Verifies one of our RFC 9068 access tokens for our own APIs (aud = issuer or DEFAULT_AUDIENCE)
 * and returns who it speaks for. Throws OAuthError('invalid_token') for anything not valid now.
 * Round trips: one (revocation, user status and client state together, the key set's epoch, and a
 * DPoP proof's `jti` spent in the same batch), however long the isolate's key ring sat idle.
 */
export async function verifyAccessToken(
  db: Db,
  config: Config,
  token: string,
  /**
   * Runs between the signature check and the database read (the DPoP binding check, without the
   * database): the proof whose `jti` to spend with the read, or null. A lost spend is a replay.
   */
  proofFor?: (claims: AccessTokenClaims) => Promise<DpopProof | null>,
): Promise<Principal> {
  const now = new Date()
  const audiences = ownAudiences(config)
  // A ring past its TTL checks the signature as it is; the state statement's epoch settles it.
  const verified = await verifyAccessTokenSignatureToConfirm(db, config, token, audiences, now)
  const claims = verified.claims
  const proof = (await proofFor?.(claims)) ?? null
  const x = db.http
  const stateQuery = accessTokenStateStatement(x, {
    clientId: claims.client_id,
    jti: claims.jti,
    userId: isClientToken(claims) ? null : claims.sub,
    tokenClientId: claims.client_id,
  })
  const { result: rows, proofSpent } = await withProofSpent(x, stateQuery, proof)
  if (!proofSpent) {
    throw dpopReplayed()
  }
  const state = rows[0]
  if (state !== undefined) {
    await confirmedClaims(db, config, token, audiences, verified, state.keyEpoch, now)
  }
  return principalFromState(claims, state)
}
