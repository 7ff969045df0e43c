import { type SQL, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import type { Executor } from '../../db/client'
import { listTenantAudit } from '../../db/queries/tenant-objects'
import { testDb } from '../helpers/db'

/**
 * An executor that records the plan of the query it is given (EXPLAIN in one transaction with
 * sequential scans, bitmap scans and sorts priced out, so the tiny test tables cannot hide a
 * missing index: without one that yields the order, the plan still has to Sort).
 */
function explaining(plans: string[]): Executor {
  const db = testDb()
  return new Proxy(db, {
    get(target, property, receiver) {
      if (property !== 'execute') {
        return Reflect.get(target, property, receiver)
      }
      return async (query: SQL) => {
        const [, , , explained] = await db.batch([
          db.execute(sql`set local enable_seqscan = off`),
          db.execute(sql`set local enable_bitmapscan = off`),
          db.execute(sql`set local enable_sort = off`),
          db.execute(sql`explain ${query}`),
        ])
        const rows = (Array.isArray(explained) ? explained : explained.rows) as Record<string, unknown>[]
        plans.push(rows.map((row) => String(row['QUERY PLAN'])).join('\n'))
        return { rows: [] }
      }
    },
  })
}

describe('the tenant audit listing’s plan', () => {
  it('walks audit_events_tenant_created_idx backwards, cursor included, with no sort', async () => {
    const plans: string[] = []
    const tenantId = crypto.randomUUID()
    await listTenantAudit(explaining(plans), tenantId, { type: undefined, limit: 50, after: undefined })
    await listTenantAudit(explaining(plans), tenantId, {
      type: 'client_disabled',
      limit: 50,
      after: { createdAt: new Date().toISOString(), id: crypto.randomUUID() },
    })
    expect(plans).toHaveLength(2)
    for (const plan of plans) {
      expect(plan).toContain('Scan Backward using audit_events_tenant_created_idx')
      expect(plan).not.toMatch(/\bSort\b/)
    }
    // The keyset cursor is part of the index condition, not a filter over the tenant's rows.
    expect(plans[1]).toMatch(/Index Cond: \(\(tenant_id = .*ROW\(created_at, id\) < ROW/)
  })
})
