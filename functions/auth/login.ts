import type { HttpDb } from '../../db/client'
import { insertMfaChallengeStatement, selectActiveTotpByEmailStatement } from '../../db/queries/mfa'
import { selectPasskeyOwnerByEmailStatement } from '../../db/queries/passkeys'
import { insertSessionStatement } from '../../db/queries/sessions'
import {
  type AttemptClaim,
  claimAttemptsStatement,
  releaseAttemptsStatement,
  retryAfterSeconds,
  toClaims,
} from '../../db/queries/throttle'
import {
  accountThrottleSubject,
  recordLoginStatement,
  selectUserByEmail,
  type UserRow,
  userThrottleSubject,
} from '../../db/queries/users'
import { type AuditEvent, auditStatement } from '../audit/record'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { burnPasswordCheck, hashPassword, verifyPassword } from '../crypto/password'
import { randomToken } from '../crypto/random'
import { ProblemError } from '../errors/problem'
import { assertPasswordSlotFree, withPasswordSlot } from './password-gate'

export interface LoginInput {
  tenantId: string
  email: string
  password: string
  remember: boolean
  ip: string | null
  userAgent: string | null
  /** Which door the attempt came through, for the audit trail. */
  via: 'api' | 'form'
}

export interface NewSession {
  /** The raw session id for the cookie; only its SHA-256 is stored. */
  token: string
  id: string
  expiresAt: Date
  remember: boolean
}

/** Every outcome but `ok` carries the attempt's claims (released once the password checked out). */
export type LoginOutcome =
  | { kind: 'ok'; user: UserRow; session: NewSession; upgradedHash: boolean }
  /** The password was right and TOTP is active: no session yet, a short-lived second-step token. */
  | { kind: 'mfa_required'; user: UserRow; mfaToken: string; expiresAt: Date }
  /**
   * The password was right, REQUIRE_TWO_FACTOR is on and the user has no factor: no session, a
   * token that only enrolling one can finish (`/login/enrol`).
   */
  | { kind: 'mfa_enrolment_required'; user: UserRow; mfaToken: string; expiresAt: Date }
  /** Unknown email or wrong password: indistinguishable to the caller. */
  | { kind: 'invalid_credentials'; userId: string | undefined; failures: number; claims: AttemptClaim[] }
  | { kind: 'throttled'; retryAfterSeconds: number; userId: string | undefined; claims: AttemptClaim[] }
  | {
      kind: 'account_pending' | 'account_suspended' | 'email_unverified'
      user: UserRow
      claims: AttemptClaim[]
    }

const USER_AGENT_MAX_LENGTH = 512

/** The per-IP sign-in subject (null without a known address: no per-IP counter). */
export function ipThrottleSubject(ip: string | null): string | null {
  return ip === null || ip === '' ? null : `ip:${ip}`
}

/** The sign-in subjects of a known account and the caller's address (change-password shares them). */
export function loginThrottleSubjects(userId: string, ip: string | null): string[] {
  const address = ipThrottleSubject(ip)
  return address === null ? [userThrottleSubject(userId)] : [userThrottleSubject(userId), address]
}

/** The limit a sign-in claim is held to: its account's, or its address's. */
function claimLimit(config: Config, claim: AttemptClaim): number {
  return claim.subject.startsWith('ip:') ? config.loginMaxFailuresPerIp : config.loginMaxFailuresPerAccount
}

/** The claims over their limit (the attempt must be refused without checking the password). */
export function overLimit(config: Config, claims: readonly AttemptClaim[]): AttemptClaim[] {
  return claims.filter((claim) => claim.count > claimLimit(config, claim))
}

/**
 * What a password check that came out right gives back: only its own claim, on the account and on
 * the address. Earlier failures stay counted until their window ends: giving them back too would
 * let guesses racing a correct sign-in through (a burst with the right password in it could then
 * check more than LOGIN_MAX_FAILURES_PER_ACCOUNT wrong ones per window). So the counter is always
 * at least the wrong passwords checked in the window, and a claim over the limit is never hashed.
 */
export function releaseClaimsStatements(db: HttpDb, claims: readonly AttemptClaim[]) {
  return claims.map((claim) => releaseAttemptsStatement(db, claim, 1))
}

/**
 * Runs the password check of an attempt already claimed, in its turn at the hashing gate. The
 * gate can fill while the claim's round trip is in flight (a burst passes the early check
 * together): its 503 `overloaded` is not a failed attempt, so the claims are given back (one
 * round trip) before the refusal goes out.
 */
