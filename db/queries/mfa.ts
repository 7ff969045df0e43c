import { and, eq, gt, isNotNull, isNull, lt } from 'drizzle-orm'
import type { Executor } from '../client'
import { mfaChallenges, recoveryCodes, users, userTotp } from '../schema'
import { sameEmail } from './users'

export type TotpRow = typeof userTotp.$inferSelect

export async function findTotp(x: Executor, userId: string): Promise<TotpRow | undefined> {
  const [row] = await x.select().from(userTotp).where(eq(userTotp.userId, userId)).limit(1)
  return row
}

/** A confirmed factor's row for the sign-in batch (empty when TOTP is not active). */
export function selectActiveTotpStatement(x: Executor, userId: string) {
  return x
    .select({ userId: userTotp.userId })
    .from(userTotp)
    .where(and(eq(userTotp.userId, userId), isNotNull(userTotp.confirmedAt)))
    .limit(1)
}

/** Starts (or restarts) an unconfirmed enrolment; a confirmed factor is left alone. */
export function upsertPendingTotpStatement(
  x: Executor,
  row: { userId: string; masterKeyId: string; secretSealed: string; now: Date },
) {
  return x
    .insert(userTotp)
    .values({ ...row, createdAt: row.now, confirmedAt: null, lastStep: 0 })
    .onConflictDoUpdate({
      target: userTotp.userId,
      set: { masterKeyId: row.masterKeyId, secretSealed: row.secretSealed, createdAt: row.now, lastStep: 0 },
      setWhere: isNull(userTotp.confirmedAt),
    })
    .returning({ userId: userTotp.userId })
}

/**
 * Spends a time step: succeeds only if no code of this or a later step was accepted before, so
 * a code cannot be replayed, however many race. `confirm` also activates a pending factor.
 */
export function spendTotpStepStatement(x: Executor, userId: string, step: number, confirmAt?: Date) {
  return x
    .update(userTotp)
    .set(confirmAt === undefined ? { lastStep: step } : { lastStep: step, confirmedAt: confirmAt })
    .where(
      and(
        eq(userTotp.userId, userId),
        lt(userTotp.lastStep, step),
        confirmAt === undefined ? isNotNull(userTotp.confirmedAt) : isNull(userTotp.confirmedAt),
      ),
    )
    .returning({ userId: userTotp.userId })
}

export function deleteTotpStatement(x: Executor, userId: string) {
  return x.delete(userTotp).where(eq(userTotp.userId, userId)).returning({ userId: userTotp.userId })
}

export function deleteRecoveryCodesStatement(x: Executor, userId: string) {
  return x.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)).returning({ id: recoveryCodes.id })
}

export function insertRecoveryCodesStatement(
  x: Executor,
  userId: string,
  hashes: readonly string[],
  now: Date,
) {
  return x.insert(recoveryCodes).values(hashes.map((codeHash) => ({ userId, codeHash, createdAt: now })))
}

/** Marks one unused code used: exactly one of any number of concurrent uses gets the row. */
export function spendRecoveryCodeStatement(x: Executor, userId: string, codeHash: string, now: Date) {
  return x
    .update(recoveryCodes)
    .set({ usedAt: now })
    .where(
      and(
        eq(recoveryCodes.userId, userId),
        eq(recoveryCodes.codeHash, codeHash),
        isNull(recoveryCodes.usedAt),
      ),
    )
    .returning({ id: recoveryCodes.id })
}

export async function countUnusedRecoveryCodes(x: Executor, userId: string): Promise<number> {
  const rows = await x
    .select({ id: recoveryCodes.id })
    .from(recoveryCodes)
    .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt)))
  return rows.length
}

export function insertMfaChallengeStatement(x: Executor, row: typeof mfaChallenges.$inferInsert) {
  return x.insert(mfaChallenges).values(row).returning({ id: mfaChallenges.id })
}

export async function findLiveMfaChallenge(x: Executor, tokenHash: string, now: Date) {
  const [row] = await x
    .select()
    .from(mfaChallenges)
    .where(and(eq(mfaChallenges.tokenHash, tokenHash), gt(mfaChallenges.expiresAt, now)))
    .limit(1)
  return row
}

/** Consumes the challenge: only one second step can finish a pending sign-in. */
export function deleteMfaChallengeStatement(x: Executor, id: string) {
  return x.delete(mfaChallenges).where(eq(mfaChallenges.id, id)).returning({ id: mfaChallenges.id })
}

/** The user with this email has a confirmed TOTP factor (a row), for the sign-in's first batch. */
export function selectActiveTotpByEmailStatement(x: Executor, tenantId: string, email: string) {
  return x
    .select({ userId: userTotp.userId })
    .from(userTotp)
    .innerJoin(users, eq(users.id, userTotp.userId))
    .where(and(eq(users.tenantId, tenantId), sameEmail(email), isNotNull(userTotp.confirmedAt)))
    .limit(1)
}

/** Deletes every pending sign-in of the user (their second step can no longer finish). */
export function deleteMfaChallengesOfUserStatement(x: Executor, userId: string) {
  return x.delete(mfaChallenges).where(eq(mfaChallenges.userId, userId)).returning({ id: mfaChallenges.id })
}
