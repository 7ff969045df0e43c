import type { HttpDb } from '../../db/client'
import {
  deleteMfaChallengeStatement,
  findLiveMfaChallenge,
  findTotp,
  spendRecoveryCodeStatement,
  spendTotpStepStatement,
  type TotpRow,
} from '../../db/queries/mfa'
import { claimAttemptsStatement, retryAfterSeconds, toClaims } from '../../db/queries/throttle'
import { findUserById, type UserRow } from '../../db/queries/users'
import { auditStatement } from '../audit/record'
import type { Config } from '../config'
import { unseal } from '../crypto/aes-gcm'
import { sha256Hex } from '../crypto/hash'
import { randomBytes } from '../crypto/random'
import { base32Encode, matchTotpStep } from '../crypto/totp'
import { loginThrottleSubjects, type NewSession, overLimit, startSession } from './login'

export const RECOVERY_CODE_COUNT = 10

/** The AES-GCM context a user's TOTP secret is sealed under (a sealed secret moved to another user does not open). */
export function totpSealContext(userId: string): string {
  return `totp:${userId}`
}

export async function openTotpSecret(config: Config, row: TotpRow): Promise<string> {
  return unseal(
    config.masterKeys,
    { masterKeyId: row.masterKeyId, ciphertext: row.secretSealed },
    totpSealContext(row.userId),
  )
}

/** Ten recovery codes like `k3j9x-2mq7v` (50 bits each) and their hashes. */
export async function newRecoveryCodes(): Promise<{ codes: string[]; hashes: string[] }> {
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const text = base32Encode(randomBytes(7)).slice(0, 10).toLowerCase()
    return `${text.slice(0, 5)}-${text.slice(5)}`
  })
  return { codes, hashes: await Promise.all(codes.map(recoveryCodeHash)) }
}

/** Recovery codes compare without case, spaces or dashes. */
export function recoveryCodeHash(code: string): Promise<string> {
  return sha256Hex(`recovery:${code.toLowerCase().replace(/[\s-]/g, '')}`)
}

export function isTotpCode(code: string): boolean {
  return /^\d{6}$/.test(code)
}

/**
 * Checks a second factor of this user and spends it atomically: a TOTP code only for a time
 * step later than the last one accepted (`last_step < step`), a recovery code only while
 * unused. Whichever of any number of concurrent uses updates the row wins; the others fail.
 * Returns the `amr` method used, or undefined.
 */
export async function spendSecondFactor(
  db: HttpDb,
  config: Config,
  userId: string,
  code: string,
  now: Date,
): Promise<'otp' | 'recovery' | undefined> {
  const trimmed = code.trim()
  if (isTotpCode(trimmed)) {
    const row = await findTotp(db, userId)
    if (row === undefined || row.confirmedAt === null) {
      return undefined
    }
    const step = await matchTotpStep(await openTotpSecret(config, row), trimmed, now)
    if (step === undefined) {
      return undefined
    }
    const spent = await spendTotpStepStatement(db, userId, step)
    return spent.length === 1 ? 'otp' : undefined
  }
  if (trimmed.length === 0 || trimmed.length > 32) {
    return undefined
  }
  const spent = await spendRecoveryCodeStatement(db, userId, await recoveryCodeHash(trimmed), now)
  return spent.length === 1 ? 'recovery' : undefined
}

export interface MfaInput {
  mfaToken: string
  code: string
  ip: string | null
  userAgent: string | null
}

export type MfaOutcome =
  | { kind: 'ok'; user: UserRow; session: NewSession; amr: string[] }
  | { kind: 'invalid_mfa_token' }
  | { kind: 'invalid_mfa_code' }
  | { kind: 'throttled'; retryAfterSeconds: number }

/**
 * The second step of a sign-in. The attempt is claimed (the account's and the address's counters,
 * the ones the password uses) before the code is checked, so a burst of guesses checks at most
 * LOGIN_MAX_FAILURES_PER_ACCOUNT codes per window. A right code spends its factor, then consumes
 * the pending sign-in (only one second step can finish it) and the session, login stamp,
 * `user_login` audit and claim release commit in one batch. No session exists before this.
 */
export async function completeMfaLogin(
  db: HttpDb,
  config: Config,
  input: MfaInput,
  now: Date,
): Promise<MfaOutcome> {
  const challenge =
    input.mfaToken === '' || input.mfaToken.length > 128
      ? undefined
      : await findLiveMfaChallenge(db, await sha256Hex(input.mfaToken), now)
  // An enrolment-only sign-in (REQUIRE_TWO_FACTOR, no factor yet) finishes only at /login/enrol.
  if (challenge === undefined || challenge.purpose !== 'second_factor') {
    return { kind: 'invalid_mfa_token' }
  }
  const userId = challenge.userId
  const user = await findUserById(db, userId)
  if (user === undefined || user.status !== 'active') {
    return { kind: 'invalid_mfa_token' }
  }
  const claims = toClaims(
    await claimAttemptsStatement(
      db,
      loginThrottleSubjects(userId, input.ip),
      now,
      config.loginFailureWindowSeconds,
    ),
  )
  const blocked = overLimit(config, claims)
  const failed = async (reason: string) =>
    db.batch([
      auditStatement(db, input.ip, {
        type: 'user_login_failed',
        actor: `user:${userId}`,
        userId,
        tenantId: user.tenantId,
        metadata: { via: challenge.via, reason },
      }),
    ])
  if (blocked.length > 0) {
    await failed('throttled')
    return { kind: 'throttled', retryAfterSeconds: retryAfterSeconds(blocked, now) }
  }
  const method = await spendSecondFactor(db, config, userId, input.code, now)
  if (method === undefined) {
    await failed('invalid_mfa_code')
    return { kind: 'invalid_mfa_code' }
  }
  const consumed = await deleteMfaChallengeStatement(db, challenge.id)
  if (consumed.length !== 1) {
    return { kind: 'invalid_mfa_token' }
  }
  // RFC 8176: `otp` for a TOTP code; a recovery code is a second factor of no listed kind.
  // A federated first step is no password: RFC 8176 has no value for it, so only the code's.
  const first = challenge.via === 'federated' ? [] : ['pwd']
  const amr = method === 'otp' ? [...first, 'otp', 'mfa'] : [...first, 'mfa']
  const session = await startSession(
    db,
    config,
    {
      user,
      remember: challenge.remember,
      ip: input.ip,
      userAgent: input.userAgent,
      amr,
      metadata: { via: challenge.via, remember: challenge.remember, second_factor: method },
      alsoRecord:
        method === 'recovery'
          ? [
              {
                type: 'recovery_code_used',
                actor: `user:${userId}`,
                userId,
                tenantId: user.tenantId,
                metadata: {},
              },
            ]
          : [],
      claims,
    },
    now,
  )
  return { kind: 'ok', user: { ...user, lastLoginAt: now }, session, amr }
}
