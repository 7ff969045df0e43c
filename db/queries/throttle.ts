import { and, eq, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { loginThrottles } from '../schema'

/**
 * One counter of attempts: `user:<id>` (sign-in and change-password of an account),
 * `email:<tenant>:<sha256>` (sign-in to an address with no account), `ip:<address>` (sign-in),
 * `register-ip:<address>`, `device-user:<id>`, `device-ip:<address>`.
 */
export interface AttemptClaim {
  subject: string
  /** Attempts in the current window, this one included: the claim's number. */
  count: number
  windowStartedAt: Date
  expiresAt: Date
}

/**
 * Claims one attempt against each subject in a fixed window of `windowSeconds`: one atomic upsert
 * that increments and returns the new counts. Row locks hand concurrent claims distinct numbers,
 * so with a limit of N at most N claims per window get a number ≤ N, however many race; a
 * window that has run out starts over at 1. Subjects are text or SQL (computed in the statement).
 * A statement for the caller's batch; `toClaims` reads its rows. One round trip.
 */
export function claimAttemptsStatement(
  x: Executor,
  subjects: readonly (string | SQL)[],
  now: Date,
  windowSeconds: number,
) {
  const startedAt = now.toISOString()
  const expiresAt = new Date(now.getTime() + windowSeconds * 1000).toISOString()
  const values = sql.join(
    subjects.map((s) => sql`(${s}::text)`),
    sql`, `,
  )
  return x.execute(sql`
    insert into login_throttles as t (subject, failures, window_started_at, expires_at)
    select s.subject, 1, ${startedAt}::timestamptz, ${expiresAt}::timestamptz from (values ${values}) as s(subject)
    on conflict (subject) do update set
      failures = case when t.expires_at <= excluded.window_started_at then 1 else t.failures + 1 end,
      window_started_at = case when t.expires_at <= excluded.window_started_at
        then excluded.window_started_at else t.window_started_at end,
      expires_at = case when t.expires_at <= excluded.window_started_at
        then excluded.expires_at else t.expires_at end
    returning subject, failures,
      (extract(epoch from window_started_at) * 1000)::float8 as window_started_ms,
      (extract(epoch from expires_at) * 1000)::float8 as expires_ms`)
}

interface ClaimRow {
  subject: string
  failures: number | string
  window_started_ms: number | string
  expires_ms: number | string
}

/** The claims of a `claimAttemptsStatement` result (batched or awaited alone). */
export function toClaims(result: unknown): AttemptClaim[] {
  const rows = (result as { rows?: ClaimRow[] }).rows ?? []
  return rows.map((r) => ({
    subject: r.subject,
    count: Number(r.failures),
    windowStartedAt: new Date(Number(r.window_started_ms)),
    expiresAt: new Date(Number(r.expires_ms)),
  }))
}

/** Claims attempts and reads them back. One round trip. */
export async function claimAttempts(
  x: Executor,
  subjects: readonly (string | SQL)[],
  now: Date,
  windowSeconds: number,
): Promise<AttemptClaim[]> {
  if (subjects.length === 0) {
    return []
  }
  return toClaims(await claimAttemptsStatement(x, subjects, now, windowSeconds))
}

/**
 * Gives back `count` attempts of a claim's window (a sign-in that succeeded gives back its own
 * claim). A window that has since started over is left alone.
 */
export function releaseAttemptsStatement(x: Executor, claim: AttemptClaim, count: number) {
  return x
    .update(loginThrottles)
    .set({ failures: sql`greatest(${loginThrottles.failures} - ${count}, 0)` })
    .where(
      and(
        eq(loginThrottles.subject, claim.subject),
        eq(loginThrottles.windowStartedAt, claim.windowStartedAt),
      ),
    )
}

/** Seconds until the latest of these windows ends (at least 1), for `Retry-After`. */
export function retryAfterSeconds(claims: readonly AttemptClaim[], now: Date): number {
  const until = Math.max(...claims.map((c) => c.expiresAt.getTime()))
  return Math.max(1, Math.ceil((until - now.getTime()) / 1000))
}