export async function checkClaimedPassword<T>(
  db: HttpDb,
  gateLimit: number,
  claims: readonly AttemptClaim[],
  check: () => T,
): Promise<T> {
  try {
    return await withPasswordSlot(gateLimit, check)
  } catch (error) {
    const [first, ...rest] = releaseClaimsStatements(db, claims)
    if (error instanceof ProblemError && error.code === 'overloaded' && first !== undefined) {
      await db.batch([first, ...rest])
    }
    throw error
  }
}

type Refusal = Exclude<LoginOutcome, { kind: 'ok' | 'mfa_required' | 'mfa_enrolment_required' }>

/** How long a sign-in waits for its second factor. */
export const MFA_CHALLENGE_TTL_SECONDS = 300
/** How long a sign-in waits for a required factor to be set up (scanning, typing a first code). */
export const ENROL_CHALLENGE_TTL_SECONDS = 900

/**
 * Writes `user_login_failed` before the refusal is answered (awaited: the event cannot be lost,
 * and it cannot share the claim's batch, which runs before the outcome is known). When the
 * password was right (pending, suspended, unverified) the claims are given back in the same batch.
 * One round trip.
 */
async function refuse(db: HttpDb, input: LoginInput, outcome: Refusal): Promise<Refusal> {
  const passwordChecked = 'user' in outcome
  const userId = passwordChecked ? outcome.user.id : outcome.userId
  await db.batch([
    auditStatement(db, input.ip, {
      type: 'user_login_failed',
      actor: userId === undefined ? 'anonymous' : `user:${userId}`,
      userId: userId ?? null,
      tenantId: input.tenantId,
      metadata: { via: input.via, reason: outcome.kind },
    }),
    ...(passwordChecked ? releaseClaimsStatements(db, outcome.claims) : []),
  ])
  return outcome
}

/** Session lifetime in seconds: REMEMBER_TTL for "remember me", else SESSION_TTL (sliding). */
export function sessionTtlSeconds(config: Config, remember: boolean): number {
  return remember ? config.rememberTtlSeconds : config.sessionTtlSeconds
}

/**
 * Password sign-in. The attempt is claimed before the password is checked: the user lookup and
 * one upsert counting the attempt against the account (`user:<id>`, or the unknown address's
 * subject) and the caller's address ride one batch, and an attempt whose claim is over a limit is
 * refused without hashing. However many race, at most LOGIN_MAX_FAILURES_PER_ACCOUNT passwords are
 * checked per account and window. Round trips: exactly 2 on every path (the claim batch, then
 * one batch with the session, login stamp, claim release and `user_login` audit on success, or
 * the `user_login_failed` audit, with the claim release when the password was right). An unknown
 * email spends the same argon2id time as a wrong password and counts the same way.
 */
