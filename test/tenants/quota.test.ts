import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { toApiKeyVerification } from '../../sdk/src/api-keys'
import { type CreatedKey, createKey, eventually, type VerifyAnswer, verify } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { expectRoundTrips } from '../helpers/round-trips'
import {
  adminHeaders,
  call,
  callWith,
  describeResponse,
  postJson,
  realPostgres,
  useBindings,
  useIsolatedDatabase,
} from '../helpers/worker'
import { patchTenant, type SeededTenant, seedTenant } from './fixtures'

interface TenantQuotaAnswer extends VerifyAnswer {
  tenant_quota: { limit: number; remaining: number; reset_at: string } | null
}

/** Keys of the tenant, one per member, created by the admin API for owners whose home is the tenant. */
async function tenantKeys(t: SeededTenant): Promise<CreatedKey[]> {
  const owners = [t.owner, t.admin, t.member]
  await testDb().execute(
    sql`update users set tenant_id = ${t.id}::uuid where id in (${sql.join(
      owners.map((o) => sql`${o.id}::uuid`),
      sql`, `,
    )})`,
  )
  return Promise.all(owners.map((o) => createKey(adminHeaders(), { owner_id: o.id })))
}

/** This UTC month's counter of the tenant, the month taken by the database. */
async function tenantUsed(tenantId: string): Promise<number | undefined> {
  const [row] = await queryRows(
    testDb(),
    sql`select used from tenant_quota_counters
        where tenant_id = ${tenantId}::uuid and period_start = date_trunc('month', now(), 'UTC')`,
  )
  return row === undefined ? undefined : Number(row.used)
}

async function setTenantUsed(tenantId: string, used: number, monthsAgo = 0): Promise<void> {
  await testDb().execute(
    sql`insert into tenant_quota_counters (tenant_id, period_start, used)
        values (${tenantId}::uuid, date_trunc('month', now(), 'UTC') - make_interval(months => ${monthsAgo}), ${used})
        on conflict (tenant_id, period_start) do update set used = excluded.used`,
  )
}

async function keyQuotaUsed(keyIds: string[]): Promise<number> {
  const [row] = await queryRows(
    testDb(),
    sql`select coalesce(sum(used), 0)::int as used from api_key_quota_counters
        where key_id in (${sql.join(
          keyIds.map((id) => sql`${id}::uuid`),
          sql`, `,
        )}) and period_start = date_trunc('month', now(), 'UTC')`,
  )
  return Number(row?.used)
}

async function verifyAnswer(key: string, headers?: Record<string, string>): Promise<TenantQuotaAnswer> {
  const res = await verify({ key }, headers)
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as TenantQuotaAnswer
}

