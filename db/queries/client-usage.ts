import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'

export interface ClientUsageGroup {
  /** Bucket start, epoch milliseconds (UTC-aligned). */
  bucketMs: number
  grantType: string
  success: number
  failure: number
}

export interface ClientUsage {
  groups: ClientUsageGroup[]
  /** The client's latest counted token request (any hour), or null. */
  lastRequestAt: Date | null
}

/**
 * Token-endpoint usage of one client (public client_id) per UTC hour or day and grant type, over
 * the hours that start in [from, to), provided it belongs to `tenantId` (undefined: any tenant).
 * Undefined when the client is not visible. Read from the hourly counters the grant statements
 * keep (`oauth_client_usage_counters`, a range scan of its primary key). One round trip.
 */
export async function aggregateClientUsage(
  x: Executor,
  clientId: string,
  tenantId: string | undefined,
  range: { from: Date; to: Date; granularity: 'hour' | 'day' },
): Promise<ClientUsage | undefined> {
  const tenant = tenantId === undefined ? sql`true` : sql`tenant_id = ${tenantId}::uuid`
  const rows = await queryRows<{
    bucket_ms: string | number | null
    grant_type: string | null
    success: string | number | null
    failure: string | number | null
    last_request_at: string | Date | null
  }>(
    x,
    sql`with c as (select id from oauth_clients where client_id = ${clientId} and ${tenant})
        select g.bucket_ms, g.grant_type, g.success, g.failure,
          (select max(u.last_used_at) from oauth_client_usage_counters u where u.client_id = c.id) as last_request_at
        from c left join lateral (
          select (extract(epoch from date_trunc(${range.granularity}, u.hour_start, 'UTC')) * 1000)::float8
              as bucket_ms,
            u.grant_type,
            sum(u.success)::float8 as success,
            sum(u.failure)::float8 as failure
          from oauth_client_usage_counters u
          where u.client_id = c.id
            and u.hour_start >= date_trunc('hour', ${range.from.toISOString()}::timestamptz, 'UTC')
            and u.hour_start < ${range.to.toISOString()}::timestamptz
          group by 1, 2
        ) g on true
        order by 1, 2`,
  )
  const [first] = rows
  if (first === undefined) {
    return undefined
  }
  const groups: ClientUsageGroup[] = []
  for (const row of rows) {
    if (row.bucket_ms !== null && row.grant_type !== null) {
      groups.push({
        bucketMs: Number(row.bucket_ms),
        grantType: row.grant_type,
        success: Number(row.success ?? 0),
        failure: Number(row.failure ?? 0),
      })
    }
  }
  return {
    groups,
    lastRequestAt: first.last_request_at === null ? null : new Date(first.last_request_at),
  }
}
