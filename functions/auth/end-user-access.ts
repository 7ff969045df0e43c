import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../../db/client'

export interface EndedAccess {
  sessions: number
  refreshTokens: number
}

/**
 * Ends everything that lets a user act without signing in again: deletes every session and
 * revokes every live refresh token. Used by suspension, logout-all, password reset and the OAuth
 * side. One statement, so both happen or neither; one round trip. Access tokens already issued
 * run out on their own (short-lived JWTs).
 */
export async function endUserAccess(x: Executor, userId: string, now: Date): Promise<EndedAccess> {
  const [row] = await queryRows<{ sessions: number; refresh_tokens: number }>(
    x,
    sql`with s as (delete from sessions where user_id = ${userId} returning 1),
         t as (update refresh_tokens set revoked_at = ${now.toISOString()}::timestamptz
               where user_id = ${userId} and revoked_at is null returning 1)
       select (select count(*) from s)::int as sessions, (select count(*) from t)::int as refresh_tokens`,
  )
  return { sessions: Number(row?.sessions ?? 0), refreshTokens: Number(row?.refresh_tokens ?? 0) }
}
