import { and, desc, eq, gte, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { auditEvents } from '../schema'

export interface AuditListFilter {
  type?: string | undefined
  userId?: string | undefined
  since?: Date | undefined
  limit: number
  after?: { createdAt: string; id: string } | undefined
}

/**
 * Newest first, keyset-paginated on (created_at, id) over the created_at / type / user indexes;
 * `limit + 1` rows so the caller knows whether there is a next page. One round trip.
 */
export async function listAuditEvents(x: Executor, filter: AuditListFilter) {
  const conditions: SQL[] = []
  if (filter.type !== undefined) {
    conditions.push(eq(auditEvents.type, filter.type))
  }
  if (filter.userId !== undefined) {
    conditions.push(eq(auditEvents.userId, filter.userId))
  }
  if (filter.since !== undefined) {
    conditions.push(gte(auditEvents.createdAt, filter.since))
  }
  if (filter.after !== undefined) {
    conditions.push(
      sql`(${auditEvents.createdAt}, ${auditEvents.id}) < (${filter.after.createdAt}::timestamptz, ${filter.after.id}::uuid)`,
    )
  }
  return x
    .select({
      event: auditEvents,
      cursorAt: sql<string>`to_char(${auditEvents.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    })
    .from(auditEvents)
    .where(conditions.length > 0 ? and(...conditions) : undefined)
    .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
    .limit(filter.limit + 1)
}
