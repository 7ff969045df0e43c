import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { createKey, verifyKey } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import {
  adminClient,
  basicAuth,
  exchangeCode,
  obtainCode,
  postForm,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { adminHeaders, call, describeResponse } from '../helpers/worker'
import { seedTenant, setActive } from './fixtures'

function clientCredentials(client: Awaited<ReturnType<typeof adminClient>>) {
  return postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
}

describe('deactivating a tenant', () => {
  it('ends members’ sessions, refresh and access tokens; keys verify DISABLED; clients get no tokens; reactivation restores keys and clients only', async () => {
    const t = await seedTenant()
    // A key of the tenant, its machine client, and a member's browser session and OAuth tokens.
    const key = await createKey({ cookie: t.member.cookie })
    await testDb().execute(sql`update api_keys set tenant_id = ${t.id}::uuid where id = ${key.id}::uuid`)
    const machine = await adminClient({
      client_name: 'tenant service',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'profile',
    })
    await testDb().execute(
      sql`update oauth_clients set tenant_id = ${t.id}::uuid where client_id = ${machine.client_id}`,
    )
    const app = await webClient()
    const exchanged = await exchangeCode(app, await obtainCode(app, t.member))
    expect(exchanged.status, await describeResponse(exchanged)).toBe(200)
    const tokens = (await exchanged.json()) as TokenSet
    expect((await verifyKey(key.key)).code).toBe('VALID')
    expect((await clientCredentials(machine)).status).toBe(200)

    const off = await setActive(t.id, false)
    expect(off.status, await describeResponse(off)).toBe(200)
    expect(((await off.json()) as { tenant: { active: boolean } }).tenant.active).toBe(false)

    expect((await call('/api-keys', { headers: { cookie: t.member.cookie } })).status).toBe(401)
    expect((await call('/api-keys', { headers: { cookie: t.owner.cookie } })).status).toBe(401)
    expect((await refresh(app, tokens.refresh_token ?? '')).status).toBe(400)
    expect(
      (await call('/oauth/userinfo', { headers: { authorization: `Bearer ${tokens.access_token}` } })).status,
    ).toBe(401)
    expect((await verifyKey(key.key)).code).toBe('DISABLED')
    const refused = await clientCredentials(machine)
    expect(refused.status, await describeResponse(refused)).toBe(401)
    const [audit] = await queryRows(
      testDb(),
      sql`select metadata from audit_events where tenant_id = ${t.id}::uuid and type = 'tenant_updated'`,
    )
    expect(audit?.metadata).toMatchObject({ sessions_ended: 3, refresh_tokens_revoked: 1 })
    // A deactivated tenant's members are refused on its routes.
    const fresh = await call(`/tenants/${t.id}/members`, { headers: adminHeaders() })
    expect(fresh.status).toBe(200)

    const on = await setActive(t.id, true)
    expect(on.status, await describeResponse(on)).toBe(200)
    expect((await verifyKey(key.key)).code).toBe('VALID')
    expect((await clientCredentials(machine)).status).toBe(200)
    expect((await call('/api-keys', { headers: { cookie: t.member.cookie } })).status).toBe(401)
    expect((await refresh(app, tokens.refresh_token ?? '')).status).toBe(400)
  })

  it('leaves other tenants’ members, keys and clients alone', async () => {
    const [t, other] = await Promise.all([seedTenant(), seedTenant()])
    const key = await createKey({ cookie: other.member.cookie })
    await testDb().execute(sql`update api_keys set tenant_id = ${other.id}::uuid where id = ${key.id}::uuid`)
    expect((await setActive(t.id, false)).status).toBe(200)
    expect((await call('/api-keys', { headers: { cookie: other.member.cookie } })).status).toBe(200)
    expect((await verifyKey(key.key)).code).toBe('VALID')
  })

  it('a deactivated tenant’s member signing in again gets 403 on its routes', async () => {
    const t = await seedTenant()
    expect((await setActive(t.id, false)).status).toBe(200)
    // A new session for the owner (deactivation ended the old one), as a fresh sign-in makes.
    const again = await seedUser()
    await testDb().execute(
      sql`update sessions set user_id = ${t.owner.id}::uuid where user_id = ${again.id}::uuid`,
    )
    const res = await call(`/tenants/${t.id}/members`, { headers: { cookie: again.cookie } })
    expect(res.status, await describeResponse(res)).toBe(403)
  })
})
