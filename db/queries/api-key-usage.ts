import { and, eq, isNull, lt, or, sql } from 'drizzle-orm'
import { type Executor, type HttpDb, queryRows } from '../client'
import { apiKeys, apiKeyUsage } from '../schema'

export type NewApiKeyUsage = typeof apiKeyUsage.$inferInsert

/**
 * Writes one verify's usage row and, for a successful verify, moves `last_used_at` forward
 * (never back, so late writes cannot rewind it). One round trip (a non-interactive batch).
 */
export async function recordKeyUse(
  db: HttpDb,
  usage: NewApiKeyUsage,
  touchedAt: Date | undefined,
): Promise<void> {
  const insert = db.insert(apiKeyUsage).values(usage)
  if (touchedAt === undefined) {
    await insert
    return
  }
  await db.batch([
    insert,
    db
      .update(apiKeys)
      .set({ lastUsedAt: touchedAt })
      .where(
        and(eq(apiKeys.id, usage.keyId), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, touchedAt))),
      ),
  ])
}

export type UsageGranularity = 'hour' | 'day'

export interface UsageGroup {
  /** Bucket start, epoch milliseconds (UTC-aligned). */
  bucketMs: number
  endpoint: string | null
  success: number
  failure: number
}

/**
 * Success and failure counts of one key per UTC hour or day and per endpoint, over
 * [from, to), provided `ownerUserId` owns the key (undefined: any owner). Undefined when the
 * key is not visible. A range scan of `api_key_usage_key_created_idx` (key_id, created_at):
 * the cost follows the rows in the range, never the size of the table. One round trip.
 */
export async function aggregateKeyUsage(
  x: Executor,
  keyId: string,
  ownerUserId: string | undefined,
  range: { from: Date; to: Date; granularity: UsageGranularity },
): Promise<UsageGroup[] | undefined> {
  const owner = ownerUserId === undefined ? sql`true` : sql`${apiKeys.ownerUserId} = ${ownerUserId}`
  const rows = await queryRows<{
    bucket_ms: string | number | null
    endpoint: string | null
    success: string | number | null
    failure: string | number | null
  }>(
    x,
    sql`with k as (select ${apiKeys.id} as id from ${apiKeys} where ${apiKeys.id} = ${keyId} and ${owner})
        select g.bucket_ms, g.endpoint, g.success, g.failure
        from k left join lateral (
          select (extract(epoch from date_trunc(${range.granularity}, u.created_at, 'UTC')) * 1000)::float8
              as bucket_ms,
            u.endpoint,
            count(*) filter (where u.success)::int as success,
            count(*) filter (where not u.success)::int as failure
          from ${apiKeyUsage} u
          where u.key_id = k.id and u.key_id = ${keyId}
            and u.created_at >= ${range.from.toISOString()}::timestamptz
            and u.created_at < ${range.to.toISOString()}::timestamptz
          group by 1, 2
        ) g on true
        order by 1, 2`,
  )
  if (rows.length === 0) {
    return undefined
  }
  const groups: UsageGroup[] = []
  for (const row of rows) {
    if (row.bucket_ms !== null) {
      groups.push({
        bucketMs: Number(row.bucket_ms),
        endpoint: row.endpoint,
        success: Number(row.success ?? 0),
        failure: Number(row.failure ?? 0),
      })
    }
  }
  return groups
}
