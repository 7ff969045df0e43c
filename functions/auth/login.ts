import type { HttpDb } from '../../db/client'
import { insertSessionStatement } from '../../db/queries/sessions'
import { clearThrottlesStatement, recordFailures, selectThrottles } from '../../db/queries/throttle'
import { recordLoginStatement, selectUserByEmail, type UserRow } from '../../db/queries/users'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { burnPasswordCheck, hashPassword, verifyPassword } from '../crypto/password'
import { randomToken } from '../crypto/random'
import { assertPasswordSlotFree, withPasswordSlot } from './password-gate'

export interface LoginInput {
  tenantId: string
  email: string
  password: string
  remember: boolean
  ip: string | null
  userAgent: string | null
}

export interface NewSession {
  /** The raw session id for the cookie; only its SHA-256 is stored. */
  token: string
  id: string
  expiresAt: Date
  remember: boolean
}

export type LoginOutcome =
  | { kind: 'ok'; user: UserRow; session: NewSession; upgradedHash: boolean }
  /** Unknown email or wrong password: indistinguishable to the caller. */
  | { kind: 'invalid_credentials'; userId: string | undefined; failures: number }
  | { kind: 'throttled'; retryAfterSeconds: number; userId: string | undefined }
  | { kind: 'account_pending' | 'account_suspended' | 'email_unverified'; user: UserRow }

const USER_AGENT_MAX_LENGTH = 512

export function throttleSubjects(tenantId: string, email: string, ip: string | null): string[] {
  const subjects = [`account:${tenantId}:${email.toLowerCase()}`]
  if (ip !== null && ip !== '') {
    subjects.push(`ip:${ip}`)
  }
  return subjects
}

/** Session lifetime in seconds: REMEMBER_TTL for "remember me", else SESSION_TTL (sliding). */
export function sessionTtlSeconds(config: Config, remember: boolean): number {
  return remember ? config.rememberTtlSeconds : config.sessionTtlSeconds
}

/**
 * Password sign-in. Round trips on the critical path: one batch (user + throttle counters), then
 * one batch on success (session insert, last-login stamp with any upgraded hash, account
 * counter reset) or one upsert on failure. An unknown email spends the same argon2id time as
 * a wrong password, and both count against the account and IP counters.
 */
export async function attemptLogin(
  db: HttpDb,
  config: Config,
  input: LoginInput,
  now: Date,
): Promise<LoginOutcome> {
  // A busy isolate refuses before the attempt is counted: a 503 must not count as a failure.
  assertPasswordSlotFree(config.argon2MaxQueue)
  const subjects = throttleSubjects(input.tenantId, input.email, input.ip)
  const [users, throttles] = await db.batch([
    selectUserByEmail(db, input.tenantId, input.email),
    selectThrottles(db, subjects, now),
  ])
  const user = users[0]
  const limits = new Map([
    [subjects[0], config.loginMaxFailuresPerAccount],
    [subjects[1], config.loginMaxFailuresPerIp],
  ])
  const blockedUntil = throttles
    .filter((t) => t.failures >= (limits.get(t.subject) ?? Number.POSITIVE_INFINITY))
    .map((t) => t.expiresAt.getTime())
  if (blockedUntil.length > 0) {
    const retryAfterSeconds = Math.max(1, Math.ceil((Math.max(...blockedUntil) - now.getTime()) / 1000))
    return { kind: 'throttled', retryAfterSeconds, userId: user?.id }
  }

  // One admitted turn checks the password and, when it is right but stored under other
  // parameters (imported bcrypt, or argon2id since retuned), hashes it again for the upgrade.
  const check = await withPasswordSlot(config.argon2MaxQueue, () => {
    if (user === undefined) {
      burnPasswordCheck(input.password, config.argon2)
      return undefined
    }
    const verified = verifyPassword(input.password, user.passwordHash, config.argon2)
    const rehashed = verified.ok && verified.rehash ? hashPassword(input.password, config.argon2) : undefined
    return { ...verified, rehashed }
  })
  if (user === undefined || check === undefined || !check.ok) {
    const counted = await recordFailures(db, subjects, now, config.loginFailureWindowSeconds)
    const failures = counted.find((t) => t.subject === subjects[0])?.failures ?? 1
    return { kind: 'invalid_credentials', userId: user?.id, failures }
  }
  if (user.status === 'suspended') {
    return { kind: 'account_suspended', user }
  }
  if (user.status === 'pending') {
    return { kind: 'account_pending', user }
  }
  if (config.requireEmailVerification && user.emailVerifiedAt === null) {
    return { kind: 'email_unverified', user }
  }

  // Rehash on login: imported bcrypt, or argon2id under parameters since changed.
  const upgradedHash = check.rehashed
  const token = randomToken(32)
  const expiresAt = new Date(now.getTime() + sessionTtlSeconds(config, input.remember) * 1000)
  const [inserted] = await db.batch([
    insertSessionStatement(db, {
      tokenHash: await sha256Hex(token),
      userId: user.id,
      remember: input.remember,
      expiresAt,
      createdAt: now,
      lastSeenAt: now,
      userAgent: input.userAgent?.slice(0, USER_AGENT_MAX_LENGTH) ?? null,
      ip: input.ip,
    }),
    recordLoginStatement(db, user.id, now, upgradedHash),
    clearThrottlesStatement(db, [subjects[0] ?? '']),
  ])
  const session = inserted[0]
  if (session === undefined) {
    throw new Error('session insert returned no row')
  }
  return {
    kind: 'ok',
    user: { ...user, lastLoginAt: now, passwordHash: upgradedHash ?? user.passwordHash },
    session: { token, id: session.id, expiresAt: session.expiresAt, remember: input.remember },
    upgradedHash: upgradedHash !== undefined,
  }
}
