import type { Context } from 'hono'
import { insertMfaChallengeStatement } from '../../db/queries/mfa'
import type { UserRow } from '../../db/queries/users'
import { enrolledFactors } from '../auth/factors'
import { ENROL_CHALLENGE_TTL_SECONDS, MFA_CHALLENGE_TTL_SECONDS } from '../auth/login'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { renderSecondStep } from './login'
import { startEnrolStep } from './login-enrol'

/**
 * For sign-ins other than the password form (a federated provider's callback): whether this user
 * must pass the second step first, because TOTP is on, or must set a factor up, because
 * REQUIRE_TWO_FACTOR is on and they have none (a passkey counts there). One round trip.
 */
export async function secondFactorDue(
  c: Context<AppEnv>,
  user: UserRow,
): Promise<'second_factor' | 'enrol' | undefined> {
  const factors = await enrolledFactors(c.var.db.http, user.id)
  if (factors.totp) {
    return 'second_factor'
  }
  if (!c.var.config.requireTwoFactor) {
    return undefined
  }
  // As for the password: where two factors are required, a passkey is the second one.
  return factors.passkey ? 'second_factor' : 'enrol'
}

/**
 * Instead of a session: a pending sign-in (`via` says where it came from) and the page that
 * finishes it, the code form or the required enrolment, exactly as after a right password.
 */
export async function secondFactorPage(
  c: Context<AppEnv>,
  user: UserRow,
  purpose: 'second_factor' | 'enrol',
  input: { via: string; returnTo: string },
): Promise<Response> {
  const now = new Date()
  const mfaToken = randomToken(32)
  const ttl = purpose === 'enrol' ? ENROL_CHALLENGE_TTL_SECONDS : MFA_CHALLENGE_TTL_SECONDS
  await insertMfaChallengeStatement(c.var.db.http, {
    tokenHash: await sha256Hex(mfaToken),
    userId: user.id,
    remember: false,
    via: input.via,
    purpose,
    expiresAt: new Date(now.getTime() + ttl * 1000),
    createdAt: now,
  })
  return purpose === 'enrol'
    ? startEnrolStep(c, user, mfaToken, input.returnTo)
    : renderSecondStep(c, { mfaToken, returnTo: input.returnTo })
}
