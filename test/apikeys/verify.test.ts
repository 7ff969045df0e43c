import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeyRateWindows, apiKeys } from '../../db/schema'
import { checksumOf } from '../../functions/apikeys/key-format'
import {
  createKey,
  createKeyAsAdmin,
  eventually,
  inOneUtcMonth,
  keyRow,
  quotaUsed,
  seedUser,
  setQuotaUsed,
  startOfUtcMonth,
  usageRows,
  verify,
  verifyKey,
} from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

const NULL_FIELDS = {
  valid: false,
  key_id: null,
  owner_id: null,
  tenant_id: null,
  tier: null,
  scopes: null,
  metadata: null,
  quota: null,
  tenant_quota: null,
  ratelimit: null,
}

/** A test body that compares with this UTC month: rerun once if the month turned under it. */
const monthly = (body: () => Promise<void>) => () => inOneUtcMonth(body)

function nextMonth(): string {
  const start = startOfUtcMonth()
  return new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1)).toISOString()
}

describe('POST /api-keys/verify', () => {
  it(
    'answers VALID with the key’s owner, tier, scopes, metadata and limits',
    monthly(async () => {
      const user = await seedUser()
      const key = await createKey(user.headers, { scopes: ['read'], metadata: { plan: 'x' } })
      const res = await verify({ key: key.key, endpoint: '/things' })
      expect(res.status, await describeResponse(res)).toBe(200)
      expect(res.headers.get('cache-control')).toBe('no-store')
      expect(await res.json()).toEqual({
        valid: true,
        code: 'VALID',
        key_id: key.id,
        owner_id: user.id,
        tenant_id: user.tenantId,
        tier: 'trial',
        scopes: ['read'],
        metadata: { plan: 'x' },
        quota: { limit: 10_000, remaining: 9_999, reset_at: nextMonth() },
        // The default tenant has no tenant-wide quota (TENANT_MONTHLY_QUOTAS is unlimited).
        tenant_quota: null,
        ratelimit: { limit: null, remaining: null, reset_at: null },
      })
    }),
  )

  it('has written the usage row and last_used_at by the time it answers', async () => {
    const key = await createKeyAsAdmin()
    await verifyKey(key.key, 'search')
    expect(await usageRows(key.id)).toMatchObject([{ endpoint: 'search', success: true, code: 'VALID' }])
    expect((await keyRow(key.id))?.lastUsedAt).toBeInstanceOf(Date)
  })

  it('costs one round trip in all: check, charge and record are one statement', async () => {
    const key = await createKeyAsAdmin()
    const res = await verify({ key: key.key, endpoint: 'e' })
    expect(((await res.json()) as { code: string }).code).toBe('VALID')
    expect(await usageRows(key.id)).toHaveLength(1)
    await expectRoundTrips(res, { httpRequests: 1, httpQueries: 1, wsConnections: 0, wsClientMessages: 0 })
  })

  it('costs exactly one round trip in total for an unknown key (nothing deferred)', async () => {
    // A key never seen before: a second look at the same key is answered by the isolate's cache.
    const body = `pk_test_${crypto.randomUUID().replaceAll('-', '')}${'A'.repeat(11)}`
    const res = await verify({ key: `${body}${checksumOf(body)}` })
    expect(await res.json()).toEqual({ ...NULL_FIELDS, code: 'NOT_FOUND' })
    await expectRoundTrips(res, { httpRequests: 1, httpQueries: 1, wsConnections: 0, wsClientMessages: 0 })
  })

  it.each([
    ['a mistyped character', (k: string) => `${k.slice(0, 20)}${k[20] === 'a' ? 'b' : 'a'}${k.slice(21)}`],
    ['a truncated key', (k: string) => k.slice(0, -1)],
    ['an extra character', (k: string) => `${k}x`],
    ['a wrong prefix', (k: string) => k.replace('pk_test_', 'sk_test_')],
    ['an empty string', () => ''],
    ['garbage', () => 'hello world'],
  ])('answers MALFORMED for %s without touching the database', async (_label, mangle) => {
    const key = await createKeyAsAdmin()
    const res = await verify({ key: mangle(key.key) })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toEqual({ ...NULL_FIELDS, code: 'MALFORMED' })
    await expectRoundTrips(res, { httpRequests: 0, httpQueries: 0, wsConnections: 0, wsClientMessages: 0 })
    expect(await usageRows(key.id)).toHaveLength(0)
  })

  it('answers REVOKED for a deleted key (tombstone), and records the failure', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    await call(`/api-keys/${key.id}`, { method: 'DELETE', headers: user.headers })
    expect(await verifyKey(key.key)).toEqual({ ...NULL_FIELDS, code: 'REVOKED' })
    const rows = await eventually(
      () => usageRows(key.id),
      (r) => r.length === 1,
    )
    expect(rows).toMatchObject([{ success: false, code: 'REVOKED' }])
    expect(await quotaUsed(key.id)).toBeUndefined()
  })

  it('answers EXPIRED once expires_at has passed', async () => {
    const key = await createKeyAsAdmin()
    await testDb()
      .update(apiKeys)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(apiKeys.id, key.id))
    expect(await verifyKey(key.key)).toEqual({ ...NULL_FIELDS, code: 'EXPIRED' })
  })

  it(
    'answers QUOTA_EXCEEDED at the monthly limit without counting the refused call',
    monthly(async () => {
      const key = await createKeyAsAdmin({ tier: 'starter' })
      await setQuotaUsed(key.id, 49_999)
      const last = await verifyKey(key.key)
      expect(last).toMatchObject({ valid: true, code: 'VALID', quota: { limit: 50_000, remaining: 0 } })
      const refused = await verifyKey(key.key)
      expect(refused).toMatchObject({
        valid: false,
        code: 'QUOTA_EXCEEDED',
        key_id: key.id,
        quota: { limit: 50_000, remaining: 0, reset_at: nextMonth() },
      })
      expect(await quotaUsed(key.id)).toBe(50_000)
    }),
  )

  it(
    'starts a fresh quota each UTC month without a reset job',
    monthly(async () => {
      const key = await createKeyAsAdmin()
      const lastMonth = new Date(startOfUtcMonth().getTime() - 1)
      await setQuotaUsed(key.id, 10_000, startOfUtcMonth(lastMonth))
      expect(await verifyKey(key.key)).toMatchObject({ code: 'VALID', quota: { remaining: 9_999 } })
    }),
  )

  it(
    'never limits enterprise keys',
    monthly(async () => {
      const key = await createKeyAsAdmin({ tier: 'enterprise' })
      await setQuotaUsed(key.id, 10_000_000)
      expect(await verifyKey(key.key)).toMatchObject({
        valid: true,
        code: 'VALID',
        quota: { limit: null, remaining: null, reset_at: nextMonth() },
      })
    }),
  )

  it('answers RATE_LIMITED past the per-key window limit without spending quota', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 2, window_seconds: 3600 } })
    const first = await verifyKey(key.key)
    expect(first).toMatchObject({ code: 'VALID', ratelimit: { limit: 2, remaining: 1 } })
    expect(await verifyKey(key.key)).toMatchObject({ code: 'VALID', ratelimit: { remaining: 0 } })
    const limited = await verifyKey(key.key)
    expect(limited).toMatchObject({
      valid: false,
      code: 'RATE_LIMITED',
      key_id: key.id,
      ratelimit: { limit: 2, remaining: 0, reset_at: first.ratelimit?.reset_at },
      quota: { remaining: 9_998 },
    })
    expect(Date.parse(limited.ratelimit?.reset_at ?? '')).toBeGreaterThan(Date.now())
    expect(await quotaUsed(key.id)).toBe(2)
  })

  it('opens a new rate window once the old one is over', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 1, window_seconds: 60 } })
    await testDb()
      .insert(apiKeyRateWindows)
      .values({ keyId: key.id, windowStart: new Date(Date.now() - 3_600_000), count: 1 })
    expect(await verifyKey(key.key)).toMatchObject({ code: 'VALID', ratelimit: { remaining: 0 } })
    expect(await verifyKey(key.key)).toMatchObject({ code: 'RATE_LIMITED' })
  })

  it('does not spend the rate window once the quota is gone', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 5, window_seconds: 3600 } })
    await setQuotaUsed(key.id, 10_000)
    expect(await verifyKey(key.key)).toMatchObject({ code: 'QUOTA_EXCEEDED', ratelimit: { remaining: 5 } })
    const [window] = await testDb()
      .select()
      .from(apiKeyRateWindows)
      .where(eq(apiKeyRateWindows.keyId, key.id))
    expect(window).toBeUndefined()
  })

  it('keeps the old key working during the rotation grace period, sharing one quota', async () => {
    const key = await createKeyAsAdmin()
    await verifyKey(key.key)
    const res = await postJson(`/api-keys/${key.id}/rotate`, { grace_period_seconds: 3600 }, adminHeaders())
    const rotated = (await res.json()) as { id: string; key: string }
    expect(await verifyKey(key.key)).toMatchObject({
      code: 'VALID',
      key_id: key.id,
      quota: { remaining: 9_998 },
    })
    expect(await verifyKey(rotated.key)).toMatchObject({
      code: 'VALID',
      key_id: rotated.id,
      quota: { remaining: 9_997 },
    })
  })

  it('answers REVOKED for the old key once the grace period is over (default: none)', async () => {
    const key = await createKeyAsAdmin()
    const res = await postJson(`/api-keys/${key.id}/rotate`, {}, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(201)
    const rotated = (await res.json()) as { key: string }
    expect(await verifyKey(key.key)).toMatchObject({ code: 'REVOKED' })
    expect(await verifyKey(rotated.key)).toMatchObject({ code: 'VALID' })
  })

  it('answers 401 without a verifier credential, and 401 for a session cookie', async () => {
    const key = await createKeyAsAdmin()
    const anonymous = await postJson('/api-keys/verify', { key: key.key })
    expect(anonymous.status).toBe(401)
    expect(await anonymous.json()).toMatchObject({ code: 'unauthenticated' })
    const user = await seedUser()
    const withSession = await postJson('/api-keys/verify', { key: key.key }, user.headers)
    expect(withSession.status).toBe(401)
    const wrongBearer = await postJson('/api-keys/verify', { key: key.key }, { authorization: 'Bearer nope' })
    expect(wrongBearer.status).toBe(401)
    expect(await quotaUsed(key.id)).toBeUndefined()
  })

  it.each([
    ['no key', {}],
    ['a numeric key', { key: 42 }],
    ['a null key', { key: null }],
    ['an empty endpoint', { key: 'pk_test_x', endpoint: '' }],
    ['a long endpoint', { key: 'pk_test_x', endpoint: 'e'.repeat(201) }],
    ['an array body', [1, 2]],
  ])('answers 400 for %s', async (_label, body) => {
    const res = await verify(body)
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'validation_failed' })
  })

  it('answers 400 malformed_json for a broken body', async () => {
    const res = await call('/api-keys/verify', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminHeaders() },
      body: '{"key":',
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'malformed_json' })
  })
})
