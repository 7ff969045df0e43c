import type { Context } from 'hono'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import { insertAuditEvents } from '../../db/queries/audit'
import { insertOutboxStatement } from '../../db/queries/email-outbox'
import { insertSessionStatement } from '../../db/queries/sessions'
import { type AttemptClaim, claimAttempts, retryAfterSeconds } from '../../db/queries/throttle'
import {
  insertEmailVerificationStatement,
  insertUserStatement,
  issueEmailVerificationForEmail,
  issuePasswordResetForEmail,
  type UserRow,
  updatePasswordStatement,
} from '../../db/queries/users'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { auditRow, auditStatement } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import { hashPassword, verifyPassword } from '../crypto/password'
import { randomToken } from '../crypto/random'
import { accountLink, deliverSoon, outboxMessage } from '../email/outbox'
import { renderPasswordResetEmail, renderVerificationEmail } from '../email/templates'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { endUserAccessStatement } from './end-user-access'
import {
  checkClaimedPassword,
  loginThrottleSubjects,
  overLimit,
  releaseClaimsStatements,
  sessionTtlSeconds,
} from './login'
import { withPasswordSlot } from './password-gate'
import { assertStrongPassword } from './password-policy'
import { setSessionCookie } from './session-cookie'

// Account actions shared by the JSON API (`/auth/*`) and the HTML pages (`/signup`,
// `/forgot-password`): one implementation, so the pages get the same limits and audit rows.

/** At most one verification or reset message per user per minute. */
export const ACCOUNT_MAIL_COOLDOWN_SECONDS = 60
export const VERIFY_EMAIL_PATH = '/auth/verify-email'
export const RESET_PASSWORD_PATH = '/auth/password-reset/confirm'

/**
 * Issue 9 #16: `POST /auth/register` answers 409 for a taken address (by design), so attempts are
 * limited per IP, claimed in one upsert before the argon2id hash. Every attempt counts, accounts
 * created included (sign-up abuse is the point). Without a known address (no trusted IP header)
 * there is nothing to key on and no limit applies, as for the per-IP sign-in counter.
 */
async function claimSignup(c: Context<AppEnv>, ip: string | null, now: Date): Promise<void> {
  if (ip === null) {
    return
  }
  const config = c.var.config
  const claims = await claimAttempts(c.var.db.http, [`register-ip:${ip}`], now, config.signupWindowSeconds)
  if (claims.some((claim) => claim.count > config.signupMaxPerIp)) {
    throw new ProblemError('rate_limited', {
      detail: 'Too many sign-up attempts from this address; try again later',
      retryAfterSeconds: retryAfterSeconds(claims, now),
    })
  }
}

export interface RegistrationInput {
  email: string
  password: string
  displayName: string | null
}

/**
 * Creates an account (pending under REQUIRE_APPROVAL) with its verification token and message in
 * one transaction. Throws `weak_password`, `rate_limited` or `email_taken` (409).
 */
export async function registerAccount(c: Context<AppEnv>, input: RegistrationInput): Promise<UserRow> {
  assertStrongPassword(input.password)
  const config = c.var.config
  const db = c.var.db.http
  const now = new Date()
  const ip = clientIp(c)
  await claimSignup(c, ip, now)
  const status = config.requireApproval ? 'pending' : 'active'
  const userId = crypto.randomUUID()
  const token = randomToken(32)
  const message = renderVerificationEmail(
    accountLink(config.issuer, VERIFY_EMAIL_PATH, token),
    config.emailVerificationTtlSeconds,
    config.brand,
  )
  const passwordHash = await withPasswordSlot(config.argon2MaxQueue, () =>
    hashPassword(input.password, config.argon2),
  )
  let user: UserRow | undefined
  let outboxId: string | undefined
  try {
    // One round trip, one transaction: the user, their verification token and its message.
    const [insertedUsers, , queued] = await db.batch([
      insertUserStatement(db, {
        id: userId,
        tenantId: DEFAULT_TENANT_ID,
        email: input.email,
        passwordHash,
        displayName: input.displayName,
        status,
        createdAt: now,
        updatedAt: now,
      }),
      insertEmailVerificationStatement(db, {
        tokenHash: await sha256Hex(token),
        userId,
        email: input.email,
        expiresAt: new Date(now.getTime() + config.emailVerificationTtlSeconds * 1000),
        createdAt: now,
      }),
      insertOutboxStatement(db, outboxMessage(input.email, message, now)),
      auditStatement(db, ip, {
        type: 'user_registered',
        actor: `user:${userId}`,
        userId,
        tenantId: DEFAULT_TENANT_ID,
        metadata: { status },
      }),
    ])
    user = insertedUsers[0]
    outboxId = queued[0]?.id
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) {
      throw new ProblemError('email_taken', { detail: 'An account with this email already exists' })
    }
    throw error
  }
  if (user === undefined) {
    throw new Error('user insert returned no row')
  }
  deliverSoon(c, outboxId === undefined ? [] : [outboxId])
  return user
}

/**
 * A fresh one-use link to `path` for an address-keyed mail (reset, resent verification): the
 * token's hash, the rendered message, and the times the issuing statement needs (now, expiry,
 * and the start of the per-address cooldown).
 */
