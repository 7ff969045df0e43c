import { eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeyRateWindows, apiKeys, apiKeyUsageCounters, tenants, users } from '../../db/schema'
import { checksumOf } from '../../functions/apikeys/key-format'
import {
  createKey,
  createKeyAsAdmin,
  getJson,
  keyRow,
  quotaUsed,
  roundTrips,
  seedUser,
  usageRows,
  verify,
  verifyKey,
} from '../helpers/apikeys'
import { testDb, unique } from '../helpers/db'
import { withFailingInserts } from '../helpers/faults'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, callWith, describeResponse, postJson } from '../helpers/worker'

function madeUpKey(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  const bytes = crypto.getRandomValues(new Uint8Array(43))
  const body = `pk_test_${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('')}`
  return `${body}${checksumOf(body)}`
}

async function counters(keyId: string) {
  return testDb().select().from(apiKeyUsageCounters).where(eq(apiKeyUsageCounters.keyId, keyId))
}

/** No charge, no rate window, no counter, no last_used_at: the failed statement left nothing. */
async function expectNothingRecorded(keyId: string): Promise<void> {
  expect(await quotaUsed(keyId)).toBeUndefined()
  expect(
    await testDb().select().from(apiKeyRateWindows).where(eq(apiKeyRateWindows.keyId, keyId)),
  ).toHaveLength(0)
  expect(await counters(keyId)).toHaveLength(0)
  expect((await keyRow(keyId))?.lastUsedAt).toBeNull()
}

async function setStatus(userId: string, action: 'suspend' | 'reinstate' | 'approve') {
  const res = await postJson(`/admin/users/${userId}/${action}`, {}, adminHeaders())
  expect(res.status, await describeResponse(res)).toBe(200)
}

describe('verify gates on the key owner and tenant, in the same statement', () => {
  it('answers DISABLED for a suspended owner’s key, charges nothing, and VALID again after reinstatement', async () => {
    const owner = await seedUser()
    const key = await createKey(owner.headers)
    expect((await verifyKey(key.key)).code).toBe('VALID')
    expect(await quotaUsed(key.id)).toBe(1)

    await setStatus(owner.id, 'suspend')
    const res = await verify({ key: key.key, endpoint: '/x' })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toEqual({
      valid: false,
      code: 'DISABLED',
      key_id: null,
      owner_id: null,
      tenant_id: null,
      tier: null,
      scopes: null,
      metadata: null,
      quota: null,
      tenant_quota: null,
      ratelimit: null,
    })
    expect(await quotaUsed(key.id)).toBe(1)
    // The refusal is recorded like any other (a failure, never a charge), in the same statement.
    expect((await roundTrips(res)).httpRequests).toBe(1)
    const rows = await usageRows(key.id)
    expect(rows.map((r) => [r.code, r.success]).sort()).toEqual([
      ['DISABLED', false],
      ['VALID', true],
    ])

    await setStatus(owner.id, 'reinstate')
    expect((await verifyKey(key.key)).code).toBe('VALID')
    expect(await quotaUsed(key.id)).toBe(2)
  })

  it('answers DISABLED for a pending owner, and VALID once approved', async () => {
    const owner = await seedUser()
    const key = await createKey(owner.headers)
    await testDb().update(users).set({ status: 'pending' }).where(eq(users.id, owner.id))
    expect((await verifyKey(key.key)).code).toBe('DISABLED')
    expect(await quotaUsed(key.id)).toBeUndefined()
    await setStatus(owner.id, 'approve')
    expect((await verifyKey(key.key)).code).toBe('VALID')
  })

  it('answers DISABLED when the key’s tenant is inactive, without spending its rate window', async () => {
    const slug = unique('tenant')
    const [tenant] = await testDb().insert(tenants).values({ slug, name: slug }).returning({ id: tenants.id })
    const owner = await seedUser()
    await testDb().update(users).set({ tenantId: tenant?.id }).where(eq(users.id, owner.id))
    const key = await createKeyAsAdmin({ owner_id: owner.id, rate_limit: { limit: 5 } })
    expect((await verifyKey(key.key)).code).toBe('VALID')
    await testDb()
      .update(tenants)
      .set({ active: false })
      .where(eq(tenants.id, tenant?.id ?? ''))
    expect((await verifyKey(key.key)).code).toBe('DISABLED')
    expect(await quotaUsed(key.id)).toBe(1)
    const [window] = await testDb()
      .select()
      .from(apiKeyRateWindows)
      .where(eq(apiKeyRateWindows.keyId, key.id))
    expect(window?.count).toBe(1)
  })

  it('still answers REVOKED (not DISABLED) for a revoked key of a suspended owner', async () => {
    const owner = await seedUser()
    const key = await createKey(owner.headers)
    await testDb().execute(sql`update api_keys set revoked_at = now() where id = ${key.id}`)
    await setStatus(owner.id, 'suspend')
    expect((await verifyKey(key.key)).code).toBe('REVOKED')
  })

  it('documents DISABLED among the verify codes in OpenAPI (issue 9 item 2)', async () => {
    const res = await getJson('/openapi.json', {})
    expect(res.status).toBe(200)
    type Schema = { $ref?: string; properties?: Record<string, Schema>; enum?: unknown[] }
    const doc = (await res.json()) as {
      paths: Record<
        string,
        { post?: { responses: Record<string, { content: Record<string, { schema: Schema }> }> } }
      >
      components?: { schemas?: Record<string, Schema> }
    }
    const resolve = (schema: Schema | undefined): Schema | undefined =>
      schema?.$ref === undefined ? schema : doc.components?.schemas?.[schema.$ref.split('/').at(-1) ?? '']
    const verdict = resolve(
      doc.paths['/api-keys/verify']?.post?.responses['200']?.content['application/json']?.schema,
    )
    expect(resolve(verdict?.properties?.code)?.enum).toContain('DISABLED')
  })
})

