import { eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { apiKeyUsage, serviceKeys } from '../../db/schema'
import { checksumOf } from '../../functions/apikeys/key-format'
import { sha256Hex } from '../../functions/crypto/hash'
import { createKey, createKeyAsAdmin, quotaUsed, verify } from '../helpers/apikeys'
import { testDb, unique } from '../helpers/db'
import { adminClient, basicAuth, clientCredentialsToken, postForm } from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'
import { seedTenant } from '../tenants/fixtures'

interface IssuedServiceKey {
  id: string
  key: string
  prefix: string
  last4: string
  service_name: string
  tenant_id: string | null
  skip_rate_limit: boolean
  expires_at: string
  revoked_at: string | null
}

async function issue(path: string, headers: Record<string, string>, body: Record<string, unknown> = {}) {
  const res = await postJson(path, { service_name: 'gateway', ...body }, headers)
  expect(res.status, await describeResponse(res)).toBe(201)
  return (await res.json()) as IssuedServiceKey
}

const issuePlatformKey = (body: Record<string, unknown> = {}) =>
  issue('/admin/service-keys', adminHeaders(), body)

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` }
}

/** A well-formed (right checksum) service key that was never issued. */
function madeUpServiceKey(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  const bytes = crypto.getRandomValues(new Uint8Array(43))
  const body = `psk_test_${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('')}`
  return `${body}${checksumOf(body)}`
}

async function usageCount(keyId: string): Promise<number> {
  return (await testDb().select().from(apiKeyUsage).where(eq(apiKeyUsage.keyId, keyId))).length
}

/** The audit event types naming a service key, sorted. */
async function auditTypesFor(serviceKeyId: string): Promise<string[]> {
  const rows = await queryRows(
    testDb(),
    sql`select type from audit_events where metadata->>'service_key_id' = ${serviceKeyId}`,
  )
  return rows.map((r) => String(r.type)).sort()
}

async function moveKeyToTenant(keyId: string, tenantId: string): Promise<void> {
  await testDb().execute(sql`update api_keys set tenant_id = ${tenantId}::uuid where id = ${keyId}::uuid`)
}

describe('service keys: issuing', () => {
  it('shows the key once, stores only its SHA-256, lists it without key or hash, and audits creation in the same batch', async () => {
    const issued = await issuePlatformKey({ service_name: 'billing-api', skip_rate_limit: true })
    expect(issued.key).toMatch(/^psk_test_[0-9A-Za-z]{49}$/)
    expect(issued.prefix).toBe(issued.key.slice(0, 13))
    expect(issued.last4).toBe(issued.key.slice(-4))
    expect(issued.tenant_id).toBeNull()
    expect(issued.skip_rate_limit).toBe(true)
    // Default lifetime: 90 days.
    const days = (Date.parse(issued.expires_at) - Date.now()) / 86_400_000
    expect(days).toBeGreaterThan(89.9)
    expect(days).toBeLessThanOrEqual(90)

    const [row] = await testDb().select().from(serviceKeys).where(eq(serviceKeys.id, issued.id))
    expect(row?.keyHash).toBe(await sha256Hex(issued.key))
    expect(JSON.stringify(row)).not.toContain(issued.key)

    const list = await call('/admin/service-keys?limit=100', { headers: adminHeaders() })
    expect(list.status).toBe(200)
    const text = await list.text()
    expect(text).toContain(issued.id)
    expect(text).not.toContain(issued.key)
    expect(text).not.toContain(row?.keyHash ?? 'no hash')
    expect(text).not.toContain('"key"')
    expect(await auditTypesFor(issued.id)).toEqual(['service_key_created'])
  })

  it('refuses bad bodies and non-admins, writing nothing', async () => {
    // Other files issue service keys meanwhile: count only the names this test sends.
    const name = unique('refused')
    const written = sql`select count(*)::int as n from service_keys where service_name in (${name}, '')`
    const before = await queryRows(testDb(), written)
    for (const body of [
      { service_name: '' },
      { service_name: name, expires_at: '2001-01-01T00:00:00Z' },
      { service_name: name, expires_at: new Date(Date.now() + 400 * 86_400_000).toISOString() },
      { service_name: name, expires_at: 'tomorrow' },
      { service_name: name, skip_rate_limit: 'yes' },
      { service_name: name, tenant_id: crypto.randomUUID() },
    ]) {
      const res = await postJson('/admin/service-keys', body, adminHeaders())
      expect(res.status, JSON.stringify(body)).toBe(400)
    }
    const t = await seedTenant()
    const asOwner = await postJson('/admin/service-keys', { service_name: name }, { cookie: t.owner.cookie })
    expect(asOwner.status).toBe(401)
    const asMember = await postJson(
      `/tenants/${t.id}/service-keys`,
      { service_name: name },
      { cookie: t.member.cookie },
    )
    expect(asMember.status).toBe(403)
    const other = await seedTenant()
    const foreign = await postJson(
      `/tenants/${other.id}/service-keys`,
      { service_name: name },
      { cookie: t.owner.cookie },
    )
    expect(foreign.status).toBe(404)
    const after = await queryRows(testDb(), written)
    expect(after[0]?.n).toBe(before[0]?.n)
  })
})

describe('service keys on POST /api-keys/verify', () => {
  it('authenticates verify in exactly one round trip and charges the key', async () => {
    const service = await issuePlatformKey()
    const key = await createKeyAsAdmin()
    const res = await verify({ key: key.key }, bearer(service.key))
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(((await res.json()) as { code: string }).code).toBe('VALID')
    await expectRoundTrips(res, { httpRequests: 1 })
    expect(await quotaUsed(key.id)).toBe(1)
  })

  it('refuses a revoked, expired, malformed or unknown service key with 401 and charges nothing', async () => {
    const key = await createKeyAsAdmin()
    const revoked = await issuePlatformKey()
    const del = await call(`/admin/service-keys/${revoked.id}`, { method: 'DELETE', headers: adminHeaders() })
    expect(del.status, await describeResponse(del)).toBe(200)
    expect(((await del.json()) as IssuedServiceKey).revoked_at).not.toBeNull()
    // Revoking again is idempotent and audits nothing more.
    const again = await call(`/admin/service-keys/${revoked.id}`, {
      method: 'DELETE',
      headers: adminHeaders(),
    })
    expect(again.status).toBe(200)
    expect(await auditTypesFor(revoked.id)).toEqual(['service_key_created', 'service_key_revoked'])

    const expired = await issuePlatformKey()
    await testDb()
      .update(serviceKeys)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(serviceKeys.id, expired.id))
    const live = await issuePlatformKey()
    const malformed = `${live.key.slice(0, -1)}${live.key.endsWith('A') ? 'B' : 'A'}`

    for (const [name, credential] of [
      ['revoked', revoked.key],
      ['expired', expired.key],
      ['malformed', malformed],
      ['unknown', madeUpServiceKey()],
      ['truncated', live.key.slice(0, 20)],
    ] as const) {
      const res = await verify({ key: key.key }, bearer(credential))
      expect(res.status, `${name}: ${await describeResponse(res)}`).toBe(401)
      expect(res.headers.get('www-authenticate')).toContain('invalid_token')
    }
    expect(await quotaUsed(key.id)).toBeUndefined()
    expect(await usageCount(key.id)).toBe(0)
    // A malformed service key costs no database round trip at all.
    const res = await verify({ key: key.key }, bearer(malformed))
    await expectRoundTrips(res, { httpRequests: 0 })
  })

  it('a tenant’s service key verifies only its tenant’s keys (others NOT_FOUND, uncharged); a platform key verifies all', async () => {
    const a = await seedTenant()
    const b = await seedTenant()
    const tenantKey = await issue(`/tenants/${a.id}/service-keys`, { cookie: a.admin.cookie })
    expect(tenantKey.tenant_id).toBe(a.id)
    const platform = await issuePlatformKey()
    const keyA = await createKey({ cookie: a.member.cookie })
    await moveKeyToTenant(keyA.id, a.id)
    const keyB = await createKey({ cookie: b.member.cookie })
    await moveKeyToTenant(keyB.id, b.id)

    const own = await verify({ key: keyA.key }, bearer(tenantKey.key))
    expect(((await own.json()) as { code: string }).code).toBe('VALID')
    await expectRoundTrips(own, { httpRequests: 1 })
    for (let i = 0; i < 2; i++) {
      const foreign = await verify({ key: keyB.key }, bearer(tenantKey.key))
      expect(foreign.status).toBe(200)
      expect(await foreign.json()).toMatchObject({
        valid: false,
        code: 'NOT_FOUND',
        key_id: null,
        tenant_id: null,
      })
    }
    expect(await quotaUsed(keyB.id)).toBeUndefined()
    expect(await usageCount(keyB.id)).toBe(0)
    // The refusal was not remembered as an unknown key: the platform key still finds it.
    const byPlatform = await verify({ key: keyB.key }, bearer(platform.key))
    expect(((await byPlatform.json()) as { code: string }).code).toBe('VALID')

    // Tenant listing and revocation are scoped: B's owner sees none of A's keys, cannot revoke them,
    // and a tenant cannot revoke a platform key.
    const listB = await call(`/tenants/${b.id}/service-keys`, { headers: { cookie: b.owner.cookie } })
    expect(await listB.text()).not.toContain(tenantKey.id)
    const crossRevoke = await call(`/tenants/${b.id}/service-keys/${tenantKey.id}`, {
      method: 'DELETE',
      headers: { cookie: b.owner.cookie },
    })
    expect(crossRevoke.status).toBe(404)
    const platformRevoke = await call(`/tenants/${a.id}/service-keys/${platform.id}`, {
      method: 'DELETE',
      headers: { cookie: a.owner.cookie },
    })
    expect(platformRevoke.status).toBe(404)
    const stillLive = await verify({ key: keyA.key }, bearer(tenantKey.key))
    expect(stillLive.status).toBe(200)

    // Deactivating the tenant stops its service key.
    await testDb().execute(sql`update tenants set active = false where id = ${a.id}::uuid`)
    const deactivated = await verify({ key: keyA.key }, bearer(tenantKey.key))
    expect(deactivated.status).toBe(401)
  })

  it('skip_rate_limit leaves the rate window uncharged while quota still counts', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 1, window_seconds: 3600 } })
    const plain = await issuePlatformKey()
    const privileged = await issuePlatformKey({ skip_rate_limit: true })
    const codes: string[] = []
    for (const credential of [plain.key, plain.key, privileged.key, privileged.key, privileged.key]) {
      const res = await verify({ key: key.key }, bearer(credential))
      expect(res.status, await describeResponse(res)).toBe(200)
      codes.push(((await res.json()) as { code: string }).code)
    }
    expect(codes).toEqual(['VALID', 'RATE_LIMITED', 'VALID', 'VALID', 'VALID'])
    expect(await quotaUsed(key.id)).toBe(4)
  })
})

describe('service keys on POST /oauth/introspect', () => {
  async function tenantMachineToken(tenantId: string) {
    const machine = await adminClient({
      client_name: 'machine',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'profile',
    })
    await testDb().execute(
      sql`update oauth_clients set tenant_id = ${tenantId}::uuid where client_id = ${machine.client_id}`,
    )
    return { machine, token: await clientCredentialsToken(machine, 'profile') }
  }

  it('introspects access tokens with a service key instead of client credentials, scoped by tenant', async () => {
    const a = await seedTenant()
    const b = await seedTenant()
    const { machine, token } = await tenantMachineToken(a.id)
    const platform = await issuePlatformKey()
    const keyA = await issue(`/tenants/${a.id}/service-keys`, { cookie: a.owner.cookie })
    const keyB = await issue(`/tenants/${b.id}/service-keys`, { cookie: b.owner.cookie })

    for (const [credential, active] of [
      [platform.key, true],
      [keyA.key, true],
      [keyB.key, false],
    ] as const) {
      const res = await postForm('/oauth/introspect', { token }, bearer(credential))
      expect(res.status, await describeResponse(res)).toBe(200)
      const body = (await res.json()) as { active: boolean; client_id?: string }
      expect(body.active).toBe(active)
      if (active) {
        expect(body.client_id).toBe(machine.client_id)
      }
    }
    // Garbage and refresh-shaped tokens are inactive, never an error.
    const junk = await postForm('/oauth/introspect', { token: 'not-a-token' }, bearer(platform.key))
    expect(await junk.json()).toEqual({ active: false })

    // A revoked access token is inactive for a service key too.
    const revoke = await postForm('/oauth/revoke', { token }, basicAuth(machine))
    expect(revoke.status).toBe(200)
    const afterRevoke = await postForm('/oauth/introspect', { token }, bearer(platform.key))
    expect(await afterRevoke.json()).toEqual({ active: false })
  })

  it('refuses a revoked, expired, malformed or unknown service key with 401', async () => {
    const a = await seedTenant()
    const { token } = await tenantMachineToken(a.id)
    const revoked = await issuePlatformKey()
    await call(`/admin/service-keys/${revoked.id}`, { method: 'DELETE', headers: adminHeaders() })
    const expired = await issuePlatformKey()
    await testDb()
      .update(serviceKeys)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(serviceKeys.id, expired.id))
    for (const credential of [revoked.key, expired.key, madeUpServiceKey(), 'psk_test_short']) {
      const res = await postForm('/oauth/introspect', { token }, bearer(credential))
      expect(res.status, await describeResponse(res)).toBe(401)
      expect(((await res.json()) as { error: string }).error).toBe('invalid_client')
    }
  })
})