export async function attemptLogin(
  db: HttpDb,
  config: Config,
  input: LoginInput,
  now: Date,
): Promise<LoginOutcome> {
  // A busy isolate refuses before the attempt is claimed: a 503 must not count as a failure.
  assertPasswordSlotFree(config.argon2MaxQueue)
  const ip = ipThrottleSubject(input.ip)
  const account = accountThrottleSubject(input.tenantId, input.email)
  const [users, claimed, totp, passkeys] = await db.batch([
    selectUserByEmail(db, input.tenantId, input.email),
    claimAttemptsStatement(
      db,
      ip === null ? [account] : [account, ip],
      now,
      config.loginFailureWindowSeconds,
    ),
    selectActiveTotpByEmailStatement(db, input.tenantId, input.email),
    selectPasskeyOwnerByEmailStatement(db, input.tenantId, input.email),
  ])
  const user = users[0]
  const claims = toClaims(claimed)
  const blocked = overLimit(config, claims)
  if (blocked.length > 0) {
    return refuse(db, input, {
      kind: 'throttled',
      retryAfterSeconds: retryAfterSeconds(blocked, now),
      userId: user?.id,
      claims,
    })
  }

  // One admitted turn checks the password and, when it is right but stored under other
  // parameters (imported bcrypt, or argon2id since retuned), hashes it again for the upgrade.
  const check = await checkClaimedPassword(db, config.argon2MaxQueue, claims, () => {
    if (user === undefined) {
      burnPasswordCheck(input.password, config.argon2)
      return undefined
    }
    const verified = verifyPassword(input.password, user.passwordHash, config.argon2)
    const rehashed = verified.ok && verified.rehash ? hashPassword(input.password, config.argon2) : undefined
    return { ...verified, rehashed }
  })
  if (user === undefined || check === undefined || !check.ok) {
    const failures = claims.find((claim) => !claim.subject.startsWith('ip:'))?.count ?? 1
    return refuse(db, input, { kind: 'invalid_credentials', userId: user?.id, failures, claims })
  }
  if (user.status === 'suspended') {
    return refuse(db, input, { kind: 'account_suspended', user, claims })
  }
  if (user.status === 'pending') {
    return refuse(db, input, { kind: 'account_pending', user, claims })
  }
  if (config.requireEmailVerification && user.emailVerifiedAt === null) {
    return refuse(db, input, { kind: 'email_unverified', user, claims })
  }

  // Rehash on login: imported bcrypt, or argon2id under parameters since changed.
  const upgradedHash = check.rehashed
  // A passkey is a second factor too where two are required; elsewhere adding one does not turn
  // two-step sign-in on (it is a way in of its own: the passwordless sign-in).
  const hasFactor =
    totp.some((row) => row.userId === user.id) ||
    (config.requireTwoFactor && passkeys.some((row) => row.userId === user.id))
  if (hasFactor || config.requireTwoFactor) {
    // Two steps: the password's claim is given back, but nothing signs in until the code does
    // (or, under REQUIRE_TWO_FACTOR without a factor, until one is set up and its first code given).
    const purpose = hasFactor ? 'second_factor' : 'enrol'
    const mfaToken = randomToken(32)
    const ttlSeconds = hasFactor ? MFA_CHALLENGE_TTL_SECONDS : ENROL_CHALLENGE_TTL_SECONDS
    const expiresAt = new Date(now.getTime() + ttlSeconds * 1000)
    await db.batch([
      insertMfaChallengeStatement(db, {
        tokenHash: await sha256Hex(mfaToken),
        userId: user.id,
        remember: input.remember,
        via: input.via,
        purpose,
        expiresAt,
        createdAt: now,
      }),
      ...(upgradedHash === undefined
        ? []
        : [recordLoginStatement(db, user.id, user.lastLoginAt ?? now, upgradedHash)]),
      ...releaseClaimsStatements(db, claims),
    ])
    return { kind: hasFactor ? 'mfa_required' : 'mfa_enrolment_required', user, mfaToken, expiresAt }
  }
  const session = await startSession(
    db,
    config,
    {
      user,
      remember: input.remember,
      ip: input.ip,
      userAgent: input.userAgent,
      upgradedHash,
      metadata: { via: input.via, remember: input.remember, password_upgraded: upgradedHash !== undefined },
      claims,
    },
    now,
  )
  return {
    kind: 'ok',
    user: { ...user, lastLoginAt: now, passwordHash: upgradedHash ?? user.passwordHash },
    session,
    upgradedHash: upgradedHash !== undefined,
  }
}

export interface SessionStart {
  user: UserRow
  remember: boolean
  ip: string | null
  userAgent: string | null
  /** How the user proved who they are (OIDC `amr`); the column's default (`pwd`) when absent. */
  amr?: string[]
  /** A password hash to store instead (rehash on login). */
  upgradedHash?: string
  /** The `user_login` event's metadata. */
  metadata: Record<string, unknown>
  /** Further events that commit with the session (e.g. `recovery_code_used`). */
  alsoRecord?: AuditEvent[]
  /** The attempt's claims, given back. */
  claims: readonly AttemptClaim[]
}

/**
 * Starts a session after a sign-in that checked out: the session row, the login stamp, the
 * `user_login` audit event and the claims given back, in one batch (one round trip).
 */
export async function startSession(
  db: HttpDb,
  config: Config,
  input: SessionStart,
  now: Date,
): Promise<NewSession> {
  const token = randomToken(32)
  const expiresAt = new Date(now.getTime() + sessionTtlSeconds(config, input.remember) * 1000)
  const { user } = input
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
      ...(input.amr === undefined ? {} : { amr: input.amr }),
    }),
    recordLoginStatement(db, user.id, now, input.upgradedHash),
    auditStatement(
      db,
      input.ip,
      {
        type: 'user_login',
        actor: `user:${user.id}`,
        userId: user.id,
        tenantId: user.tenantId,
        metadata: input.metadata,
      },
      ...(input.alsoRecord ?? []),
    ),
    ...releaseClaimsStatements(db, input.claims),
  ])
  const session = inserted[0]
  if (session === undefined) {
    throw new Error('session insert returned no row')
  }
  return { token, id: session.id, expiresAt: session.expiresAt, remember: input.remember }
}
