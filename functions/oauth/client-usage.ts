import type { Context } from 'hono'
import * as v from 'valibot'
import { aggregateClientUsage, type ClientUsageGroup } from '../../db/queries/client-usage'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { documentRoute } from '../openapi/registry'
import { TENANT_SECURITY } from '../tenants/access'
import { UsageQuery, type UsageWindow, usageWindow } from '../usage/window'

export { UsageQuery }

const Counts = { success: v.number(), failure: v.number() }
const GrantCounts = v.object({ grant_type: v.string(), ...Counts })
const ClientUsageResponse = v.object({
  client_id: v.string(),
  from: v.string(),
  to: v.string(),
  granularity: v.picklist(['hour', 'day']),
  last_request_at: v.nullable(v.string()),
  totals: v.object(Counts),
  grant_types: v.array(GrantCounts),
  buckets: v.array(v.object({ start: v.string(), ...Counts, grant_types: v.array(GrantCounts) })),
})

interface Tally {
  success: number
  failure: number
}

/** Totals, per grant type, and per bucket (every bucket of the window, empty ones included). */
function summarize(groups: readonly ClientUsageGroup[], window: UsageWindow) {
  const totals: Tally = { success: 0, failure: 0 }
  const byGrant = new Map<string, Tally>()
  const buckets = new Map<number, { totals: Tally; byGrant: Map<string, Tally> }>()
  for (let start = window.firstBucketMs; start < window.to.getTime(); start += window.bucketMs) {
    buckets.set(start, { totals: { success: 0, failure: 0 }, byGrant: new Map() })
  }
  const add = (tallies: Map<string, Tally>, group: ClientUsageGroup) => {
    const tally = tallies.get(group.grantType) ?? { success: 0, failure: 0 }
    tally.success += group.success
    tally.failure += group.failure
    tallies.set(group.grantType, tally)
  }
  for (const group of groups) {
    totals.success += group.success
    totals.failure += group.failure
    add(byGrant, group)
    const bucket = buckets.get(group.bucketMs)
    if (bucket !== undefined) {
      bucket.totals.success += group.success
      bucket.totals.failure += group.failure
      add(bucket.byGrant, group)
    }
  }
  const list = (tallies: Map<string, Tally>) =>
    [...tallies].map(([grantType, tally]) => ({ grant_type: grantType, ...tally }))
  return {
    totals,
    grant_types: list(byGrant),
    buckets: [...buckets].map(([start, bucket]) => ({
      start: new Date(start).toISOString(),
      ...bucket.totals,
      grant_types: list(bucket.byGrant),
    })),
  }
}

/**
 * The token-endpoint usage of one client (issue 15): successes and failures per grant type and
 * UTC hour or day, counted for agent clients (`private_key_jwt`) by the grant statements
 * themselves. `tenantId` limits it to that tenant's clients (another's: 404). One round trip.
 */
export async function clientUsageResponse(
  c: Context<AppEnv>,
  clientId: string,
  tenantId: string | undefined,
  query: v.InferOutput<typeof UsageQuery>,
): Promise<Response> {
  const window = usageWindow(query, new Date())
  const usage = await aggregateClientUsage(c.var.db.http, clientId, tenantId, window)
  if (usage === undefined) {
    throw new ProblemError('not_found', { detail: 'No such client' })
  }
  return c.json(
    {
      client_id: clientId,
      from: window.from.toISOString(),
      to: window.to.toISOString(),
      granularity: window.granularity,
      last_request_at: usage.lastRequestAt?.toISOString() ?? null,
      ...summarize(usage.groups, window),
    },
    200,
    { 'cache-control': 'no-store' },
  )
}

for (const [path, security, tags, who] of [
  ['/admin/clients/{client_id}/usage', ['adminToken'], ['admin'], 'platform admins'],
  [
    '/tenants/{id}/clients/{client_id}/usage',
    TENANT_SECURITY,
    ['tenants'],
    'the tenant’s owners and admins; another tenant’s client: 404',
  ],
] as const) {
  documentRoute({
    method: 'get',
    path,
    summary: `Token-endpoint usage of an agent client (private_key_jwt) by hour or day and grant type (${who})`,
    tags: [...tags],
    security: [...security],
    query: UsageQuery,
    responses: {
      200: { description: 'Success and failure counts', schema: ClientUsageResponse },
      404: { description: 'No such client' },
    },
  })
}
