import { env, SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { bearerToken, createPortcullis } from '../../sdk/src/index'
import { createKey, verifyKey } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  exchangeCode,
  fetchJwks,
  ISSUER,
  obtainCode,
  postForm,
  refresh,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { eventually } from '../helpers/poll'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'
import { seedTenant, setActive } from './fixtures'

async function moveClient(client: TestClient, tenantId: string): Promise<void> {
  await testDb().execute(
    sql`update oauth_clients set tenant_id = ${tenantId}::uuid where client_id = ${client.client_id}`,
  )
}

async function machineIn(tenantId: string): Promise<TestClient> {
  const machine = await adminClient({
    client_name: 'tenant machine',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'profile',
  })
  await moveClient(machine, tenantId)
  return machine
}

/** A user token (openid, refreshable) issued by a web client of the tenant to a user of the default tenant. */
async function userTokenIn(tenantId: string): Promise<{ app: TestClient; tokens: TokenSet }> {
  const app = await webClient()
  await moveClient(app, tenantId)
  const user = await seedUser()
  const res = await exchangeCode(app, await obtainCode(app, user))
  expect(res.status, await describeResponse(res)).toBe(200)
  return { app, tokens: (await res.json()) as TokenSet }
}

async function serviceKey(path: string, headers: Record<string, string>): Promise<string> {
  const res = await postJson(path, { service_name: 'gateway' }, headers)
  expect(res.status, await describeResponse(res)).toBe(201)
  return ((await res.json()) as { key: string }).key
}

async function introspect(token: string, headers: Record<string, string>) {
  const res = await postForm('/oauth/introspect', { token }, headers)
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as { active: boolean; tenant_id?: string; client_id?: string }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

describe('access tokens carry their tenant', () => {
  it('tenant_id is the issuing client’s tenant, signed (JWKS-verifiable) and returned by introspection', async () => {
    const t = await seedTenant()
    const machine = await machineIn(t.id)
    const token = await clientCredentialsToken(machine, 'profile')
    // A resource server verifying locally against the JWKS sees the claim under the signature.
    const { payload } = await jwtVerify(token, createLocalJWKSet(await fetchJwks()), {
      issuer: ISSUER,
      typ: 'at+jwt',
    })
    expect(payload.tenant_id).toBe(t.id)
    expect(await introspect(token, basicAuth(machine))).toMatchObject({ active: true, tenant_id: t.id })

    const { tokens } = await userTokenIn(t.id)
    expect(decodeJwt(tokens.access_token).tenant_id).toBe(t.id)
    // A client of the default tenant issues default-tenant tokens.
    const app = await webClient()
    const plain = await exchangeCode(app, await obtainCode(app, await seedUser()))
    expect(decodeJwt(((await plain.json()) as TokenSet).access_token).tenant_id).toBe(DEFAULT_TENANT_ID)
  })

  it('the SDK, verifying against the JWKS as a resource server does, returns tenant_id among the claims', async () => {
    const t = await seedTenant()
    const token = await clientCredentialsToken(await machineIn(t.id), 'profile')
    const audience = decodeJwt(token).aud
    const portcullis = createPortcullis({
      issuer: ISSUER,
      audience: typeof audience === 'string' ? audience : ISSUER,
      credentials: bearerToken(env.ADMIN_TOKEN),
      fetch: (input, init) => SELF.fetch(new Request(input, init)),
    })
    const result = await portcullis.verifyAccessToken(token)
    expect(result).toMatchObject({ valid: true, claims: { tenant_id: t.id } })
  })

  it('a tenant’s service key introspects only tokens issued in its tenant (by the client’s tenant, not the user’s)', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const { tokens } = await userTokenIn(a.id)
    const keyA = await serviceKey(`/tenants/${a.id}/service-keys`, { cookie: a.owner.cookie })
    const keyB = await serviceKey(`/tenants/${b.id}/service-keys`, { cookie: b.owner.cookie })
    const platform = await serviceKey('/admin/service-keys', adminHeaders())
    expect(await introspect(tokens.access_token, bearer(keyA))).toMatchObject({
      active: true,
      tenant_id: a.id,
    })
    expect(await introspect(tokens.access_token, bearer(keyB))).toEqual({ active: false })
    expect(await introspect(tokens.access_token, bearer(platform))).toMatchObject({
      active: true,
      tenant_id: a.id,
    })
  })
})

describe('deactivating a tenant stops its clients’ access tokens', () => {
  it('introspection, userinfo and our APIs refuse them; reactivation restores keys and clients, not the old tokens or sessions', async () => {
    const t = await seedTenant()
    const machine = await machineIn(t.id)
    const machineToken = await clientCredentialsToken(machine, 'profile')
    const { app, tokens } = await userTokenIn(t.id)
    const key = await createKey({ cookie: t.member.cookie })
    await testDb().execute(sql`update api_keys set tenant_id = ${t.id}::uuid where id = ${key.id}::uuid`)
    const platform = await serviceKey('/admin/service-keys', adminHeaders())
    const tenantKey = await serviceKey(`/tenants/${t.id}/service-keys`, adminHeaders())
    const userinfo = (token: string) => call('/oauth/userinfo', { headers: bearer(token) })
    expect((await userinfo(tokens.access_token)).status).toBe(200)
    expect((await introspect(machineToken, bearer(platform))).active).toBe(true)

    const off = await setActive(t.id, false)
    expect(off.status, await describeResponse(off)).toBe(200)
    for (const token of [machineToken, tokens.access_token]) {
      expect(await introspect(token, bearer(platform))).toEqual({ active: false })
    }
    expect(await introspect(machineToken, basicAuth(machine))).toEqual({ active: false })
    expect((await userinfo(tokens.access_token)).status).toBe(401)
    // Our own APIs: the access token of a user who is not even a member is refused.
    expect((await call('/api-keys', { headers: bearer(tokens.access_token) })).status).toBe(401)
    // The deactivated tenant's own service key no longer authenticates introspection or verify.
    const refusedKey = await postForm('/oauth/introspect', { token: machineToken }, bearer(tenantKey))
    expect(refusedKey.status).toBe(401)
    expect((await verifyKey(key.key)).code).toBe('DISABLED')
    // The tenant's client cannot even authenticate to refresh (401 invalid_client).
    expect((await refresh(app, tokens.refresh_token ?? '')).status).toBe(401)

    const on = await setActive(t.id, true)
    expect(on.status, await describeResponse(on)).toBe(200)
    expect((await verifyKey(key.key)).code).toBe('VALID')
    expect(await introspect(machineToken, bearer(tenantKey))).toEqual({ active: false })
    // Tokens from before the deactivation stay dead, as its sessions and refresh tokens do.
    expect(await introspect(machineToken, bearer(platform))).toEqual({ active: false })
    expect((await userinfo(tokens.access_token)).status).toBe(401)
    expect((await refresh(app, tokens.refresh_token ?? '')).status).toBe(400)
    expect((await call('/api-keys', { headers: { cookie: t.member.cookie } })).status).toBe(401)
    // The client gets tokens again; one minted after the deactivation's second is active.
    const deactivatedAt = Date.parse(
      ((await off.clone().json()) as { tenant: { updated_at: string } }).tenant.updated_at,
    )
    await eventually(
      async () => Date.now(),
      (now) => Math.floor(now / 1000) > Math.floor(deactivatedAt / 1000),
      5000,
    )
    const fresh = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(machine))
    expect(fresh.status, await describeResponse(fresh)).toBe(200)
    const freshToken = ((await fresh.json()) as { access_token: string }).access_token
    const seen = await postForm('/oauth/introspect', { token: freshToken }, bearer(tenantKey))
    expect(await seen.clone().json()).toMatchObject({ active: true, tenant_id: t.id })
    // Introspection with a service key: the key and the token's state share one batch (issue 16).
    await expectRoundTrips(seen, { httpRequests: 1 })
  })
})
