import { type JWTPayload, SignJWT } from 'jose'
import type { Db } from '../../db/client'
import type { SigningAlgorithm } from '../../db/schema'
import { acrForAmr } from '../auth/acr'
import type { Config } from '../config'
import { signingKeyFor } from './keys'

/** RFC 9068 §2.1: the media type of our access tokens. */
export const ACCESS_TOKEN_TYP = 'at+jwt'

export interface AccessTokenInput {
  /** User id, or the client_id for client_credentials (RFC 9068 §2.2). */
  subject: string
  /** One audience, or several (RFC 8707 §2: one per `resource`). */
  audience: string | string[]
  /** Public client_id. */
  clientId: string
  /** The tenant the token is issued in: its client's tenant (`tenant_id` claim, issue 10). */
  tenantId: string
  scope: string
  /** Unique id; lets a revocation name this token. */
  jti: string
  now: Date
  authTime?: Date | null
  /**
   * The subject's last credential event, whole epoch seconds: the token's `iat` is put past it.
   * `iat` has second resolution and a token issued in the event's second is refused (it may
   * predate the event), so a token minted after the event in that same second says the next
   * second (at most 1 s ahead of the clock).
   */
  issuedAfter?: number | null
  /** RFC 9449 §6.1: the DPoP key's thumbprint the token is bound to (`cnf.jkt`), if any. */
  jkt?: string | null
  /** RFC 8693 §4.1: who acts for the subject (token exchange). */
  act?: Record<string, unknown>
  /** Epoch seconds the token may not outlive (an exchanged token ends with its subject token). */
  notAfter?: number
  /** The audience's signing algorithm (issue 11: per resource server); ACCESS_TOKEN_ALG otherwise. */
  alg?: SigningAlgorithm
}

export interface MintedToken {
  token: string
  expiresIn: number
  expiresAt: Date
}

async function sign(
  db: Db,
  config: Config,
  alg: SigningAlgorithm,
  typ: string,
  claims: JWTPayload,
  now: Date,
): Promise<string> {
  const key = await signingKeyFor(db, config, alg, now)
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ })
    .sign(await key.privateKey())
}

/**
 * An RFC 9068 JWT access token signed with the active key of ACCESS_TOKEN_ALG (ES256 by default). No database access on a warm
 * isolate (the key set is cached).
 */
export async function mintAccessToken(db: Db, config: Config, input: AccessTokenInput): Promise<MintedToken> {
  const iat = Math.max(
    Math.floor(input.now.getTime() / 1000),
    (input.issuedAfter ?? Number.NEGATIVE_INFINITY) + 1,
  )
  const exp = Math.min(iat + config.accessTokenTtlSeconds, input.notAfter ?? Number.POSITIVE_INFINITY)
  const claims: JWTPayload = {
    iss: config.issuer,
    sub: input.subject,
    aud: input.audience,
    exp,
    iat,
    jti: input.jti,
    client_id: input.clientId,
    tenant_id: input.tenantId,
    scope: input.scope,
  }
  if (input.jkt) {
    claims.cnf = { jkt: input.jkt }
  }
  if (input.act !== undefined) {
    claims.act = input.act
  }
  if (input.authTime) {
    claims.auth_time = Math.floor(input.authTime.getTime() / 1000)
  }
  const token = await sign(
    db,
    config,
    input.alg ?? config.accessTokenAlg,
    ACCESS_TOKEN_TYP,
    claims,
    input.now,
  )
  return { token, expiresIn: Math.max(0, exp - iat), expiresAt: new Date(exp * 1000) }
}

export interface IdTokenInput {
  userId: string
  clientId: string
  alg: SigningAlgorithm
  now: Date
  authTime: Date | null
  /** OIDC `amr` (RFC 8176 values), when known; `acr` is derived from it (auth/acr.ts). */
  amr?: readonly string[]
  nonce: string | null
  /** OIDC Core §5.4 claims the scope released (email, name...). */
  claims: Record<string, unknown>
}

/** An OIDC id_token (Core §2), signed RS256 unless the client registered ES256. */
export async function mintIdToken(db: Db, config: Config, input: IdTokenInput): Promise<string> {
  const iat = Math.floor(input.now.getTime() / 1000)
  const claims: JWTPayload = {
    ...input.claims,
    iss: config.issuer,
    sub: input.userId,
    aud: input.clientId,
    azp: input.clientId,
    exp: iat + config.accessTokenTtlSeconds,
    iat,
  }
  if (input.authTime) {
    claims.auth_time = Math.floor(input.authTime.getTime() / 1000)
  }
  if (input.nonce) {
    claims.nonce = input.nonce
  }
  if (input.amr !== undefined && input.amr.length > 0) {
    claims.amr = [...input.amr]
    claims.acr = acrForAmr(input.amr)
  }
  return sign(db, config, input.alg, 'JWT', claims, input.now)
}

/** The `aud` of an access token: RFC 8707 resource, else DEFAULT_AUDIENCE, else the issuer. */
export function accessTokenAudience(config: Config, resource: string | null | undefined): string {
  return resource || config.defaultAudience || config.issuer
}
