import type { Context } from 'hono'
import {
  deleteMfaChallengeStatement,
  deleteRecoveryCodesStatement,
  findLiveMfaChallenge,
  findTotp,
  insertRecoveryCodesStatement,
  spendTotpStepStatement,
} from '../../db/queries/mfa'
import { insertSessionStatement } from '../../db/queries/sessions'
import { findUserById, recordLoginStatement, type UserRow } from '../../db/queries/users'
import { auditStatement } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import { matchTotpStep } from '../crypto/totp'
import type { AppEnv } from '../env'
import { clientIp } from '../middleware/client-ip'
import { type NewSession, sessionTtlSeconds } from './login'
import { newRecoveryCodes, openTotpSecret } from './mfa'
import { setSessionCookie } from './session-cookie'

const USER_AGENT_MAX_LENGTH = 512

/** The user of a live enrolment-only sign-in (REQUIRE_TWO_FACTOR without a factor), or undefined. */
export async function enrolmentSignIn(c: Context<AppEnv>, mfaToken: string) {
  if (mfaToken === '' || mfaToken.length > 128) {
    return undefined
  }
  const db = c.var.db.http
  const challenge = await findLiveMfaChallenge(db, await sha256Hex(mfaToken), new Date())
  if (challenge === undefined || challenge.purpose !== 'enrol') {
    return undefined
  }
  const user = await findUserById(db, challenge.userId)
  return user === undefined || user.status !== 'active' ? undefined : { challenge, user }
}

export type EnrolLoginOutcome =
  | { kind: 'ok'; user: UserRow; session: NewSession; recoveryCodes: string[] }
  | { kind: 'invalid_mfa_token' }
  | { kind: 'invalid_mfa_code' }

/**
 * Finishes a sign-in that REQUIRE_TWO_FACTOR sent to enrol: the first code of the pending TOTP
 * secret (started by `startTotpEnrolment`) activates it and, in one transaction, the ten recovery
 * codes are stored, the pending sign-in consumed (only one request can finish it), the session
 * created with `amr` pwd+otp+mfa, and `mfa_enabled` and `user_login` recorded. Sets the cookie.
 */
export async function completeEnrolmentLogin(
  c: Context<AppEnv>,
  input: { mfaToken: string; code: string },
): Promise<EnrolLoginOutcome> {
  const pending = await enrolmentSignIn(c, input.mfaToken)
  if (pending === undefined) {
    return { kind: 'invalid_mfa_token' }
  }
  const { challenge, user } = pending
  const now = new Date()
  const factor = await findTotp(c.var.db.http, user.id)
  if (factor === undefined || factor.confirmedAt !== null) {
    return { kind: 'invalid_mfa_code' }
  }
  const step = await matchTotpStep(await openTotpSecret(c.var.config, factor), input.code.trim(), now)
  if (step === undefined) {
    return { kind: 'invalid_mfa_code' }
  }
  const recovery = await newRecoveryCodes()
  const token = randomToken(32)
  const tokenHash = await sha256Hex(token)
  const expiresAt = new Date(now.getTime() + sessionTtlSeconds(c.var.config, challenge.remember) * 1000)
  const ip = clientIp(c)
  const outcome = await c.var.db
    .transaction(async (tx): Promise<EnrolLoginOutcome> => {
      const confirmed = await spendTotpStepStatement(tx, user.id, step, now)
      if (confirmed.length !== 1) {
        return { kind: 'invalid_mfa_code' }
      }
      const consumed = await deleteMfaChallengeStatement(tx, challenge.id)
      if (consumed.length !== 1) {
        throw new EnrolmentRaced()
      }
      await deleteRecoveryCodesStatement(tx, user.id)
      await insertRecoveryCodesStatement(tx, user.id, recovery.hashes, now)
      const [session] = await insertSessionStatement(tx, {
        tokenHash,
        userId: user.id,
        remember: challenge.remember,
        expiresAt,
        createdAt: now,
        lastSeenAt: now,
        userAgent: c.req.header('user-agent')?.slice(0, USER_AGENT_MAX_LENGTH) ?? null,
        ip,
        amr: challenge.via === 'federated' ? ['otp', 'mfa'] : ['pwd', 'otp', 'mfa'],
      })
      await recordLoginStatement(tx, user.id, now, undefined)
      await auditStatement(tx, ip, {
        type: 'mfa_enabled',
        actor: `user:${user.id}`,
        userId: user.id,
        tenantId: user.tenantId,
        metadata: { factor: 'totp', via: 'required_at_sign_in' },
      })
      await auditStatement(tx, ip, {
        type: 'user_login',
        actor: `user:${user.id}`,
        userId: user.id,
        tenantId: user.tenantId,
        metadata: { via: challenge.via, remember: challenge.remember, second_factor: 'otp', enrolled: true },
      })
      if (session === undefined) {
        throw new Error('session insert returned no row')
      }
      return {
        kind: 'ok',
        user: { ...user, lastLoginAt: now },
        session: { token, id: session.id, expiresAt: session.expiresAt, remember: challenge.remember },
        recoveryCodes: recovery.codes,
      }
    })
    .catch((error: unknown) => {
      if (error instanceof EnrolmentRaced) {
        return { kind: 'invalid_mfa_token' } as const
      }
      throw error
    })
  if (outcome.kind === 'ok') {
    setSessionCookie(c, outcome.session)
  }
  return outcome
}

/** Another request finished this sign-in first: the transaction rolls back (the factor stays pending). */
class EnrolmentRaced extends Error {
  override name = 'EnrolmentRaced'
}