async function accountMailLink(
  c: Context<AppEnv>,
  path: string,
  ttlSeconds: number,
  render: typeof renderVerificationEmail,
) {
  const config = c.var.config
  const now = new Date()
  const token = randomToken(32)
  return {
    tokenHash: await sha256Hex(token),
    message: render(accountLink(config.issuer, path, token), ttlSeconds, config.brand),
    now,
    expiresAt: new Date(now.getTime() + ttlSeconds * 1000),
    cooldownSince: new Date(now.getTime() - ACCOUNT_MAIL_COOLDOWN_SECONDS * 1000),
  }
}

/** Queues a reset link if the address has an account; the caller never learns whether it did. */
export async function requestPasswordReset(c: Context<AppEnv>, email: string): Promise<void> {
  const link = await accountMailLink(
    c,
    RESET_PASSWORD_PATH,
    c.var.config.passwordResetTtlSeconds,
    renderPasswordResetEmail,
  )
  const issued = await issuePasswordResetForEmail(c.var.db.http, {
    tenantId: DEFAULT_TENANT_ID,
    email,
    ...link,
    ip: clientIp(c),
  })
  if (issued !== undefined) {
    deliverSoon(c, [issued.outboxId])
  }
}

/**
 * Issue 9 #7: checking the current password is a sign-in attempt on the account: claimed on the
 * account's (and address's) counter before the hash, refused over the limit without one, a wrong
 * one audited as `user_login_failed` with `via`. Returns the claims for the caller's batch to give
 * back with its change. Throws `rate_limited` or `invalid_credentials`.
 */
export async function checkCurrentPassword(
  c: Context<AppEnv>,
  user: UserRow,
  password: string,
  via: string,
): Promise<AttemptClaim[]> {
  const config = c.var.config
  const db = c.var.db.http
  const now = new Date()
  const ip = clientIp(c)
  const claims = await claimAttempts(
    db,
    loginThrottleSubjects(user.id, ip),
    now,
    config.loginFailureWindowSeconds,
  )
  const blocked = overLimit(config, claims)
  const failed = (reason: string) =>
    insertAuditEvents(db, [
      auditRow(
        {
          type: 'user_login_failed',
          actor: `user:${user.id}`,
          userId: user.id,
          tenantId: user.tenantId,
          metadata: { via, reason },
        },
        ip,
      ),
    ])
  if (blocked.length > 0) {
    await failed('throttled')
    throw new ProblemError('rate_limited', {
      detail: 'Too many failed password checks; try again later',
      retryAfterSeconds: retryAfterSeconds(blocked, now),
    })
  }
  const check = await checkClaimedPassword(db, config.argon2MaxQueue, claims, () =>
    verifyPassword(password, user.passwordHash, config.argon2),
  )
  if (!check.ok) {
    await failed('invalid_credentials')
    throw new ProblemError('invalid_credentials', { detail: 'The current password is incorrect' })
  }
  return claims
}

/**
 * Changes the signed-in user's password (issue 9 #7): the current-password check is a sign-in
 * attempt, claimed on the account's and address's counters before the hash; success ends every
 * other session and refresh token (audited in the same batch) and gives this browser a fresh
 * session. Throws `weak_password`, `rate_limited` or `invalid_credentials`.
 */
export async function changePassword(
  c: Context<AppEnv>,
  current: { user: UserRow; session: { remember: boolean } },
  currentPassword: string,
  newPassword: string,
): Promise<void> {
  const config = c.var.config
  const db = c.var.db.http
  const now = new Date()
  const userId = current.user.id
  const ip = clientIp(c)
  assertStrongPassword(newPassword, 'new_password')
  const claims = await checkCurrentPassword(c, current.user, currentPassword, 'change_password')
  const newHash = await withPasswordSlot(config.argon2MaxQueue, () =>
    hashPassword(newPassword, config.argon2),
  )
  // One batch, one transaction: the new password, the end of every other way in (sessions,
  // refresh tokens) with its audit event, a fresh session id for this browser, and the claims
  // given back (the password checked out).
  const remember = current.session.remember
  const token = randomToken(32)
  const expiresAt = new Date(now.getTime() + sessionTtlSeconds(config, remember) * 1000)
  const [, , inserted] = await db.batch([
    updatePasswordStatement(db, userId, newHash, now),
    endUserAccessStatement(db, userId, now, {
      row: auditRow(
        { type: 'password_changed', actor: `user:${userId}`, userId, tenantId: current.user.tenantId },
        ip,
      ),
      sessionsKey: 'sessions_ended',
      refreshTokensKey: 'refresh_tokens_revoked',
    }),
    insertSessionStatement(db, {
      tokenHash: await sha256Hex(token),
      userId,
      remember,
      expiresAt,
      createdAt: now,
      lastSeenAt: now,
      userAgent: c.req.header('user-agent')?.slice(0, 512) ?? null,
      ip,
    }),
    ...releaseClaimsStatements(db, claims),
  ])
  const session = inserted[0]
  if (session !== undefined) {
    setSessionCookie(c, { token, id: session.id, expiresAt, remember })
  }
}

/** Queues a new verification link if the address has an unverified account (cooldown applies). */
export async function resendVerification(c: Context<AppEnv>, email: string): Promise<void> {
  const link = await accountMailLink(
    c,
    VERIFY_EMAIL_PATH,
    c.var.config.emailVerificationTtlSeconds,
    renderVerificationEmail,
  )
  const outboxId = await issueEmailVerificationForEmail(c.var.db.http, {
    tenantId: DEFAULT_TENANT_ID,
    email,
    ...link,
  })
  deliverSoon(c, outboxId === undefined ? [] : [outboxId])
}
