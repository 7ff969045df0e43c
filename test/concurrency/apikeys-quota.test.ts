import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeyUsageCounters } from '../../db/schema'
import {
  createKeyAsAdmin,
  eventually,
  quotaUsed,
  setQuotaUsed,
  usageRows,
  type VerifyAnswer,
  verify,
} from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { realPostgres, useBindings, useIsolatedDatabase } from '../helpers/worker'

function usageCounters(keyId: string) {
  return testDb().select().from(apiKeyUsageCounters).where(eq(apiKeyUsageCounters.keyId, keyId))
}

async function verifyConcurrently(key: string, times: number): Promise<Map<string, number>> {
  const answers = await Promise.all(
    Array.from({ length: times }, async (_, i) => {
      const res = await verify({ key, endpoint: `e${i % 3}` })
      expect(res.status).toBe(200)
      return (await res.json()) as VerifyAnswer
    }),
  )
  const codes = new Map<string, number>()
  for (const answer of answers) {
    codes.set(answer.code, (codes.get(answer.code) ?? 0) + 1)
  }
  return codes
}

/** A key 150 verifies short of its monthly quota of 10,000, then 200 at once: exactly 150 pass. */
async function spendLast150With200(): Promise<{ id: string; key: string }> {
  const key = await createKeyAsAdmin()
  await setQuotaUsed(key.id, 10_000 - 150)
  const codes = await verifyConcurrently(key.key, 200)
  expect(Object.fromEntries(codes)).toEqual({ VALID: 150, QUOTA_EXCEEDED: 50 })
  expect(await quotaUsed(key.id)).toBe(10_000)
  return key
}

describe.skipIf(!realPostgres)('API-key verify under concurrency (real Postgres)', () => {
  // Exactness, not latency, is under test: the statements queue on one key's counter row. A
  // database of its own keeps the queue out of the other files' connection pool, and a deadline
  // that waits for the queue keeps every answer on two loaded cores.
  useIsolatedDatabase('bursts')
  useBindings({ DB_TIMEOUT_MS: '30000' })

  it('200 concurrent verifies with 150 left: exactly 150 VALID, 50 QUOTA_EXCEEDED, counters = usage rows', async () => {
    const key = await spendLast150With200()
    const rows = await eventually(
      () => usageRows(key.id),
      (r) => r.length >= 200,
      30_000,
    )
    expect(rows).toHaveLength(200)
    expect(rows.filter((r) => r.success)).toHaveLength(150)
    expect(rows.filter((r) => r.code === 'QUOTA_EXCEEDED')).toHaveLength(50)
    // The counter moved by exactly the number of successful usage rows.
    expect((await quotaUsed(key.id)) ?? 0).toBe(10_000 - 150 + rows.filter((r) => r.success).length)
    // The hourly usage counters agree with the usage rows, per endpoint and outcome.
    const counted = await usageCounters(key.id)
    expect(counted.reduce((n, c) => n + c.success, 0)).toBe(150)
    expect(counted.reduce((n, c) => n + c.failure, 0)).toBe(50)
    for (const endpoint of ['e0', 'e1', 'e2']) {
      const mine = rows.filter((r) => r.endpoint === endpoint)
      const counter = counted.filter((c) => c.endpoint === endpoint)
      expect(counter.reduce((n, c) => n + c.success, 0)).toBe(mine.filter((r) => r.success).length)
      expect(counter.reduce((n, c) => n + c.failure, 0)).toBe(mine.filter((r) => !r.success).length)
    }
  })

  it('100 concurrent verifies against a limit of 30 per window: exactly 30 VALID, quota spent only by those', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 30, window_seconds: 3600 } })
    const codes = await verifyConcurrently(key.key, 100)
    expect(Object.fromEntries(codes)).toEqual({ VALID: 30, RATE_LIMITED: 70 })
    expect(await quotaUsed(key.id)).toBe(30)
    const rows = await eventually(
      () => usageRows(key.id),
      (r) => r.length >= 100,
      30_000,
    )
    expect(rows.filter((r) => r.success)).toHaveLength(30)
    const counted = await usageCounters(key.id)
    expect(counted.reduce((n, c) => n + c.success, 0)).toBe(30)
    expect(counted.reduce((n, c) => n + c.failure, 0)).toBe(70)
  })

  describe('with raw usage rows off (USAGE_DETAIL_RETENTION_DAYS=0)', () => {
    useBindings({ USAGE_DETAIL_RETENTION_DAYS: '0' })

    it('200 concurrent verifies with 150 left: exactly 150 VALID, 50 QUOTA_EXCEEDED, the counters say so', async () => {
      const key = await spendLast150With200()
      const counted = await usageCounters(key.id)
      expect(counted.reduce((n, c) => n + c.success, 0)).toBe(150)
      expect(counted.reduce((n, c) => n + c.failure, 0)).toBe(50)
      expect(counted.map((c) => c.endpoint).sort()).toEqual(['e0', 'e1', 'e2'])
      expect(await usageRows(key.id)).toHaveLength(0)
    })
  })
})
