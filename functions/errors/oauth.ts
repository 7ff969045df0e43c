/**
 * OAuth error responses (RFC 6749 §5.2, RFC 7009, RFC 7591 §3.2.2, RFC 8628 §3.5, RFC 6750 §3.1).
 * One status per code; `invalid_client` becomes 401 with WWW-Authenticate when the client
 * tried HTTP Basic (RFC 6749 §5.2).
 */
export const OAUTH_ERRORS = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  access_denied: 400,
  unsupported_response_type: 400,
  unsupported_token_type: 400,
  authorization_pending: 400,
  slow_down: 400,
  expired_token: 400,
  invalid_redirect_uri: 400,
  invalid_client_metadata: 400,
  /** RFC 9449 §5 and §7.1: a DPoP proof missing, malformed, replayed or for another request. */
  invalid_dpop_proof: 400,
  /** RFC 9449 §8: the proof must carry the nonce sent in the DPoP-Nonce header. */
  use_dpop_nonce: 400,
  /** RFC 9126 §4 / RFC 9101 §6.2: an unknown, expired, used or foreign `request_uri`. */
  invalid_request_uri: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  not_found: 404,
  method_not_allowed: 405,
  request_too_large: 413,
  /** Not an RFC code: a rate limit (dynamic registration), sent with Retry-After. */
  too_many_requests: 429,
  server_error: 500,
  temporarily_unavailable: 503,
} as const satisfies Record<string, number>

export type OAuthErrorCode = keyof typeof OAUTH_ERRORS

export interface OAuthErrorOptions {
  /** Shown to the client as `error_description`. */
  description?: string
  /** For the log only. */
  log?: string
  /** The client authenticated (or tried to) with HTTP Basic: answer 401 + WWW-Authenticate. */
  basicAuth?: boolean
  /** Bearer-protected resource (userinfo): answer with a Bearer challenge (RFC 6750 §3). */
  bearer?: boolean
  retryAfterSeconds?: number
  headers?: Record<string, string>
  cause?: unknown
}

export class OAuthError extends Error {
  override name = 'OAuthError'
  readonly status: number
  constructor(
    readonly code: OAuthErrorCode,
    readonly options: OAuthErrorOptions = {},
  ) {
    super(options.log ?? options.description ?? code, { cause: options.cause })
    this.status = OAUTH_ERRORS[code]
  }
}
