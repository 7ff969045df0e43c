import { and, asc, desc, eq, gt, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { oauthClients, oauthConsents, refreshTokens, sessions, users } from '../schema'

// The account center's reads and writes (issue 14): each scoped to the signed-in user's id, so a
// session or application id of another account matches nothing.

export interface AccountSession {
  id: string
  createdAt: Date
  lastSeenAt: Date
  expiresAt: Date
  userAgent: string | null
  ip: string | null
}

/** The user's unexpired sessions, most recently used first. */
export function listLiveSessions(x: Executor, userId: string, now: Date): Promise<AccountSession[]> {
  return x
    .select({
      id: sessions.id,
      createdAt: sessions.createdAt,
      lastSeenAt: sessions.lastSeenAt,
      expiresAt: sessions.expiresAt,
      userAgent: sessions.userAgent,
      ip: sessions.ip,
    })
    .from(sessions)
    .where(and(eq(sessions.userId, userId), gt(sessions.expiresAt, now)))
    .orderBy(desc(sessions.lastSeenAt))
    .limit(100)
}

/** Ends one of the user's sessions and writes user_logout in the same statement; false if none. */
export async function endSessionByIdAudited(
  x: Executor,
  userId: string,
  sessionId: string,
  ip: string | null,
): Promise<boolean> {
  const result = (await x.execute(sql`
    with d as (delete from ${sessions} where ${sessions.id} = ${sessionId} and ${sessions.userId} = ${userId}
               returning user_id, id),
         a as (insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
               select 'user_logout', 'user:' || d.user_id::text, d.user_id, u.tenant_id, ${ip},
                      jsonb_build_object('via', 'account', 'session_id', d.id::text)
               from d join ${users} u on u.id = d.user_id
               returning 1)
    select count(*)::int as ended from d`)) as { rows: { ended: number }[] }
  return (result.rows[0]?.ended ?? 0) > 0
}

export interface ConnectedApp {
  clientUuid: string
  clientId: string
  clientName: string | null
  scopes: string[]
  grantedAt: Date
}

/** Applications the user consented to. */
export function listConnectedApps(x: Executor, userId: string): Promise<ConnectedApp[]> {
  return x
    .select({
      clientUuid: oauthClients.id,
      clientId: oauthClients.clientId,
      clientName: oauthClients.clientName,
      scopes: oauthConsents.scopes,
      grantedAt: oauthConsents.updatedAt,
    })
    .from(oauthConsents)
    .innerJoin(oauthClients, eq(oauthClients.id, oauthConsents.clientId))
    .where(eq(oauthConsents.userId, userId))
    .orderBy(asc(oauthClients.clientName))
    .limit(200)
}

/**
 * Disconnects an application in one statement: the consent goes (the next authorization asks
 * again), every live refresh token the app holds for the user is revoked, and token_revoked is
 * written. False when the user had no consent for it.
 */
export async function disconnectAppAudited(
  x: Executor,
  userId: string,
  clientUuid: string,
  ip: string | null,
): Promise<boolean> {
  const result = (await x.execute(sql`
    with c as (delete from ${oauthConsents} where ${oauthConsents.userId} = ${userId}
               and ${oauthConsents.clientId} = ${clientUuid} returning client_id),
         r as (update ${refreshTokens} set revoked_at = now()
               where ${refreshTokens.userId} = ${userId} and ${refreshTokens.clientId} = ${clientUuid}
                 and ${refreshTokens.revokedAt} is null and exists (select 1 from c)
               returning 1),
         a as (insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
               select 'token_revoked', 'user:' || u.id::text, u.id, u.tenant_id, oc.client_id, ${ip},
                      jsonb_build_object('via', 'account', 'reason', 'app_disconnected',
                                         'refresh_tokens', (select count(*) from r))
               from c join ${oauthClients} oc on oc.id = c.client_id join ${users} u on u.id = ${userId}
               returning 1)
    select count(*)::int as removed from c`)) as { rows: { removed: number }[] }
  return (result.rows[0]?.removed ?? 0) > 0
}