describe('a verify is one statement in all: check, charge and record', () => {
  it('a VALID verify costs one round trip in all, with its usage row, counter and last_used_at already written', async () => {
    const key = await createKeyAsAdmin()
    const res = await verify({ key: key.key, endpoint: 'search' })
    expect(((await res.json()) as { code: string }).code).toBe('VALID')
    // Written by the statement the answer waited on: no polling.
    expect(await usageRows(key.id)).toMatchObject([{ endpoint: 'search', success: true, code: 'VALID' }])
    expect(await counters(key.id)).toMatchObject([{ endpoint: 'search', success: 1, failure: 0 }])
    expect((await keyRow(key.id))?.lastUsedAt).toBeInstanceOf(Date)
    expect(await quotaUsed(key.id)).toBe(1)
    // Nothing deferred either: the figure stays at one.
    await expectRoundTrips(res, { httpRequests: 1, httpQueries: 1, wsConnections: 0, wsClientMessages: 0 })
  })

  it('moves last_used_at forward to the minute: not rewritten by every verify, never backwards', async () => {
    const key = await createKeyAsAdmin()
    await verifyKey(key.key)
    const first = (await keyRow(key.id))?.lastUsedAt
    await verifyKey(key.key)
    expect((await keyRow(key.id))?.lastUsedAt).toEqual(first)
    // A stamp over a minute old moves to this call's time.
    const old = new Date(Date.now() - 61_000)
    await testDb().update(apiKeys).set({ lastUsedAt: old }).where(eq(apiKeys.id, key.id))
    await verifyKey(key.key)
    expect((await keyRow(key.id))?.lastUsedAt?.getTime()).toBeGreaterThan(old.getTime() + 60_000)
  })

  it('counts refusals as failures in the same statement (QUOTA_EXCEEDED), with no charge', async () => {
    const key = await createKeyAsAdmin({ tier: 'trial' })
    await testDb().execute(
      sql`insert into api_key_quota_counters (key_id, period_start, used)
          values (${key.id}, date_trunc('month', now() at time zone 'UTC') at time zone 'UTC', 10000)`,
    )
    expect((await verifyKey(key.key, 'e')).code).toBe('QUOTA_EXCEEDED')
    expect(await quotaUsed(key.id)).toBe(10_000)
    expect(await counters(key.id)).toMatchObject([{ endpoint: 'e', success: 0, failure: 1 }])
  })

  it.each([
    ['a NUL byte', 'a\u0000b'],
    ['a lone surrogate', 'a\uD800b'],
  ])(
    'refuses an endpoint with %s with 400, charging nothing and recording nothing',
    async (_label, endpoint) => {
      const key = await createKeyAsAdmin()
      const res = await verify({ key: key.key, endpoint })
      expect(res.status, await describeResponse(res)).toBe(400)
      expect(await quotaUsed(key.id)).toBeUndefined()
      expect(await usageRows(key.id)).toHaveLength(0)
      expect(await counters(key.id)).toHaveLength(0)
    },
  )

  it('leaves nothing behind when the statement fails between charging and recording', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 10 } })
    await withFailingInserts('api_key_usage', { keyId: key.id }, async () => {
      const res = await verify({ key: key.key, endpoint: 'e' })
      expect(res.status, await describeResponse(res)).toBeGreaterThanOrEqual(500)
    })
    await expectNothingRecorded(key.id)
    // The same key works once the fault is gone.
    expect((await verifyKey(key.key, 'e')).code).toBe('VALID')
  })

  it('with raw usage rows off, leaves nothing behind when the counter fails after the charge', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 10 } })
    const verifyDetailOff = () =>
      callWith({ USAGE_DETAIL_RETENTION_DAYS: '0' }, '/api-keys/verify', {
        method: 'POST',
        headers: { ...adminHeaders(), 'content-type': 'application/json' },
        body: JSON.stringify({ key: key.key, endpoint: 'e' }),
      })
    // With no raw row to fail on, the fault goes into the hourly counter.
    await withFailingInserts('api_key_usage_counters', { keyId: key.id }, async () => {
      const res = await verifyDetailOff()
      expect(res.status, await describeResponse(res)).toBeGreaterThanOrEqual(500)
    })
    await expectNothingRecorded(key.id)
    const res = await verifyDetailOff()
    expect(((await res.json()) as { code: string }).code).toBe('VALID')
    expect(await counters(key.id)).toHaveLength(1)
    expect(await usageRows(key.id)).toHaveLength(0)
  })

  it('serves usage from the counters: equal to the usage rows and the charges', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers, { rate_limit: { limit: 3, window_seconds: 3600 } })
    const codes = []
    for (const endpoint of ['/a', '/a', '/b', '/a', undefined]) {
      codes.push((await verifyKey(key.key, endpoint)).code)
    }
    expect(codes).toEqual(['VALID', 'VALID', 'VALID', 'RATE_LIMITED', 'RATE_LIMITED'])
    const usage = await getJson(`/api-keys/${key.id}/usage?granularity=day`, user.headers)
    expect(usage.status, await describeResponse(usage)).toBe(200)
    const body = (await usage.json()) as {
      totals: { success: number; failure: number }
      endpoints: { endpoint: string | null; success: number; failure: number }[]
    }
    expect(body.totals).toEqual({ success: 3, failure: 2 })
    expect(body.endpoints).toEqual(
      expect.arrayContaining([
        { endpoint: '/a', success: 2, failure: 1 },
        { endpoint: '/b', success: 1, failure: 0 },
        { endpoint: null, success: 0, failure: 1 },
      ]),
    )
    const rows = await usageRows(key.id)
    expect(rows.filter((r) => r.success)).toHaveLength(3)
    expect(rows).toHaveLength(5)
    expect(await quotaUsed(key.id)).toBe(3)
  })
})

describe('per-isolate negative cache of unknown keys', () => {
  it('a flood of made-up keys costs at most one lookup per distinct key', async () => {
    const keys = Array.from({ length: 40 }, () => madeUpKey())
    let lookups = 0
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        keys.map(async (key) => {
          const res = await verify({ key })
          expect(((await res.json()) as { code: string }).code).toBe('NOT_FOUND')
          return res
        }),
      )
      for (const res of answers) {
        lookups += (await roundTrips(res)).httpRequests
      }
    }
    expect(lookups).toBeLessThanOrEqual(keys.length)
    expect(lookups).toBeGreaterThan(0)
  })

  it('never caches a key that exists, whatever its state', async () => {
    const key = await createKeyAsAdmin()
    const first = await verify({ key: key.key })
    const second = await verify({ key: key.key })
    expect(((await second.json()) as { code: string }).code).toBe('VALID')
    expect((await roundTrips(first)).httpRequests).toBe(1)
    expect((await roundTrips(second)).httpRequests).toBe(1)
    await testDb().execute(sql`update api_keys set revoked_at = now() where id = ${key.id}`)
    expect((await verifyKey(key.key)).code).toBe('REVOKED')
  })
})
