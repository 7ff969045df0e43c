import type { Context } from 'hono'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { attemptLogin, type LoginOutcome } from './login'
import { completeMfaLogin, type MfaOutcome } from './mfa'
import { setSessionCookie } from './session-cookie'

/**
 * Runs a password sign-in for the JSON API and the HTML form alike and sets the session cookie on
 * success; `attemptLogin` writes the audit event with the outcome, either way.
 */
export async function signIn(
  c: Context<AppEnv>,
  input: { email: string; password: string; remember: boolean },
  via: 'api' | 'form',
): Promise<LoginOutcome> {
  const outcome = await attemptLogin(
    c.var.db.http,
    c.var.config,
    {
      tenantId: DEFAULT_TENANT_ID,
      email: input.email,
      password: input.password,
      remember: input.remember,
      ip: clientIp(c),
      userAgent: c.req.header('user-agent') ?? null,
      via,
    },
    new Date(),
  )
  if (outcome.kind === 'ok') {
    setSessionCookie(c, outcome.session)
  }
  return outcome
}

/** The problem for a failed sign-in. Unknown email and wrong password are the same answer. */
export function loginProblem(outcome: Exclude<LoginOutcome, { kind: 'ok' | 'mfa_required' }>): ProblemError {
  switch (outcome.kind) {
    case 'mfa_enrolment_required':
      return new ProblemError('mfa_enrolment_required', {
        detail: 'Two-factor sign-in is required and not set up yet; sign in at /login to set it up',
      })
    case 'invalid_credentials':
      return new ProblemError('invalid_credentials', { detail: 'The email or password is incorrect' })
    case 'throttled':
      return new ProblemError('rate_limited', {
        detail: 'Too many failed sign-in attempts; try again later',
        retryAfterSeconds: outcome.retryAfterSeconds,
      })
    case 'account_pending':
      return new ProblemError('account_pending', {
        detail: 'The account is waiting for an administrator to approve it',
      })
    case 'account_suspended':
      return new ProblemError('account_suspended', { detail: 'The account is suspended' })
    case 'email_unverified':
      return new ProblemError('email_unverified', {
        detail: 'Confirm your email address first; POST /auth/verify-email/resend sends a new link',
      })
  }
}

/** The second step of a sign-in, for the JSON API and the HTML form alike; sets the cookie on success. */
export async function signInSecondStep(
  c: Context<AppEnv>,
  input: { mfaToken: string; code: string },
): Promise<MfaOutcome> {
  const outcome = await completeMfaLogin(
    c.var.db.http,
    c.var.config,
    { ...input, ip: clientIp(c), userAgent: c.req.header('user-agent') ?? null },
    new Date(),
  )
  if (outcome.kind === 'ok') {
    setSessionCookie(c, outcome.session)
  }
  return outcome
}

/** The problem for a failed second step. */
export function mfaProblem(outcome: Exclude<MfaOutcome, { kind: 'ok' }>): ProblemError {
  switch (outcome.kind) {
    case 'invalid_mfa_token':
      return new ProblemError('invalid_mfa_token', {
        detail: 'The sign-in expired or was already finished; sign in again',
      })
    case 'invalid_mfa_code':
      return new ProblemError('invalid_mfa_code', { detail: 'The code is incorrect or was already used' })
    case 'throttled':
      return new ProblemError('rate_limited', {
        detail: 'Too many failed sign-in attempts; try again later',
        retryAfterSeconds: outcome.retryAfterSeconds,
      })
  }
}
