import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeyUsage, apiKeyUsageCounters } from '../../db/schema'
import {
  createKey,
  createKeyAsAdmin,
  getJson,
  roundTrips,
  seedUser,
  usageRows,
  verifyKey,
} from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { adminHeaders, callWith, describeResponse } from '../helpers/worker'

interface UsageAnswer {
  key_id: string
  from: string
  to: string
  granularity: string
  totals: { success: number; failure: number }
  endpoints: { endpoint: string | null; success: number; failure: number }[]
  buckets: {
    start: string
    success: number
    failure: number
    endpoints: { endpoint: string | null; success: number; failure: number }[]
  }[]
}

const DAY = '2025-03-10'

// Verifies as the verify statement records them: hourly counters per endpoint ('' for none).
async function seedUsage(keyId: string) {
  const at = (time: string) => new Date(`${DAY}T${time}Z`)
  const calls: { endpoint: string | null; at: Date; success: boolean }[] = [
    { endpoint: '/a', at: at('09:05:00'), success: true },
    { endpoint: '/a', at: at('09:59:59'), success: true },
    { endpoint: '/b', at: at('09:30:00'), success: false },
    { endpoint: '/a', at: at('11:00:00'), success: false },
    { endpoint: null, at: at('11:15:00'), success: true },
    // Outside the range asked for below.
    { endpoint: '/a', at: at('12:00:00'), success: true },
    { endpoint: '/a', at: new Date('2025-03-09T23:59:59Z'), success: true },
  ]
  for (const call of calls) {
    const hourStart = new Date(Math.floor(call.at.getTime() / 3_600_000) * 3_600_000)
    await testDb()
      .insert(apiKeyUsageCounters)
      .values({
        keyId,
        hourStart,
        endpoint: call.endpoint ?? '',
        success: call.success ? 1 : 0,
        failure: call.success ? 0 : 1,
      })
      .onConflictDoUpdate({
        target: [apiKeyUsageCounters.keyId, apiKeyUsageCounters.hourStart, apiKeyUsageCounters.endpoint],
        set: {
          success: sql`${apiKeyUsageCounters.success} + excluded.success`,
          failure: sql`${apiKeyUsageCounters.failure} + excluded.failure`,
        },
      })
  }
}

describe('GET /api-keys/{id}/usage', () => {
  it('counts success and failure per hour and per endpoint, with empty hours filled', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    await seedUsage(key.id)
    const res = await getJson(
      `/api-keys/${key.id}/usage?from=${DAY}T09:00:00Z&to=${DAY}T12:00:00Z&granularity=hour`,
      user.headers,
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as UsageAnswer
    expect(body).toMatchObject({ key_id: key.id, granularity: 'hour', totals: { success: 3, failure: 2 } })
    expect(body.endpoints).toEqual(
      expect.arrayContaining([
        { endpoint: '/a', success: 2, failure: 1 },
        { endpoint: '/b', success: 0, failure: 1 },
        { endpoint: null, success: 1, failure: 0 },
      ]),
    )
    expect(body.buckets.map((b) => [b.start, b.success, b.failure])).toEqual([
      [`${DAY}T09:00:00.000Z`, 2, 1],
      [`${DAY}T10:00:00.000Z`, 0, 0],
      [`${DAY}T11:00:00.000Z`, 1, 1],
    ])
    expect(body.buckets[0]?.endpoints).toEqual(
      expect.arrayContaining([
        { endpoint: '/a', success: 2, failure: 0 },
        { endpoint: '/b', success: 0, failure: 1 },
      ]),
    )
  })

  it('buckets by UTC day', async () => {
    const key = await createKeyAsAdmin()
    await seedUsage(key.id)
    const res = await getJson(
      `/api-keys/${key.id}/usage?from=2025-03-09T00:00:00Z&to=2025-03-11T00:00:00Z&granularity=day`,
      adminHeaders(),
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as UsageAnswer
    expect(body.buckets.map((b) => [b.start, b.success, b.failure])).toEqual([
      ['2025-03-09T00:00:00.000Z', 1, 0],
      [`${DAY}T00:00:00.000Z`, 4, 2],
    ])
  })

  it('reflects verifies made through the API', async () => {
    const key = await createKeyAsAdmin()
    await verifyKey(key.key, 'tool:search')
    await verifyKey(key.key, 'tool:search')
    const res = await getJson(`/api-keys/${key.id}/usage`, adminHeaders())
    const body = (await res.json()) as UsageAnswer
    expect(body.totals).toEqual({ success: 2, failure: 0 })
    expect(body.endpoints).toEqual([{ endpoint: 'tool:search', success: 2, failure: 0 }])
    expect(body.buckets).toHaveLength(25)
  })

  it.each([
    ['granularity=minute', 'granularity'],
    ['from=yesterday', 'from'],
    ['from=2025-03-10T10:00:00Z&to=2025-03-10T09:00:00Z', 'from'],
    ['from=2020-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&granularity=hour', 'from'],
  ])('answers 400 for ?%s', async (query, field) => {
    const key = await createKeyAsAdmin()
    const res = await getJson(`/api-keys/${key.id}/usage?${query}`, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'validation_failed', errors: [{ field }] })
  })

  it('reads the counters, never the raw rows (whose retention is their own)', async () => {
    const key = await createKeyAsAdmin()
    await verifyKey(key.key, 'e')
    // Raw detail rows alone count for nothing; the counters are the record.
    await testDb()
      .insert(apiKeyUsage)
      .values(
        Array.from({ length: 5 }, () => ({ keyId: key.id, endpoint: 'e', success: true, code: 'VALID' })),
      )
    const res = await getJson(`/api-keys/${key.id}/usage`, adminHeaders())
    const body = (await res.json()) as UsageAnswer
    expect(body.totals).toEqual({ success: 1, failure: 0 })
  })

  it('with USAGE_DETAIL_RETENTION_DAYS=0 counts every verify and writes no raw row, in one round trip', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 1, window_seconds: 3600 } })
    const detailOff = { USAGE_DETAIL_RETENTION_DAYS: '0' }
    const answers: string[] = []
    for (let i = 0; i < 2; i++) {
      const res = await callWith(detailOff, '/api-keys/verify', {
        method: 'POST',
        headers: { ...adminHeaders(), 'content-type': 'application/json' },
        body: JSON.stringify({ key: key.key, endpoint: 'tool:quiet' }),
      })
      expect(res.status, await describeResponse(res)).toBe(200)
      answers.push(((await res.json()) as { code: string }).code)
      // callWith waited for anything deferred: this is the request's whole count.
      expect((await roundTrips(res)).httpRequests).toBe(1)
    }
    expect(answers).toEqual(['VALID', 'RATE_LIMITED'])
    expect(await usageRows(key.id)).toHaveLength(0)
    const res = await getJson(`/api-keys/${key.id}/usage`, adminHeaders())
    const body = (await res.json()) as UsageAnswer
    expect(body.totals).toEqual({ success: 1, failure: 1 })
    expect(body.endpoints).toEqual([{ endpoint: 'tool:quiet', success: 1, failure: 1 }])
    // The default still keeps the detail.
    await verifyKey(key.key, 'tool:loud')
    expect((await usageRows(key.id)).map((row) => row.endpoint)).toEqual(['tool:loud'])
  })

  it('answers 404 for an unknown key', async () => {
    const res = await getJson(`/api-keys/${crypto.randomUUID()}/usage`, adminHeaders())
    expect(res.status).toBe(404)
  })
})
