import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { createKey } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'
import { type SeededTenant, seedTenant } from './fixtures'

async function onPlan(plan: string): Promise<SeededTenant> {
  const t = await seedTenant()
  await testDb().execute(sql`update tenants set plan = ${plan} where id = ${t.id}::uuid`)
  // The member's home tenant: its keys are the tenant's.
  await testDb().execute(sql`update users set tenant_id = ${t.id}::uuid where id = ${t.member.id}::uuid`)
  return t
}

async function keysOf(userId: string): Promise<number> {
  const [row] = await queryRows(
    testDb(),
    sql`select count(*)::int as n from api_keys where owner_user_id = ${userId}::uuid`,
  )
  return Number(row?.n)
}

describe('the plan sets the tier of the tenant’s new keys', () => {
  for (const [plan, tier] of [
    ['free', 'trial'],
    ['starter', 'starter'],
    ['professional', 'professional'],
    ['enterprise', 'enterprise'],
  ] as const) {
    it(`${plan} → ${tier}, for the member’s own keys and the admin API’s default`, async () => {
      const t = await onPlan(plan)
      const own = await createKey({ cookie: t.member.cookie })
      expect(own.tier).toBe(tier)
      const byAdmin = await createKey(adminHeaders(), { owner_id: t.member.id })
      expect(byAdmin.tier).toBe(tier)
      const [audit] = await queryRows(
        testDb(),
        sql`select metadata from audit_events where type = 'api_key_created' and metadata->>'key_id' = ${own.id}`,
      )
      expect(audit?.metadata).toMatchObject({ tier })
    })
  }

  it('a member may name the plan’s tier but no other (403, nothing written); a platform admin may set any', async () => {
    const t = await onPlan('professional')
    expect((await createKey({ cookie: t.member.cookie }, { tier: 'professional' })).tier).toBe('professional')
    const before = await keysOf(t.member.id)
    for (const tier of ['trial', 'enterprise']) {
      const res = await postJson('/api-keys', { name: 'k', tier }, { cookie: t.member.cookie })
      expect(res.status, await describeResponse(res)).toBe(403)
    }
    expect(await keysOf(t.member.id)).toBe(before)
    expect((await createKey(adminHeaders(), { owner_id: t.member.id, tier: 'trial' })).tier).toBe('trial')
  })

  it('the default tenant keeps DEFAULT_API_KEY_TIER whatever its plan', async () => {
    const [row] = await queryRows(testDb(), sql`select plan from tenants where slug = 'default'`)
    expect(row?.plan).toBe('enterprise')
    const res = await call('/api-keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminHeaders() },
      body: JSON.stringify({ name: 'k', owner_id: (await seedTenant()).owner.id }),
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    expect(((await res.json()) as { tier: string }).tier).toBe('trial')
  })
})
