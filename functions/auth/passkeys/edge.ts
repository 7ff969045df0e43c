import type { Context } from 'hono'
import type { PasskeyRow } from '../../../db/queries/passkeys'
import { removePasskeyAudited, renamePasskeyAudited } from '../../../db/queries/passkeys'
import type { UserRow } from '../../../db/queries/users'
import { isUuid } from '../../../db/uuid'
import { auditRow } from '../../audit/record'
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '../../crypto/webauthn'
import type { AppEnv } from '../../env'
import { ProblemError } from '../../errors/problem'
import { NO_PASSWORD } from '../../federation/routes'
import { log } from '../../log'
import { clientIp } from '../../middleware/client-ip'
import { mfaProblem } from '../login-edge'
import { setSessionCookie } from '../session-cookie'
import { type FinishRegistrationOutcome, finishRegistration, signedInRecently } from './registration'
import { completePasswordlessSignIn, completeSecondFactor, type PasskeySignInOutcome } from './sign-in'

// The HTTP side of passkeys, shared by the JSON API (/auth/passkeys) and the pages (/login,
// /account): one implementation, so both get the same limits, audit rows and answers.

export interface PasskeyJson {
  id: string
  name: string
  /** The authenticator reported the credential backed up (a synced passkey). */
  synced: boolean
  transports: string[]
  created_at: string
  last_used_at: string | null
}

export function toPasskeyJson(row: PasskeyRow): PasskeyJson {
  return {
    id: row.id,
    name: row.name,
    synced: row.backedUp,
    transports: row.transports,
    created_at: row.createdAt.toISOString(),
    last_used_at: row.lastUsedAt?.toISOString() ?? null,
  }
}

/** Passkeys need a domain-name ISSUER: 404 on an IP-address deployment, as if the route were absent. */
export function passkeysUnavailable(): ProblemError {
  return new ProblemError('not_found', {
    detail: 'Passkeys are not available: ISSUER must be a domain name (or localhost), not an IP address',
  })
}

function requestContext(c: Context<AppEnv>) {
  return { ip: clientIp(c), userAgent: c.req.header('user-agent') ?? null }
}

/** A usernameless passkey sign-in; sets the session cookie on success. */
export async function signInWithPasskey(
  c: Context<AppEnv>,
  input: { response: AuthenticationResponseJSON; remember: boolean },
  via: 'api' | 'form',
): Promise<PasskeySignInOutcome> {
  const outcome = await completePasswordlessSignIn(
    c.var.db.http,
    c.var.config,
    { ...input, ...requestContext(c), via },
    new Date(),
  )
  return settle(c, outcome)
}

/** The second step of a two-step sign-in with a passkey; sets the session cookie on success. */
export async function secondStepWithPasskey(
  c: Context<AppEnv>,
  input: { mfaToken: string; response: AuthenticationResponseJSON },
  via: 'api' | 'form',
): Promise<PasskeySignInOutcome> {
  const outcome = await completeSecondFactor(
    c.var.db.http,
    c.var.config,
    { ...input, remember: false, ...requestContext(c), via },
    new Date(),
  )
  return settle(c, outcome)
}

function settle(c: Context<AppEnv>, outcome: PasskeySignInOutcome): PasskeySignInOutcome {
  if (outcome.kind === 'ok') {
    setSessionCookie(c, outcome.session)
  } else if (outcome.kind === 'counter_regressed') {
    // Worth an operator's attention: a cloned authenticator, or one restored from a backup.
    log('warn', 'passkey_counter_regressed', { requestId: c.var.requestId })
  }
  return outcome
}

