import { errors, type JWTPayload } from 'jose'

/** RFC 9068 claims of a Portcullis access token. */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  sub: string
  aud: string | string[]
  exp: number
  iat: number
  jti: string
  client_id: string
  scope?: string
  /** The tenant the token was issued in (its client's); absent on tokens from older servers. */
  tenant_id?: string
}

export type AccessTokenFailure =
  /** Not a JWT, wrong `typ`, or an algorithm outside the pinned list. */
  | 'MALFORMED'
  /** Signed by no key the issuer publishes (after one JWKS refresh). */
  | 'INVALID_SIGNATURE'
  | 'EXPIRED'
  /** `iat`/`nbf` in the future beyond the clock tolerance. */
  | 'NOT_YET_VALID'
  | 'WRONG_ISSUER'
  | 'WRONG_AUDIENCE'
  | 'INSUFFICIENT_SCOPE'
  /** Introspection said `active: false` (revoked, or the user or client was disabled). */
  | 'REVOKED'
  /** A required claim is missing or mistyped. */
  | 'INVALID_CLAIMS'

export type AccessTokenVerification =
  | { valid: true; claims: AccessTokenClaims; scopes: string[] }
  | { valid: false; code: AccessTokenFailure; missingScopes?: string[] }

export interface VerifyAccessTokenOptions {
  /** The `aud` this API answers to (the `resource` the client asked for). Required. */
  audience: string
  /** Every one of these must be granted. */
  scopes?: readonly string[]
  /** Call the introspection endpoint too, so revoked tokens fail before they expire. Needs client credentials. */
  introspect?: boolean
}

/** The JWS algorithms Portcullis signs access tokens with (ACCESS_TOKEN_ALG). */
export const ACCESS_TOKEN_ALGORITHMS = ['ES256', 'EdDSA', 'RS256']
export const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'iat', 'jti', 'client_id']

/** Maps jose's verification errors to a verdict; anything else (network, JWKS timeout) is rethrown. */
export function failureOf(error: unknown): AccessTokenFailure | undefined {
  if (error instanceof errors.JWTExpired) {
    return 'EXPIRED'
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss':
        return 'WRONG_ISSUER'
      case 'aud':
        return 'WRONG_AUDIENCE'
      case 'typ':
        return 'MALFORMED'
      case 'iat':
      case 'nbf':
        return error.reason === 'check_failed' ? 'NOT_YET_VALID' : 'INVALID_CLAIMS'
      default:
        return 'INVALID_CLAIMS'
    }
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey) {
    return 'INVALID_SIGNATURE'
  }
  if (
    error instanceof errors.JWSInvalid ||
    error instanceof errors.JWTInvalid ||
    error instanceof errors.JOSEAlgNotAllowed ||
    error instanceof errors.JOSENotSupported ||
    error instanceof errors.JWKSMultipleMatchingKeys
  ) {
    return 'MALFORMED'
  }
  return undefined
}

export function grantedScopes(claims: AccessTokenClaims): string[] {
  return typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : []
}

export function hasClaimTypes(claims: JWTPayload): claims is AccessTokenClaims {
  return (
    typeof claims.iss === 'string' &&
    typeof claims.sub === 'string' &&
    typeof claims.exp === 'number' &&
    typeof claims.iat === 'number' &&
    typeof claims.jti === 'string' &&
    typeof claims.client_id === 'string' &&
    (claims.scope === undefined || typeof claims.scope === 'string') &&
    (claims.tenant_id === undefined || typeof claims.tenant_id === 'string')
  )
}
