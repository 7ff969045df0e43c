import type { Context } from 'hono'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import {
  applyEmailChange,
  changeRequestedSince,
  emailTakenInTenant,
  findLiveEmailChange,
  insertEmailChangeStatement,
  voidPendingChangesStatement,
} from '../../db/queries/email-changes'
import { insertOutboxStatement } from '../../db/queries/email-outbox'
import type { UserRow } from '../../db/queries/users'
import { auditStatement } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import { accountLink, deliverSoon, outboxMessage } from '../email/outbox'
import { renderEmailChangedNotice, renderEmailChangeEmail } from '../email/templates'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { ACCOUNT_MAIL_COOLDOWN_SECONDS, checkCurrentPassword } from './account-actions'
import { releaseClaimsStatements } from './login'

/** Where the link in the mail to the new address leads. */
export const CONFIRM_EMAIL_CHANGE_PATH = '/account/email/confirm'

/**
 * Asks to move the signed-in user to `newEmail` (already normalised): the current password is
 * checked like a sign-in (claimed first), the address must be free in the tenant and differ from
 * the current one, and at most one request per user per ACCOUNT_MAIL_COOLDOWN_SECONDS is mailed.
 * In one batch: earlier pending changes are voided, the new one stored (token as SHA-256, expiring
 * after EMAIL_VERIFICATION_TTL), the link queued to the NEW address, `email_change_requested`
 * audited and the claims given back. Nothing changes until the link is followed. Throws
 * `validation_failed` (same address), `email_taken`, `rate_limited` or `invalid_credentials`.
 */
export async function requestEmailChange(
  c: Context<AppEnv>,
  user: UserRow,
  newEmail: string,
  password: string,
): Promise<void> {
  const config = c.var.config
  const db = c.var.db.http
  if (newEmail.toLowerCase() === user.email.toLowerCase()) {
    throw new ProblemError('validation_failed', { detail: 'That is already your address' })
  }
  const claims = await checkCurrentPassword(c, user, password, 'email_change')
  const now = new Date()
  if (await emailTakenInTenant(db, user.tenantId, newEmail, user.id)) {
    throw new ProblemError('email_taken', { detail: 'Another account uses this address' })
  }
  const since = new Date(now.getTime() - ACCOUNT_MAIL_COOLDOWN_SECONDS * 1000)
  if (await changeRequestedSince(db, user.id, since)) {
    throw new ProblemError('rate_limited', {
      detail: 'A confirmation link was sent a moment ago; wait a minute before asking again',
      retryAfterSeconds: ACCOUNT_MAIL_COOLDOWN_SECONDS,
    })
  }
  const token = randomToken(32)
  const ttl = config.emailVerificationTtlSeconds
  const message = renderEmailChangeEmail(
    accountLink(config.issuer, CONFIRM_EMAIL_CHANGE_PATH, token),
    ttl,
    config.brand,
  )
  const [, , queued] = await db.batch([
    voidPendingChangesStatement(db, user.id, now),
    insertEmailChangeStatement(db, {
      tokenHash: await sha256Hex(token),
      userId: user.id,
      newEmail,
      expiresAt: new Date(now.getTime() + ttl * 1000),
      createdAt: now,
    }),
    insertOutboxStatement(db, outboxMessage(newEmail, message, now)),
    auditStatement(db, clientIp(c), {
      type: 'email_change_requested',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { via: 'account' },
    }),
    ...releaseClaimsStatements(db, claims),
  ])
  deliverSoon(
    c,
    queued.map((row) => row.id),
  )
}

export type EmailChangeOutcome =
  | { kind: 'changed'; email: string }
  | { kind: 'invalid_token' }
  /** Another account took the address after the request. */
  | { kind: 'email_taken' }

/**
 * Follows the link from the mail to the new address: 2 round trips (the pending change is read to
 * word the notice to the old address, then `applyEmailChange` does the rest in one statement).
 */
export async function confirmEmailChange(c: Context<AppEnv>, token: string): Promise<EmailChangeOutcome> {
  const db = c.var.db.http
  const config = c.var.config
  const now = new Date()
  const tokenHash = await sha256Hex(token)
  const pending = token === '' ? undefined : await findLiveEmailChange(db, tokenHash, now)
  if (pending === undefined) {
    return { kind: 'invalid_token' }
  }
  let changed: Awaited<ReturnType<typeof applyEmailChange>>
  try {
    changed = await applyEmailChange(db, {
      tokenHash,
      oldEmail: pending.oldEmail,
      now,
      ip: clientIp(c),
      notice: renderEmailChangedNotice(pending.newEmail, config.brand, config.issuer),
    })
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) {
      return { kind: 'email_taken' }
    }
    throw error
  }
  if (changed === undefined) {
    return { kind: 'invalid_token' }
  }
  deliverSoon(c, changed.outbox_id === null ? [] : [changed.outbox_id])
  return { kind: 'changed', email: changed.email }
}
