import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { isDatabaseUnavailable, isDataException } from '../../db/errors'
import { ConfigError } from '../config'
import { configInvalidHealthResponse } from '../health/healthz'
import { errorForLog, log } from '../log'
import { REQUEST_ID_HEADER } from '../middleware/request-context'
import { configErrorPage, wantsHtml } from '../pages/config-error'
import { SigningKeyUnavailableError } from '../tokens/keys'
import { OAuthError, type OAuthErrorCode } from './oauth'
import { PROBLEMS, type ProblemCode, ProblemError } from './problem'

const PROBLEM_TYPE_BASE = 'urn:portcullis:problem:'
const RETRY_AFTER_UNAVAILABLE_SECONDS = 5
// A MASTER_KEY that cannot open the signing keys is an operator's fix, not a blip.
const RETRY_AFTER_SIGNING_KEY_SECONDS = 60

/** OAuth endpoints answer in RFC 6749 §5.2 form; everything else in RFC 9457 form. */
export function isOAuthPath(path: string): boolean {
  return path.startsWith('/oauth/')
}

// How a problem reads on an OAuth endpoint. The HTTP status stays the problem's own.
const OAUTH_EQUIVALENT: Record<ProblemCode, OAuthErrorCode> = {
  validation_failed: 'invalid_request',
  malformed_json: 'invalid_request',
  weak_password: 'invalid_request',
  invalid_token: 'invalid_grant',
  unauthenticated: 'invalid_token',
  invalid_credentials: 'access_denied',
  invalid_mfa_code: 'access_denied',
  invalid_mfa_token: 'access_denied',
  mfa_enrolment_required: 'access_denied',
  invalid_passkey: 'access_denied',
  recent_sign_in_required: 'access_denied',
  forbidden: 'access_denied',
  insufficient_scope: 'insufficient_scope',
  csrf_failed: 'access_denied',
  account_pending: 'access_denied',
  account_suspended: 'access_denied',
  email_unverified: 'access_denied',
  password_login_disabled: 'access_denied',
  not_found: 'not_found',
  method_not_allowed: 'method_not_allowed',
  conflict: 'invalid_request',
  email_taken: 'invalid_request',
  slug_taken: 'invalid_request',
  last_owner: 'invalid_request',
  payload_too_large: 'invalid_request',
  unsupported_media_type: 'invalid_request',
  rate_limited: 'slow_down',
  invalid_config: 'server_error',
  internal_error: 'server_error',
  database_unavailable: 'temporarily_unavailable',
  signing_key_unavailable: 'temporarily_unavailable',
  overloaded: 'temporarily_unavailable',
}

/** The single error renderer (`app.onError`). Never puts a stack or internal reason on the wire. */
export function renderError(error: unknown, c: Context): Response {
  if (error instanceof ConfigError && c.req.path === '/healthz') {
    return configInvalidHealthResponse(error)
  }
  const known = classify(error)
  const requestId = c.get('requestId') as string | undefined
  if (known.status >= 500) {
    // Shedding load (the argon2 queue is full) is the server working as designed: a warning.
    log(known.code === 'overloaded' ? 'warn' : 'error', 'request_failed', {
      requestId,
      method: c.req.method,
      path: c.req.path,
      status: known.status,
      code: known.code,
      error: errorForLog(error),
    })
  }
  const response =
    error instanceof ConfigError && wantsHtml(c.req.header('accept'))
      ? configErrorPage(requestId)
      : render(known, error, c.req.path)
  // A fresh Response drops what middleware set on the context; the request id must survive.
  if (requestId !== undefined) {
    response.headers.set(REQUEST_ID_HEADER, requestId)
  }
  return response
}

function render(known: ProblemError | OAuthError, error: unknown, path: string): Response {
  if (known instanceof OAuthError) {
    return oauthResponse(known.code, known.status, known.options.description, oauthHeaders(known))
  }
  if (isOAuthPath(path) && !(error instanceof ConfigError)) {
    return oauthResponse(
      OAUTH_EQUIVALENT[known.code],
      known.status,
      known.options.detail,
      problemHeaders(known),
    )
  }
  return problemResponse(known, path)
}

function classify(error: unknown): ProblemError | OAuthError {
  if (error instanceof ProblemError || error instanceof OAuthError) {
    return error
  }
  if (error instanceof ConfigError) {
    return new ProblemError('invalid_config', {
      detail: `The configuration is invalid: ${error.message}`,
    })
  }
  if (error instanceof HTTPException) {
    if (error.status === 413) {
      return new ProblemError('payload_too_large', { detail: 'Request bodies are limited to 64 KiB' })
    }
    if (error.status === 400) {
      return new ProblemError('malformed_json', { detail: 'The body could not be parsed' })
    }
    if (error.status === 415) {
      return new ProblemError('unsupported_media_type')
    }
  }
  if (isDatabaseUnavailable(error)) {
    return new ProblemError('database_unavailable', {
      detail: 'The database could not be reached; retry shortly',
      retryAfterSeconds: RETRY_AFTER_UNAVAILABLE_SECONDS,
    })
  }
  if (error instanceof SigningKeyUnavailableError) {
    return new ProblemError('signing_key_unavailable', {
      detail: 'A signing key cannot be decrypted with the configured master key; see /healthz',
      retryAfterSeconds: RETRY_AFTER_SIGNING_KEY_SECONDS,
    })
  }
  // SQLSTATE class 22: Postgres refused a value (a NUL byte, an out-of-range number). The input
  // was bad, so 400, and the statement and value stay off the wire.
  if (isDataException(error)) {
    return new ProblemError('validation_failed', {
      detail: 'A value in the request cannot be stored (for example, it contains a NUL character)',
    })
  }
  return new ProblemError('internal_error', { detail: 'An unexpected error occurred' })
}

function problemHeaders(problem: ProblemError): Record<string, string> {
  const headers: Record<string, string> = { ...problem.options.headers }
  if (problem.options.retryAfterSeconds !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(problem.options.retryAfterSeconds)))
  }
  return headers
}

function oauthHeaders(error: OAuthError): Record<string, string> {
  const headers: Record<string, string> = { ...error.options.headers }
  if (error.options.retryAfterSeconds !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(error.options.retryAfterSeconds)))
  }
  if (error.code === 'invalid_client' && error.options.basicAuth) {
    headers['www-authenticate'] = 'Basic realm="portcullis", charset="UTF-8"'
  }
  if (error.options.bearer) {
    headers['www-authenticate'] =
      error.code === 'invalid_request' && error.options.description === undefined
        ? 'Bearer realm="portcullis"'
        : `Bearer realm="portcullis", error="${error.code}"`
  }
  return headers
}

export function problemResponse(problem: ProblemError, instance?: string): Response {
  const { status, title } = PROBLEMS[problem.code]
  const body: Record<string, unknown> = {
    type: `${PROBLEM_TYPE_BASE}${problem.code}`,
    title,
    status,
    detail: problem.options.detail ?? title,
    code: problem.code,
  }
  if (instance !== undefined) {
    body.instance = instance
  }
  if (problem.options.errors !== undefined) {
    body.errors = problem.options.errors
  }
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/problem+json', ...problemHeaders(problem) },
  })
}

function oauthResponse(
  code: OAuthErrorCode,
  status: number,
  description: string | undefined,
  headers: Record<string, string>,
): Response {
  const body: Record<string, string> = { error: code }
  if (description !== undefined) {
    body.error_description = description
  }
  return new Response(JSON.stringify(body), {
    status,
    headers: {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      pragma: 'no-cache',
      ...headers,
    },
  })
}
