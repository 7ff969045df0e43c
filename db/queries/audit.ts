import { type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { auditEvents } from '../schema'

export type NewAuditEvent = typeof auditEvents.$inferInsert

/** Appends audit events; one round trip for any number of them. */
export async function insertAuditEvents(x: Executor, events: readonly NewAuditEvent[]): Promise<void> {
  if (events.length > 0) {
    await x.insert(auditEvents).values([...events])
  }
}

/**
 * The same insert as a statement, to ride in the caller's batch or transaction: the events then
 * commit with the change they record, or not at all.
 */
export function insertAuditEventsStatement(
  x: Executor,
  events: readonly [NewAuditEvent, ...NewAuditEvent[]],
) {
  return x.insert(auditEvents).values([...events])
}

/**
 * One audit row written only where `condition` holds, read in the caller's batch after the
 * statement that made the change (e.g. "this user moved to suspended just now").
 */
export function insertAuditEventWhereStatement(x: Executor, event: NewAuditEvent, condition: SQL) {
  return x.execute(sql`insert into ${auditEvents} (type, actor, user_id, tenant_id, client_id, ip, metadata)
    select ${event.type}, ${event.actor}, ${event.userId ?? null}::uuid, ${event.tenantId ?? null}::uuid,
      ${event.clientId ?? null}, ${event.ip ?? null}, ${JSON.stringify(event.metadata ?? {})}::jsonb
    where ${condition}`)
}
