import type { Context } from 'hono'
import {
  countUnusedRecoveryCodes,
  deleteRecoveryCodesStatement,
  deleteTotpStatement,
  findTotp,
  insertRecoveryCodesStatement,
  spendTotpStepStatement,
  upsertPendingTotpStatement,
} from '../../db/queries/mfa'
import { type AttemptClaim, claimAttempts, retryAfterSeconds } from '../../db/queries/throttle'
import type { UserRow } from '../../db/queries/users'
import { auditStatement } from '../audit/record'
import { seal } from '../crypto/aes-gcm'
import { verifyPassword } from '../crypto/password'
import { matchTotpStep, newTotpSecret, otpauthUri } from '../crypto/totp'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { checkClaimedPassword, loginThrottleSubjects, overLimit, releaseClaimsStatements } from './login'
import { newRecoveryCodes, openTotpSecret, spendSecondFactor, totpSealContext } from './mfa'

export interface TotpStatus {
  active: boolean
  recoveryCodesLeft: number
}

export async function totpStatus(c: Context<AppEnv>, userId: string): Promise<TotpStatus> {
  const db = c.var.db.http
  const [row, left] = await Promise.all([findTotp(db, userId), countUnusedRecoveryCodes(db, userId)])
  return { active: row?.confirmedAt != null, recoveryCodesLeft: left }
}

/**
 * Starts an enrolment: a new secret, generated here and sealed under MASTER_KEY, stored
 * unconfirmed (sign-in is unchanged until a first code confirms it). Refused while a factor is
 * active (disable it first). Returns what the authenticator app needs.
 */
export async function startTotpEnrolment(
  c: Context<AppEnv>,
  user: UserRow,
): Promise<{ secret: string; uri: string } | undefined> {
  const config = c.var.config
  const secret = newTotpSecret()
  const sealed = await seal(config.masterKeys, secret, totpSealContext(user.id))
  const stored = await upsertPendingTotpStatement(c.var.db.http, {
    userId: user.id,
    masterKeyId: sealed.masterKeyId,
    secretSealed: sealed.ciphertext,
    now: new Date(),
  })
  if (stored.length !== 1) {
    return undefined
  }
  return { secret, uri: otpauthUri(config.brand.name, user.email, secret) }
}

/** The pending enrolment's secret and URI again (to redraw the page after a wrong code). */
export async function pendingEnrolment(
  c: Context<AppEnv>,
  user: UserRow,
): Promise<{ secret: string; uri: string } | undefined> {
  const row = await findTotp(c.var.db.http, user.id)
  if (row === undefined || row.confirmedAt !== null) {
    return undefined
  }
  const secret = await openTotpSecret(c.var.config, row)
  return { secret, uri: otpauthUri(c.var.config.brand.name, user.email, secret) }
}

/**
 * Confirms a pending enrolment with its first code. In one transaction: the factor becomes
 * active (spending the code's step), the ten recovery codes replace any old ones, and
 * `mfa_enabled` is audited. Returns the recovery codes (shown once), or undefined for a wrong code.
 */
export async function confirmTotpEnrolment(
  c: Context<AppEnv>,
  user: UserRow,
  code: string,
): Promise<string[] | undefined> {
  const now = new Date()
  const row = await findTotp(c.var.db.http, user.id)
  if (row === undefined || row.confirmedAt !== null) {
    return undefined
  }
  const step = await matchTotpStep(await openTotpSecret(c.var.config, row), code.trim(), now)
  if (step === undefined) {
    return undefined
  }
  const recovery = await newRecoveryCodes()
  const ip = clientIp(c)
  return c.var.db.transaction(async (tx) => {
    const confirmed = await spendTotpStepStatement(tx, user.id, step, now)
    if (confirmed.length !== 1) {
      return undefined
    }
    await deleteRecoveryCodesStatement(tx, user.id)
    await insertRecoveryCodesStatement(tx, user.id, recovery.hashes, now)
    await auditStatement(tx, ip, {
      type: 'mfa_enabled',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { factor: 'totp', via: 'account' },
    })
    return recovery.codes
  })
}

/**
 * A sensitive two-factor change (turning it off, new recovery codes) is proven by the current
 * password or a current code (TOTP or recovery, spent), claimed on the sign-in counters before
 * the check. Returns the claims, for the caller's batch to give back with its change (the proof
 * checked out). Throws `rate_limited` or `invalid_credentials`.
 */
async function proveFactorOwner(
  c: Context<AppEnv>,
  user: UserRow,
  proof: { password: string; code: string },
  now: Date,
): Promise<AttemptClaim[]> {
  const config = c.var.config
  const db = c.var.db.http
  const ip = clientIp(c)
  const claims = await claimAttempts(
    db,
    loginThrottleSubjects(user.id, ip),
    now,
    config.loginFailureWindowSeconds,
  )
  const blocked = overLimit(config, claims)
  if (blocked.length > 0) {
    throw new ProblemError('rate_limited', { retryAfterSeconds: retryAfterSeconds(blocked, now) })
  }
  let proven = false
  if (proof.code.trim() !== '') {
    proven = (await spendSecondFactor(db, config, user.id, proof.code, now)) !== undefined
  } else if (proof.password !== '') {
    const check = await checkClaimedPassword(db, config.argon2MaxQueue, claims, () =>
      verifyPassword(proof.password, user.passwordHash, config.argon2),
    )
    proven = check.ok
  }
  if (!proven) {
    throw new ProblemError('invalid_credentials', { detail: 'The password or code is incorrect' })
  }
  return claims
}

/**
 * Turns TOTP off once `proveFactorOwner` passes. The factor, the recovery codes and the
 * `mfa_disabled` audit go in one batch. Throws `rate_limited` or `invalid_credentials`.
 */
export async function disableTotp(
  c: Context<AppEnv>,
  user: UserRow,
  proof: { password: string; code: string },
): Promise<void> {
  const claims = await proveFactorOwner(c, user, proof, new Date())
  const db = c.var.db.http
  const ip = clientIp(c)
  await db.batch([
    deleteTotpStatement(db, user.id),
    deleteRecoveryCodesStatement(db, user.id),
    auditStatement(db, ip, {
      type: 'mfa_disabled',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { factor: 'totp', via: 'account' },
    }),
    ...releaseClaimsStatements(db, claims),
  ])
}

/**
 * Ten new recovery codes for a user whose TOTP is on, once `proveFactorOwner` passes: every old
 * code (used or not) is deleted, the new hashes stored and `recovery_codes_regenerated` audited in
 * one batch. Returns the codes (shown once), or undefined when two-factor sign-in is off. Throws
 * `rate_limited` or `invalid_credentials`.
 */
export async function regenerateRecoveryCodes(
  c: Context<AppEnv>,
  user: UserRow,
  proof: { password: string; code: string },
): Promise<string[] | undefined> {
  const db = c.var.db.http
  const now = new Date()
  const factor = await findTotp(db, user.id)
  if (factor?.confirmedAt == null) {
    return undefined
  }
  const claims = await proveFactorOwner(c, user, proof, now)
  const recovery = await newRecoveryCodes()
  await db.batch([
    deleteRecoveryCodesStatement(db, user.id),
    insertRecoveryCodesStatement(db, user.id, recovery.hashes, now),
    auditStatement(db, clientIp(c), {
      type: 'recovery_codes_regenerated',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { count: recovery.codes.length, via: 'account' },
    }),
    ...releaseClaimsStatements(db, claims),
  ])
  return recovery.codes
}
