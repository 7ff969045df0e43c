import { and, eq, gt, ne, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { sessions, users } from '../schema'

export interface LiveSession {
  sessionId: string
  expiresAt: Date
  remember: boolean
  lastSeenAt: Date
  /** When the user signed in to start this session (OIDC `auth_time`). */
  authenticatedAt: Date
  /** How the user signed in (OIDC `amr`). */
  amr: string[]
  userId: string
  tenantId: string
  status: 'pending' | 'active' | 'suspended'
  isAdmin: boolean
}

/**
 * The unexpired session with this token hash, with its user. One round trip. Expired sessions
 * are never returned, whether or not the purge has removed them yet.
 */
export async function findLiveSession(
  x: Executor,
  tokenHash: string,
  now: Date,
): Promise<LiveSession | undefined> {
  const [row] = await x
    .select({
      sessionId: sessions.id,
      expiresAt: sessions.expiresAt,
      remember: sessions.remember,
      lastSeenAt: sessions.lastSeenAt,
      authenticatedAt: sessions.createdAt,
      amr: sessions.amr,
      userId: users.id,
      tenantId: users.tenantId,
      status: users.status,
      isAdmin: users.isAdmin,
    })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(sessions.tokenHash, tokenHash), gt(sessions.expiresAt, now)))
    .limit(1)
  return row
}

export type SessionRow = typeof sessions.$inferSelect
export type NewSession = typeof sessions.$inferInsert

export function insertSessionStatement(x: Executor, session: NewSession) {
  return x.insert(sessions).values(session).returning({ id: sessions.id, expiresAt: sessions.expiresAt })
}

/**
 * The unexpired session with this token hash and its full user row, for handlers that answer
 * with the user. One round trip.
 */
export async function findLiveSessionWithUser(x: Executor, tokenHash: string, now: Date) {
  const [row] = await x
    .select({ session: sessions, user: users })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .where(and(eq(sessions.tokenHash, tokenHash), gt(sessions.expiresAt, now)))
    .limit(1)
  return row
}

/**
 * Sliding expiry: records activity and pushes the expiry to `now + ttl`, but only for a session
 * that has not already expired. One round trip (callers run it off the critical path).
 */
export async function touchSession(x: Executor, sessionId: string, now: Date, ttlSeconds: number) {
  await x
    .update(sessions)
    .set({ lastSeenAt: now, expiresAt: new Date(now.getTime() + ttlSeconds * 1000) })
    .where(and(eq(sessions.id, sessionId), gt(sessions.expiresAt, now)))
}

/**
 * Ends the session with this hash and, in the same statement, records `user_logout` for its user
 * (`metadata` as given, `user:<id>` as actor): the event exists exactly when a session ended.
 * The user id, or undefined when no such session existed. One round trip.
 */
export async function endSessionAudited(
  x: Executor,
  tokenHash: string,
  event: { ip: string | null; metadata: Record<string, unknown> },
): Promise<string | undefined> {
  const result = (await x.execute(sql`
    with d as (delete from ${sessions} where ${sessions.tokenHash} = ${tokenHash} returning user_id),
         a as (insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
               select 'user_logout', 'user:' || d.user_id::text, d.user_id, u.tenant_id, ${event.ip},
                      ${JSON.stringify(event.metadata)}::jsonb
               from d join ${users} u on u.id = d.user_id
               returning 1)
    select user_id::text as user_id from d`)) as { rows: { user_id: string }[] }
  return result.rows[0]?.user_id
}

/** Ends every session of the user but `keepSessionId`. One round trip. */
export async function deleteOtherSessions(x: Executor, userId: string, keepSessionId: string): Promise<void> {
  await x.delete(sessions).where(and(eq(sessions.userId, userId), ne(sessions.id, keepSessionId)))
}
