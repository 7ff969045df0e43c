/**
 * RFC 9457 problems for every non-OAuth endpoint: a closed set of codes, each with its status
 * and title. The status comes from here, never from the throw site.
 */
export const PROBLEMS = {
  validation_failed: { status: 400, title: 'The request is invalid' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  weak_password: { status: 400, title: 'The password is too weak' },
  invalid_token: { status: 400, title: 'The token is invalid, expired or already used' },
  unauthenticated: { status: 401, title: 'Authentication is required' },
  invalid_credentials: { status: 401, title: 'The email or password is incorrect' },
  invalid_mfa_code: { status: 401, title: 'The two-factor code is incorrect' },
  invalid_mfa_token: { status: 401, title: 'The sign-in expired or was already finished; sign in again' },
  mfa_enrolment_required: { status: 403, title: 'Two-factor sign-in must be set up first' },
  invalid_passkey: { status: 401, title: 'The passkey could not be verified' },
  forbidden: { status: 403, title: 'You may not do this' },
  insufficient_scope: { status: 403, title: 'The credential lacks the required scope' },
  recent_sign_in_required: { status: 403, title: 'Sign in again to do this' },
  csrf_failed: { status: 403, title: 'The form has expired; reload the page and try again' },
  account_pending: { status: 403, title: 'The account awaits approval' },
  account_suspended: { status: 403, title: 'The account is suspended' },
  email_unverified: { status: 403, title: 'The email address is not verified' },
  password_login_disabled: { status: 403, title: 'Password sign-in is turned off; sign in with a provider' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'The request conflicts with the current state' },
  email_taken: { status: 409, title: 'An account with this email already exists' },
  slug_taken: { status: 409, title: 'A tenant with this slug already exists' },
  last_owner: { status: 409, title: 'A tenant must keep at least one owner' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  rate_limited: { status: 429, title: 'Too many requests' },
  invalid_config: { status: 500, title: 'The service is misconfigured' },
  internal_error: { status: 500, title: 'Internal error' },
  database_unavailable: { status: 503, title: 'The database is unavailable' },
  signing_key_unavailable: { status: 503, title: 'Tokens cannot be signed or verified right now' },
  overloaded: { status: 503, title: 'The service is busy; retry shortly' },
} as const satisfies Record<string, { status: number; title: string }>

export type ProblemCode = keyof typeof PROBLEMS

export interface FieldIssue {
  /** Dotted path of the offending field, e.g. `redirect_uris.0`. */
  field: string
  message: string
}

export interface ProblemOptions {
  /** Shown to the caller: what went wrong and how to fix it. No secrets. */
  detail?: string
  /** For the log only: the precise internal reason. */
  log?: string
  errors?: FieldIssue[]
  /** Seconds, for 429 and 503. */
  retryAfterSeconds?: number
  headers?: Record<string, string>
  cause?: unknown
}

export class ProblemError extends Error {
  override name = 'ProblemError'
  readonly status: number
  constructor(
    readonly code: ProblemCode,
    readonly options: ProblemOptions = {},
  ) {
    super(options.log ?? options.detail ?? PROBLEMS[code].title, { cause: options.cause })
    this.status = PROBLEMS[code].status
  }
}

/** A 400 `validation_failed` that names the field. */
export function invalidField(field: string, message: string): ProblemError {
  return new ProblemError('validation_failed', {
    detail: `${field}: ${message}`,
    errors: [{ field, message }],
  })
}
