import { and, gt, inArray, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { loginThrottles } from '../schema'

export interface ThrottleState {
  subject: string
  failures: number
  expiresAt: Date
}

/** The live (unexpired) counters of these subjects. One round trip. */
export function selectThrottles(x: Executor, subjects: readonly string[], now: Date) {
  return x
    .select({
      subject: loginThrottles.subject,
      failures: loginThrottles.failures,
      expiresAt: loginThrottles.expiresAt,
    })
    .from(loginThrottles)
    .where(and(inArray(loginThrottles.subject, [...subjects]), gt(loginThrottles.expiresAt, now)))
}

/**
 * Counts one failure against each subject in a fixed window of `windowSeconds`: an atomic upsert,
 * so concurrent failures are all counted; a window that has run out starts over at 1.
 * One round trip.
 */
export async function recordFailures(
  x: Executor,
  subjects: readonly string[],
  now: Date,
  windowSeconds: number,
): Promise<ThrottleState[]> {
  if (subjects.length === 0) {
    return []
  }
  const expiresAt = new Date(now.getTime() + windowSeconds * 1000)
  const expired = sql`${loginThrottles.expiresAt} <= excluded.window_started_at`
  return x
    .insert(loginThrottles)
    .values(subjects.map((subject) => ({ subject, failures: 1, windowStartedAt: now, expiresAt })))
    .onConflictDoUpdate({
      target: loginThrottles.subject,
      set: {
        failures: sql`case when ${expired} then 1 else ${loginThrottles.failures} + 1 end`,
        windowStartedAt: sql`case when ${expired} then excluded.window_started_at else ${loginThrottles.windowStartedAt} end`,
        expiresAt: sql`case when ${expired} then excluded.expires_at else ${loginThrottles.expiresAt} end`,
      },
    })
    .returning({
      subject: loginThrottles.subject,
      failures: loginThrottles.failures,
      expiresAt: loginThrottles.expiresAt,
    })
}

/** Forgets the failures of these subjects (a successful sign-in clears its account's count). */
export function clearThrottlesStatement(x: Executor, subjects: readonly string[]) {
  return x.delete(loginThrottles).where(inArray(loginThrottles.subject, [...subjects]))
}
