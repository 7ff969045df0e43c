import type { Context } from 'hono'
import {
  auditEmailVerifiedStatement,
  consumeAllPasswordResets,
  consumeEmailVerificationStatement,
  consumePasswordReset,
  markVerifiedByTokenStatement,
  type UserRow,
  updatePasswordStatement,
} from '../../db/queries/users'
import { auditRow } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import { hashPassword } from '../crypto/password'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { endUserAccess } from './end-user-access'
import { withPasswordSlot } from './password-gate'
import { assertStrongPassword } from './password-policy'

/**
 * Consumes an email-verification token (single use, unexpired) and marks the address verified.
 * One batch, one round trip, `email_verified` recorded in it. Undefined for a forged, expired or
 * used token.
 */
export async function verifyEmailToken(c: Context<AppEnv>, token: string): Promise<UserRow | undefined> {
  const db = c.var.db.http
  const tokenHash = await sha256Hex(token)
  const now = new Date()
  const [consumed, verified] = await db.batch([
    consumeEmailVerificationStatement(db, tokenHash, now),
    markVerifiedByTokenStatement(db, tokenHash, now),
    auditEmailVerifiedStatement(db, tokenHash, now, clientIp(c)),
  ])
  const user = verified[0]
  if (consumed.length === 0 || user === undefined) {
    return undefined
  }
  return user
}

/**
 * Sets a new password with a reset token. Atomic (one interactive transaction): the token is
 * consumed, the password set, other reset links voided and every session and refresh token
 * ended, or nothing happens. Throws `weak_password` (token untouched) or `invalid_token`.
 */
export async function confirmPasswordReset(
  c: Context<AppEnv>,
  token: string,
  password: string,
): Promise<UserRow> {
  assertStrongPassword(password)
  const tokenHash = await sha256Hex(token)
  const { argon2, argon2MaxQueue } = c.var.config
  const passwordHash = await withPasswordSlot(argon2MaxQueue, () => hashPassword(password, argon2))
  const now = new Date()
  const ip = clientIp(c)
  const result = await c.var.db.transaction(async (tx) => {
    const userId = await consumePasswordReset(tx, tokenHash, now)
    if (userId === undefined) {
      return undefined
    }
    const [user] = await updatePasswordStatement(tx, userId, passwordHash, now)
    await consumeAllPasswordResets(tx, userId, now)
    // The event commits with the reset (same transaction), counts of what it ended included.
    await endUserAccess(tx, userId, now, {
      row: auditRow(
        {
          type: 'password_reset_completed',
          actor: `user:${userId}`,
          userId,
          tenantId: user?.tenantId ?? null,
        },
        ip,
      ),
      sessionsKey: 'sessions_ended',
      refreshTokensKey: 'refresh_tokens_revoked',
    })
    return user
  })
  if (result === undefined) {
    throw new ProblemError('invalid_token', { detail: 'The reset link is invalid, expired or already used' })
  }
  return result
}
