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
