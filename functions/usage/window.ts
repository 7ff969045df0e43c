import * as v from 'valibot'
import { invalidField } from '../errors/problem'

export const HOUR_MS = 3_600_000
export const DAY_MS = 86_400_000
/** The most buckets one usage read may span. */
export const MAX_USAGE_BUCKETS = 1000

// RFC 3339 date-time (an ISO 8601 profile) with an explicit offset, and a real calendar instant.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i
export const Timestamp = v.pipe(
  v.string(),
  v.check(
    (value) => RFC3339.test(value) && !Number.isNaN(Date.parse(value)),
    'must be an RFC 3339 timestamp, e.g. 2030-01-01T00:00:00Z',
  ),
)

/** `?from&to&granularity` of a usage read. */
export const UsageQuery = v.object({
  from: v.optional(Timestamp),
  to: v.optional(Timestamp),
  granularity: v.optional(v.picklist(['hour', 'day'], 'must be hour or day'), 'hour'),
})

export interface UsageWindow {
  from: Date
  to: Date
  granularity: 'hour' | 'day'
  bucketMs: number
  /** Start of the first bucket (UTC-aligned), epoch milliseconds. */
  firstBucketMs: number
}

/**
 * The window a usage read covers: `to` defaults to now, `from` to a day (hourly) or 30 days
 * (daily) before it; `from` must precede `to` and the window span at most MAX_USAGE_BUCKETS.
 */
export function usageWindow(query: v.InferOutput<typeof UsageQuery>, now: Date): UsageWindow {
  const granularity = query.granularity
  const bucketMs = granularity === 'hour' ? HOUR_MS : DAY_MS
  const to = query.to === undefined ? now : new Date(query.to)
  const from =
    query.from === undefined
      ? new Date(to.getTime() - (granularity === 'hour' ? DAY_MS : 30 * DAY_MS))
      : new Date(query.from)
  if (from.getTime() >= to.getTime()) {
    throw invalidField('from', 'must be before to')
  }
  const firstBucketMs = Math.floor(from.getTime() / bucketMs) * bucketMs
  if ((to.getTime() - firstBucketMs) / bucketMs > MAX_USAGE_BUCKETS) {
    throw invalidField('from', `the range may span at most ${MAX_USAGE_BUCKETS} ${granularity}s`)
  }
  return { from, to, granularity, bucketMs, firstBucketMs }
}
