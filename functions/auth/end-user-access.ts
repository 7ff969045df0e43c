import { type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../../db/client'
import type { NewAuditEvent } from '../../db/queries/audit'

export interface EndedAccess {
  sessions: number
  refreshTokens: number
}

/**
 * An audit row written by the same statement, with the counts of what was ended merged into its
 * metadata under these keys: the event commits with the change and records its real size.
 */
export interface EndedAccessAudit {
  row: NewAuditEvent
  sessionsKey: string
  refreshTokensKey: string
  /**
   * Writes the row only where this holds (e.g. the batch's previous statement changed the user),
   * so an idempotent repeat ends access again without recording a second event.
   */
  onlyIf?: SQL
}

function auditInsert(audit: EndedAccessAudit | undefined): SQL {
  if (audit === undefined) {
    return sql``
  }
  const { row } = audit
  return sql`, a as (insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
      select ${row.type}, ${row.actor}, ${row.userId ?? null}::uuid, ${row.tenantId ?? null}::uuid,
              ${row.clientId ?? null}, ${row.ip ?? null}, ${JSON.stringify(row.metadata ?? {})}::jsonb || jsonb_build_object(
                ${audit.sessionsKey}::text, (select count(*) from s),
                ${audit.refreshTokensKey}::text, (select count(*) from t))
      where ${audit.onlyIf ?? sql`true`}
      returning 1)`
}

/**
 * The statement behind `endUserAccess`, for a caller's batch: deletes every session of the user,
 * revokes every live refresh token, moves the user's `tokens_valid_after` to `now` (so every
 * access token issued until then is refused) and voids grants not yet redeemed (unexchanged
 * authorization codes, approved device codes not yet polled), which would otherwise mint fresh
 * tokens after the event; writes `audit` (if given) in the same statement.
 */
export function endUserAccessStatement(x: Executor, userId: string, now: Date, audit?: EndedAccessAudit) {
  return x.execute(
    sql`with s as (delete from sessions where user_id = ${userId} returning 1),
         t as (update refresh_tokens set revoked_at = ${now.toISOString()}::timestamptz
               where user_id = ${userId} and revoked_at is null returning 1),
         u as (update users set tokens_valid_after = greatest(tokens_valid_after, ${now.toISOString()}::timestamptz)
               where id = ${userId} returning 1),
         c as (delete from authorization_codes where user_id = ${userId} and consumed_at is null returning 1),
         d as (update device_codes set status = 'denied' where user_id = ${userId} and status = 'approved'
               returning 1)${auditInsert(audit)}
       select (select count(*) from s)::int as sessions, (select count(*) from t)::int as refresh_tokens`,
  )
}

/** What an `endUserAccessStatement` reports, batched or awaited alone. */
export function toEndedAccess(result: unknown): EndedAccess {
  const row = (result as { rows?: { sessions: number; refresh_tokens: number }[] }).rows?.[0]
  return { sessions: Number(row?.sessions ?? 0), refreshTokens: Number(row?.refresh_tokens ?? 0) }
}

/**
 * Ends everything that lets a user act without signing in again: deletes every session and
 * revokes every live refresh token, and ends every access token issued so far (`tokens_valid_after`,
 * checked wherever revocation is). Used by suspension, logout-all, password reset and change.
 * One statement, so all happen or none; one round trip.
 */
export async function endUserAccess(
  x: Executor,
  userId: string,
  now: Date,
  audit?: EndedAccessAudit,
): Promise<EndedAccess> {
  return toEndedAccess(await endUserAccessStatement(x, userId, now, audit))
}
