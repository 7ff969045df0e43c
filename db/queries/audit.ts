import type { Executor } from '../client'
import { auditEvents } from '../schema'

export type NewAuditEvent = typeof auditEvents.$inferInsert

/** Appends audit events; one round trip for any number of them. */
export async function insertAuditEvents(x: Executor, events: readonly NewAuditEvent[]): Promise<void> {
  if (events.length > 0) {
    await x.insert(auditEvents).values([...events])
  }
}