describe('tenant-wide monthly quota', () => {
  it('is set per tenant by the admin API (null follows the plan) and refuses bad values with 400', async () => {
    const t = await seedTenant()
    const set = await patchTenant(t.id, { monthly_quota: 500 })
    expect(set.status, await describeResponse(set)).toBe(200)
    expect(((await set.json()) as { tenant: { monthly_quota: number | null } }).tenant.monthly_quota).toBe(
      500,
    )
    const [audit] = await queryRows(
      testDb(),
      sql`select metadata from audit_events where tenant_id = ${t.id}::uuid and type = 'tenant_updated'`,
    )
    expect(audit?.metadata).toMatchObject({ changes: { monthly_quota: 500 } })
    for (const bad of [-1, 1.5, '10', 2 ** 60]) {
      const res = await patchTenant(t.id, { monthly_quota: bad })
      expect(res.status, `${bad}: ${await describeResponse(res)}`).toBe(400)
    }
    const cleared = await patchTenant(t.id, { monthly_quota: null })
    expect(
      ((await cleared.json()) as { tenant: { monthly_quota: number | null } }).tenant.monthly_quota,
    ).toBe(null)
    const [row] = await queryRows(testDb(), sql`select monthly_quota from tenants where id = ${t.id}::uuid`)
    expect(row?.monthly_quota).toBeNull()
  })

  it('is shared by all the tenant’s keys, reported on verify, and one statement (1 round trip) with or without a service key', async () => {
    const t = await seedTenant()
    const keys = await tenantKeys(t)
    expect((await patchTenant(t.id, { monthly_quota: 4 })).status).toBe(200)
    const service = await postJson(`/tenants/${t.id}/service-keys`, { service_name: 'gw' }, adminHeaders())
    expect(service.status, await describeResponse(service)).toBe(201)
    const serviceKey = ((await service.json()) as { key: string }).key

    const first = await verify({ key: keys[0]?.key })
    const answer = (await first.json()) as TenantQuotaAnswer
    expect(answer.code).toBe('VALID')
    expect(answer.tenant_quota).toMatchObject({ limit: 4, remaining: 3 })
    await expectRoundTrips(first, { httpRequests: 1 })
    const viaService = await verify({ key: keys[1]?.key }, { authorization: `Bearer ${serviceKey}` })
    expect(((await viaService.json()) as TenantQuotaAnswer).tenant_quota).toMatchObject({ remaining: 2 })
    await expectRoundTrips(viaService, { httpRequests: 1 })
    expect((await verifyAnswer(keys[2]?.key ?? '')).code).toBe('VALID')
    expect((await verifyAnswer(keys[0]?.key ?? '')).code).toBe('VALID')
    // Spent: every key of the tenant is refused, each key's own quota untouched by the refusals.
    for (const key of keys) {
      const refused = await verifyAnswer(key.key)
      expect(refused.code).toBe('QUOTA_EXCEEDED')
      expect(refused.valid).toBe(false)
      expect(refused.tenant_quota).toMatchObject({ limit: 4, remaining: 0 })
      expect(refused.quota?.remaining).toBeGreaterThan(0)
    }
    const refusedViaService = await verify({ key: keys[1]?.key }, { authorization: `Bearer ${serviceKey}` })
    expect(((await refusedViaService.json()) as TenantQuotaAnswer).code).toBe('QUOTA_EXCEEDED')
    await expectRoundTrips(refusedViaService, { httpRequests: 1 })
    expect(await tenantUsed(t.id)).toBe(4)
    expect(await keyQuotaUsed(keys.map((k) => k.id))).toBe(4)
    // Raising the quota lets the keys through again this month.
    expect((await patchTenant(t.id, { monthly_quota: 5 })).status).toBe(200)
    expect((await verifyAnswer(keys[2]?.key ?? '')).code).toBe('VALID')
    // The tenant's admins read it back.
    const quota = await call(`/tenants/${t.id}/quota`, { headers: { cookie: t.admin.cookie } })
    expect(quota.status, await describeResponse(quota)).toBe(200)
    const body = (await quota.json()) as { quota: Record<string, unknown> }
    expect(body.quota).toMatchObject({
      plan: 'free',
      key_tier: 'trial',
      monthly_quota: 5,
      limit: 5,
      used: 5,
      remaining: 0,
      reset_at: answer.quota?.reset_at,
    })
    expect(Date.parse(String(body.quota.period_start))).toBeLessThanOrEqual(Date.now())
  })

  it('counts per UTC month (computed by the database): last month’s spent counter does not count', async () => {
    const t = await seedTenant()
    const [key] = await tenantKeys(t)
    expect((await patchTenant(t.id, { monthly_quota: 10 })).status).toBe(200)
    await setTenantUsed(t.id, 10, 1)
    const answer = await verifyAnswer(key?.key ?? '')
    expect(answer.code).toBe('VALID')
    expect(answer.tenant_quota).toMatchObject({ limit: 10, remaining: 9 })
    // reset_at is the start of the next UTC month, as the key quota's.
    expect(answer.tenant_quota?.reset_at).toBe(answer.quota?.reset_at)
    const [month] = await queryRows(
      testDb(),
      sql`select count(*)::int as rows, max(used)::int as used from tenant_quota_counters
          where tenant_id = ${t.id}::uuid and period_start = date_trunc('month', now(), 'UTC')`,
    )
    expect(month).toEqual({ rows: 1, used: 1 })
  })

  it('the plan’s default comes from TENANT_MONTHLY_QUOTAS; the tenant’s own value overrides it; none counts nothing', async () => {
    const t = await seedTenant()
    const [key] = await tenantKeys(t)
    expect((await patchTenant(t.id, { plan: 'starter' })).status).toBe(200)
    const withPlanQuota = (headers: Record<string, string>) =>
      callWith({ TENANT_MONTHLY_QUOTAS: 'starter=2' }, '/api-keys/verify', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ key: key?.key }),
      })
    const codes: string[] = []
    for (let i = 0; i < 3; i++) {
      codes.push(((await (await withPlanQuota(adminHeaders())).json()) as VerifyAnswer).code)
    }
    expect(codes).toEqual(['VALID', 'VALID', 'QUOTA_EXCEEDED'])
    const planQuota = await callWith({ TENANT_MONTHLY_QUOTAS: 'starter=2' }, `/tenants/${t.id}/quota`, {
      headers: adminHeaders(),
    })
    expect(((await planQuota.json()) as { quota: unknown }).quota).toMatchObject({
      plan: 'starter',
      key_tier: 'starter',
      monthly_quota: null,
      limit: 2,
      used: 2,
      remaining: 0,
    })
    expect((await patchTenant(t.id, { monthly_quota: 3 })).status).toBe(200)
    expect(((await (await withPlanQuota(adminHeaders())).json()) as VerifyAnswer).code).toBe('VALID')
    // Without a quota (the default config), nothing is counted for the tenant.
    const other = await seedTenant()
    const [free] = await tenantKeys(other)
    const plain = await verifyAnswer(free?.key ?? '')
    expect(plain.code).toBe('VALID')
    expect(plain.tenant_quota).toBeNull()
    expect(await tenantUsed(other.id)).toBeUndefined()
  })

  it('the SDK reads tenant_quota from the verify answer (null without one)', async () => {
    const t = await seedTenant()
    const [key] = await tenantKeys(t)
    const plain = toApiKeyVerification(await (await verify({ key: key?.key })).json())
    expect(plain.key?.tenantQuota).toBeNull()
    expect((await patchTenant(t.id, { monthly_quota: 10 })).status).toBe(200)
    const limited = toApiKeyVerification(await (await verify({ key: key?.key })).json())
    expect(limited.key?.tenantQuota).toMatchObject({ limit: 10, remaining: 9 })
    expect(limited.key?.tenantQuota?.resetAt).toBeInstanceOf(Date)
  })

  it('a quota of 0 refuses every key at once', async () => {
    const t = await seedTenant()
    const [key] = await tenantKeys(t)
    expect((await patchTenant(t.id, { monthly_quota: 0 })).status).toBe(200)
    expect((await verifyAnswer(key?.key ?? '')).code).toBe('QUOTA_EXCEEDED')
    expect(await keyQuotaUsed([key?.id ?? ''])).toBe(0)
  })
})