/** The problem for a refused passkey sign-in (JSON API). */
export function passkeySignInProblem(outcome: Exclude<PasskeySignInOutcome, { kind: 'ok' }>): ProblemError {
  switch (outcome.kind) {
    case 'invalid_passkey':
    case 'counter_regressed':
      return new ProblemError('invalid_passkey', {
        detail: 'The passkey could not be verified; ask for new options and try again',
        log: outcome.kind,
      })
    case 'throttled':
    case 'invalid_mfa_token':
      // The same answers as the TOTP second step's.
      return mfaProblem(outcome)
    case 'account_pending':
      return new ProblemError('account_pending', {
        detail: 'The account is waiting for an administrator to approve it',
      })
    case 'account_suspended':
      return new ProblemError('account_suspended', { detail: 'The account is suspended' })
    case 'email_unverified':
      return new ProblemError('email_unverified', { detail: 'Confirm your email address first' })
    case 'unavailable':
      return passkeysUnavailable()
  }
}

/** The name of a passkey added without one (renamed at /account). */
const DEFAULT_PASSKEY_NAME = 'Passkey'

export type AddPasskeyOutcome = FinishRegistrationOutcome | { kind: 'stale_session' }

/**
 * Adds a passkey for the signed-in user, refused (`stale_session`) unless the session began
 * within RECENT_SIGN_IN_SECONDS: a stolen session cookie alone must not plant a lasting way in.
 */
export async function addPasskey(
  c: Context<AppEnv>,
  me: { user: UserRow; session: { createdAt: Date } },
  input: { response: RegistrationResponseJSON; name: string | undefined },
): Promise<AddPasskeyOutcome> {
  const now = new Date()
  if (!signedInRecently(me.session, now)) {
    return { kind: 'stale_session' }
  }
  const outcome = await finishRegistration(
    c.var.db.http,
    c.var.config,
    { user: me.user, response: input.response, name: input.name ?? DEFAULT_PASSKEY_NAME, ip: clientIp(c) },
    now,
  )
  if (outcome.kind === 'invalid_response') {
    log('info', 'passkey_registration_refused', { requestId: c.var.requestId, reason: outcome.reason })
  }
  return outcome
}

/** The problem for a passkey that was not added (JSON API). */
export function addPasskeyProblem(outcome: Exclude<AddPasskeyOutcome, { kind: 'ok' }>): ProblemError {
  switch (outcome.kind) {
    case 'stale_session':
      return new ProblemError('recent_sign_in_required', {
        detail: 'Sign in again (within the last 15 minutes) to add a passkey',
      })
    case 'unavailable':
      return passkeysUnavailable()
    case 'invalid_response':
      return new ProblemError('validation_failed', {
        detail: 'credential: the passkey could not be verified; ask for new options and try again',
        errors: [{ field: 'credential', message: 'could not be verified' }],
      })
    case 'already_registered':
      return new ProblemError('conflict', { detail: 'This passkey is already registered' })
    case 'too_many':
      return new ProblemError('conflict', { detail: 'Remove a passkey before adding another' })
  }
}

function passkeyAudit(
  c: Context<AppEnv>,
  user: UserRow,
  type: 'passkey_renamed' | 'passkey_removed',
  via: string,
) {
  return auditRow(
    { type, actor: `user:${user.id}`, userId: user.id, tenantId: user.tenantId, metadata: { via } },
    clientIp(c),
  )
}

/** Renames one of the user's passkeys (audited); false when the user has no such passkey. */
export async function renamePasskey(
  c: Context<AppEnv>,
  user: UserRow,
  id: string,
  name: string,
  via: string,
) {
  return (
    isUuid(id) &&
    renamePasskeyAudited(c.var.db.http, {
      userId: user.id,
      id,
      name,
      audit: passkeyAudit(c, user, 'passkey_renamed', via),
    })
  )
}

/** Removes one of the user's passkeys (audited), unless it is the account's last way to sign in. */
export async function removePasskey(c: Context<AppEnv>, user: UserRow, id: string, via: string) {
  if (!isUuid(id)) {
    return 'not_found' as const
  }
  return removePasskeyAudited(c.var.db.http, {
    userId: user.id,
    id,
    noPasswordHash: NO_PASSWORD,
    audit: passkeyAudit(c, user, 'passkey_removed', via),
  })
}
