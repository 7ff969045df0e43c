import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import { apiKeys, apiKeyUsageCounters } from '../schema'

export type UsageGranularity = 'hour' | 'day'

export interface UsageGroup {
  /** Bucket start, epoch milliseconds (UTC-aligned). */
  bucketMs: number
  endpoint: string | null
  success: number
  failure: number
}

/**
 * Success and failure counts of one key per UTC hour or day and per endpoint, over the hours
 * that start in [from, to), provided `ownerUserId` owns the key (undefined: any owner).
 * Undefined when the key is not visible. Read from the hourly counters the verify statement
 * keeps (`api_key_usage_counters`, a range scan of its primary key): the cost follows the hours
 * and endpoints in the range, never the number of raw usage rows. One round trip.
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
          select (extract(epoch from date_trunc(${range.granularity}, u.hour_start, 'UTC')) * 1000)::float8
              as bucket_ms,
            nullif(u.endpoint, '') as endpoint,
            sum(u.success)::float8 as success,
            sum(u.failure)::float8 as failure
          from ${apiKeyUsageCounters} u
          where u.key_id = k.id and u.key_id = ${keyId}
            and u.hour_start >= date_trunc('hour', ${range.from.toISOString()}::timestamptz, 'UTC')
            and u.hour_start < ${range.to.toISOString()}::timestamptz
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