describe.skipIf(!realPostgres)('tenant-wide quota under concurrency (real Postgres)', () => {
  // Exactness, not latency, is under test: all 200 statements queue on the tenant's one counter
  // row, and on two cores beside three other test files the tail passed the 5 s deadline (177
  // answers 503 in one CI run). A deadline that waits for the queue keeps every answer, and a
  // database of its own keeps the queue out of the other files' connection pool (one of their
  // requests met its deadline beside this burst).
  useIsolatedDatabase('bursts')
  useBindings({ DB_TIMEOUT_MS: '30000' })

  it('200 concurrent verifies over the tenant’s keys with 150 left: exactly 150 VALID, counters equal usage', async () => {
    const t = await seedTenant()
    const keys = await tenantKeys(t)
    const more = await Promise.all(
      [t.owner, t.admin].map((o) =>
        createKey(adminHeaders(), { owner_id: o.id, rate_limit: { limit: 1000 } }),
      ),
    )
    const all = [...keys, ...more]
    expect((await patchTenant(t.id, { monthly_quota: 1000 })).status).toBe(200)
    await setTenantUsed(t.id, 850)
    const answers = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => verifyAnswer(all[i % all.length]?.key ?? '')),
    )
    const codes: Record<string, number> = {}
    for (const answer of answers) {
      codes[answer.code] = (codes[answer.code] ?? 0) + 1
    }
    expect(codes).toEqual({ VALID: 150, QUOTA_EXCEEDED: 50 })
    expect(await tenantUsed(t.id)).toBe(1000)
    // Every VALID call is one unit on its key's own quota too, and no refusal spent one.
    expect(await keyQuotaUsed(all.map((k) => k.id))).toBe(150)
    const ids = all.map((k) => sql`${k.id}::uuid`)
    const usage = await eventually(
      () =>
        queryRows(
          testDb(),
          sql`select count(*)::int as calls, count(*) filter (where success)::int as valid,
                count(*) filter (where code = 'QUOTA_EXCEEDED')::int as refused
              from api_key_usage where key_id in (${sql.join(ids, sql`, `)})`,
        ),
      (rows) => Number(rows[0]?.calls) >= 200,
      30_000,
    )
    expect(usage[0]).toEqual({ calls: 200, valid: 150, refused: 50 })
  })
})
