import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { sha256Hex } from '../../functions/crypto/hash'
import { testDb, unique } from '../helpers/db'
import { exchangeCode, obtainCode, type SeededUser, type TokenSet, webClient } from '../helpers/oauth'
import { call, describeResponse } from '../helpers/worker'
import { jsonRequest, rolesOf, type SeededTenant, seedTenant } from './fixtures'

interface TenantObjects {
  clientId: string
  keyId: string
  invitationId: string
  serviceKeyId: string
  providerId: string
  resourceServerId: string
}

/** One object of each kind the tenant routes manage, in the tenant (written directly). */
async function seedObjects(t: SeededTenant): Promise<TenantObjects> {
  const client = await webClient()
  await testDb().execute(
    sql`update oauth_clients set tenant_id = ${t.id}::uuid where client_id = ${client.client_id}`,
  )
  const [key] = await queryRows(
    testDb(),
    sql`insert into api_keys (key_hash, prefix, last4, name, owner_user_id, tenant_id)
        values (${await sha256Hex(unique('key'))}, 'pk_test_abc', 'wxyz', 'k', ${t.member.id}::uuid, ${t.id}::uuid)
        returning id::text`,
  )
  const [invitation] = await queryRows(
    testDb(),
    sql`insert into tenant_invitations (tenant_id, email, token_hash, invited_by, expires_at)
        values (${t.id}::uuid, 'guest@example.com', ${await sha256Hex(unique('inv'))}, 'admin', now() + interval '1 day')
        returning id::text`,
  )
  const [service] = await queryRows(
    testDb(),
    sql`insert into service_keys (key_hash, prefix, last4, service_name, tenant_id, expires_at, created_by)
        values (${await sha256Hex(unique('psk'))}, 'psk_test_abcd', 'wxyz', 'gateway', ${t.id}::uuid,
                now() + interval '30 days', 'admin')
        returning id::text`,
  )
  const [provider] = await queryRows(
    testDb(),
    sql`insert into identity_providers (tenant_id, slug, kind, name, web_url, api_url, client_id, client_secret_sealed)
        values (${t.id}::uuid, ${unique('idp').toLowerCase().slice(0, 32)}, 'github', 'GitHub',
                'https://github.com', 'https://api.github.com', 'cid', 'sealed')
        returning id::text`,
  )
  const [resourceServer] = await queryRows(
    testDb(),
    sql`insert into resource_servers (tenant_id, identifier, display_name)
        values (${t.id}::uuid, ${`https://${unique('rs').toLowerCase()}.example.net/`}, 'API')
        returning id::text`,
  )
  return {
    clientId: client.client_id,
    keyId: String(key?.id),
    invitationId: String(invitation?.id),
    serviceKeyId: String(service?.id),
    providerId: String(provider?.id),
    resourceServerId: String(resourceServer?.id),
  }
}

async function objectState(o: TenantObjects) {
  const [client] = await queryRows(
    testDb(),
    sql`select disabled_at from oauth_clients where client_id = ${o.clientId}`,
  )
  const [key] = await queryRows(testDb(), sql`select revoked_at from api_keys where id = ${o.keyId}::uuid`)
  const [invitation] = await queryRows(
    testDb(),
    sql`select 1 from tenant_invitations where id = ${o.invitationId}::uuid`,
  )
  const [service] = await queryRows(
    testDb(),
    sql`select revoked_at from service_keys where id = ${o.serviceKeyId}::uuid`,
  )
  const [provider] = await queryRows(
    testDb(),
    sql`select name, enabled from identity_providers where id = ${o.providerId}::uuid`,
  )
  const [resourceServer] = await queryRows(
    testDb(),
    sql`select display_name from resource_servers where id = ${o.resourceServerId}::uuid`,
  )
  return {
    clientDisabled: client?.disabled_at !== null,
    keyRevoked: key?.revoked_at !== null,
    invitationGone: invitation === undefined,
    serviceKeyRevoked: service?.revoked_at !== null,
    provider: provider === undefined ? 'gone' : `${String(provider.name)} ${String(provider.enabled)}`,
    resourceServer: resourceServer === undefined ? 'gone' : String(resourceServer.display_name),
  }
}

const UNTOUCHED = {
  clientDisabled: false,
  keyRevoked: false,
  invitationGone: false,
  serviceKeyRevoked: false,
  provider: 'GitHub true',
  resourceServer: 'API',
}

const NEW_PROVIDER = {
  slug: 'intruder',
  kind: 'github',
  name: 'Intruder',
  client_id: 'x',
  client_secret: 'y',
}

const NEW_RESOURCE_SERVER = {
  identifier: 'https://intruder.example.net/',
  display_name: 'intruder',
  scopes: [],
}

/** Service keys, identity providers and resource servers created in `tenantId` (a refused create must leave none). */
async function createdIn(tenantId: string): Promise<number> {
  const [row] = await queryRows(
    testDb(),
    sql`select (select count(*) from service_keys where tenant_id = ${tenantId}::uuid and service_name = 'intruder')
          + (select count(*) from identity_providers where tenant_id = ${tenantId}::uuid and slug = 'intruder')
          + (select count(*) from resource_servers where tenant_id = ${tenantId}::uuid and display_name = 'intruder') as n`,
  )
  return Number(row?.n)
}

/** Every tenant-scoped endpoint, aimed at tenant `tenantId` and the objects `o`. */
function endpoints(tenantId: string, o: TenantObjects, member: string) {
  return [
    ['GET', `/tenants/${tenantId}/members`],
    ['PATCH', `/tenants/${tenantId}/members/${member}`, { role: 'admin' }],
    ['DELETE', `/tenants/${tenantId}/members/${member}`],
    ['POST', `/tenants/${tenantId}/invitations`, { email: 'someone@example.com' }],
    ['GET', `/tenants/${tenantId}/invitations`],
    ['DELETE', `/tenants/${tenantId}/invitations/${o.invitationId}`],
    ['GET', `/tenants/${tenantId}/clients`],
    ['GET', `/tenants/${tenantId}/clients/${o.clientId}`],
    ['GET', `/tenants/${tenantId}/clients/${o.clientId}/usage`],
    ['POST', `/tenants/${tenantId}/clients/${o.clientId}/disable`],
    ['GET', `/tenants/${tenantId}/api-keys`],
    ['DELETE', `/tenants/${tenantId}/api-keys/${o.keyId}`],
    ['GET', `/tenants/${tenantId}/audit`],
    ['GET', `/tenants/${tenantId}/quota`],
    ['POST', `/tenants/${tenantId}/service-keys`, { service_name: 'intruder' }],
    ['GET', `/tenants/${tenantId}/service-keys`],
    ['DELETE', `/tenants/${tenantId}/service-keys/${o.serviceKeyId}`],
    ['POST', `/tenants/${tenantId}/identity-providers`, NEW_PROVIDER],
    ['GET', `/tenants/${tenantId}/identity-providers`],
    ['GET', `/tenants/${tenantId}/identity-providers/${o.providerId}`],
    [
      'PATCH',
      `/tenants/${tenantId}/identity-providers/${o.providerId}`,
      { name: 'Hijacked', enabled: false },
    ],
    ['DELETE', `/tenants/${tenantId}/identity-providers/${o.providerId}`],
    ['POST', `/tenants/${tenantId}/resource-servers`, NEW_RESOURCE_SERVER],
    ['GET', `/tenants/${tenantId}/resource-servers`],
    ['GET', `/tenants/${tenantId}/resource-servers/${o.resourceServerId}`],
    ['PATCH', `/tenants/${tenantId}/resource-servers/${o.resourceServerId}`, { display_name: 'Hijacked' }],
    ['DELETE', `/tenants/${tenantId}/resource-servers/${o.resourceServerId}`],
  ] as const
}

function send(method: string, path: string, body: unknown, cookie: string) {
  return body === undefined
    ? call(path, { method, headers: { cookie } })
    : call(path, jsonRequest(method, body, cookie))
}

describe('tenant isolation matrix', () => {
  it('covers every documented /tenants/{id}/… route', async () => {
    const doc = (await (await call('/openapi.json')).json()) as {
      paths: Record<string, Record<string, unknown>>
    }
    const documented = Object.entries(doc.paths)
      .filter(([path]) => path.startsWith('/tenants/{id}/'))
      .flatMap(([path, operations]) =>
        Object.keys(operations).map(
          (method) => `${method.toUpperCase()} ${path.replace(/\{[^}]+\}/g, '{}')}`,
        ),
      )
    const ids = {
      clientId: 'C',
      keyId: 'K',
      invitationId: 'I',
      serviceKeyId: 'S',
      providerId: 'P',
      resourceServerId: 'R',
    }
    const covered = endpoints('T', ids, 'M').map(
      ([method, path]) => `${method} ${path.replace(/\/(T|C|K|I|S|P|R|M)(?=\/|$)/g, '/{}')}`,
    )
    expect(documented.length).toBeGreaterThan(10)
    expect(documented.filter((route) => !covered.includes(route))).toEqual([])
  })

  it('every role of tenant A gets 404 on every endpoint of tenant B, and B is unchanged', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const bObjects = await seedObjects(b)
    const bRoles = await rolesOf(b.id)
    for (const [role, user] of [
      ['owner', a.owner],
      ['admin', a.admin],
      ['member', a.member],
    ] as const) {
      for (const [method, path, body] of endpoints(b.id, bObjects, b.member.id)) {
        const res = await send(method, path, body, user.cookie)
        expect(res.status, `${role} ${method} ${path}: ${await describeResponse(res)}`).toBe(404)
      }
    }
    expect(await rolesOf(b.id)).toEqual(bRoles)
    expect(await objectState(bObjects)).toEqual(UNTOUCHED)
    expect(await createdIn(b.id)).toBe(0)
  })

  it('tenant A’s owner and admin reaching B’s objects through A’s own id get 404 (the query names the tenant)', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const bObjects = await seedObjects(b)
    for (const user of [a.owner, a.admin]) {
      for (const [method, path, body] of [
        ['GET', `/tenants/${a.id}/clients/${bObjects.clientId}`, undefined],
        ['POST', `/tenants/${a.id}/clients/${bObjects.clientId}/disable`, undefined],
        ['DELETE', `/tenants/${a.id}/api-keys/${bObjects.keyId}`, undefined],
        ['DELETE', `/tenants/${a.id}/invitations/${bObjects.invitationId}`, undefined],
        ['PATCH', `/tenants/${a.id}/members/${b.member.id}`, { role: 'admin' }],
        ['DELETE', `/tenants/${a.id}/members/${b.member.id}`, undefined],
        ['GET', `/tenants/${a.id}/clients/${bObjects.clientId}/usage`, undefined],
        ['DELETE', `/tenants/${a.id}/service-keys/${bObjects.serviceKeyId}`, undefined],
        ['GET', `/tenants/${a.id}/identity-providers/${bObjects.providerId}`, undefined],
        ['PATCH', `/tenants/${a.id}/identity-providers/${bObjects.providerId}`, { name: 'Hijacked' }],
        ['DELETE', `/tenants/${a.id}/identity-providers/${bObjects.providerId}`, undefined],
        ['GET', `/tenants/${a.id}/resource-servers/${bObjects.resourceServerId}`, undefined],
        [
          'PATCH',
          `/tenants/${a.id}/resource-servers/${bObjects.resourceServerId}`,
          { display_name: 'Hijacked' },
        ],
        ['DELETE', `/tenants/${a.id}/resource-servers/${bObjects.resourceServerId}`, undefined],
      ] as const) {
        const res = await send(method, path, body, user.cookie)
        expect(res.status, `${method} ${path}: ${await describeResponse(res)}`).toBe(404)
      }
      const lists = await Promise.all(
        [
          'clients',
          'api-keys',
          'audit',
          'service-keys',
          'identity-providers',
          'resource-servers',
          'invitations',
          'members',
        ].map(async (what) => {
          const res = await call(`/tenants/${a.id}/${what}`, { headers: { cookie: user.cookie } })
          return JSON.stringify(await res.json())
        }),
      )
      for (const text of lists) {
        for (const id of [...Object.values(bObjects), b.id, b.member.id]) {
          expect(text).not.toContain(id)
        }
      }
    }
    expect(await objectState(bObjects)).toEqual(UNTOUCHED)
    expect((await rolesOf(b.id))[b.member.id]).toBe('member')
  })

  it('a plain member of the tenant is refused (403) on the management endpoints of their own tenant', async () => {
    const t = await seedTenant()
    const objects = await seedObjects(t)
    for (const [method, path, body] of endpoints(t.id, objects, t.admin.id)) {
      const res = await send(method, path, body, t.member.cookie)
      expect(res.status, `${method} ${path}: ${await describeResponse(res)}`).toBe(403)
    }
    expect(await objectState(objects)).toEqual(UNTOUCHED)
    expect(await createdIn(t.id)).toBe(0)
  })

  it('the tenant’s owner lists, disables and revokes its own objects, audited in the tenant’s log', async () => {
    const t = await seedTenant()
    const objects = await seedObjects(t)
    const cookie = t.admin.cookie
    const clients = await call(`/tenants/${t.id}/clients`, { headers: { cookie } })
    expect(
      ((await clients.json()) as { data: { client_id: string }[] }).data.map((c) => c.client_id),
    ).toEqual([objects.clientId])
    const keys = await call(`/tenants/${t.id}/api-keys`, { headers: { cookie } })
    expect(((await keys.json()) as { data: { id: string }[] }).data.map((k) => k.id)).toEqual([objects.keyId])
    const disabled = await call(`/tenants/${t.id}/clients/${objects.clientId}/disable`, {
      method: 'POST',
      headers: { cookie },
    })
    expect(disabled.status, await describeResponse(disabled)).toBe(200)
    const revoked = await call(`/tenants/${t.id}/api-keys/${objects.keyId}`, {
      method: 'DELETE',
      headers: { cookie },
    })
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    expect(await objectState(objects)).toEqual({ ...UNTOUCHED, clientDisabled: true, keyRevoked: true })
    const audit = await call(`/tenants/${t.id}/audit`, { headers: { cookie } })
    const types = ((await audit.json()) as { data: { type: string; actor: string }[] }).data.map(
      (e) => `${e.type} by ${e.actor}`,
    )
    expect(types).toEqual([`api_key_revoked by user:${t.admin.id}`, `client_disabled by user:${t.admin.id}`])
  })

  it('an owner’s tenant:admin access token gets 404 on every endpoint of another tenant, which is unchanged', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const bObjects = await seedObjects(b)
    const client = await webClient({ scope: 'openid tenant:admin' })
    const exchanged = await exchangeCode(
      client,
      await obtainCode(client, a.owner, { scope: 'openid tenant:admin' }),
    )
    const authorization = `Bearer ${((await exchanged.json()) as TokenSet).access_token}`
    for (const [method, path, body] of endpoints(b.id, bObjects, b.member.id)) {
      const res = await call(path, {
        method,
        headers: { authorization, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      expect(res.status, `${method} ${path}: ${await describeResponse(res)}`).toBe(404)
    }
    expect(await objectState(bObjects)).toEqual(UNTOUCHED)
    expect(await createdIn(b.id)).toBe(0)
  })

  it('an access token needs tenant:admin (403 without it) and still only reaches its own tenants', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const tokenFor = async (user: SeededUser, scope: string) => {
      const client = await webClient({ scope: `openid ${scope}` })
      const res = await exchangeCode(client, await obtainCode(client, user, { scope: `openid ${scope}` }))
      expect(res.status, await describeResponse(res)).toBe(200)
      return { authorization: `Bearer ${((await res.json()) as TokenSet).access_token}` }
    }
    const scoped = await tokenFor(a.owner, 'tenant:admin')
    expect((await call(`/tenants/${a.id}/members`, { headers: scoped })).status).toBe(200)
    expect((await call(`/tenants/${b.id}/members`, { headers: scoped })).status).toBe(404)
    const unscoped = await tokenFor(a.owner, 'email')
    expect((await call(`/tenants/${a.id}/members`, { headers: unscoped })).status).toBe(403)
  })

  it('open client registration can neither ask for tenant:admin nor get it by default', async () => {
    const metadata = { redirect_uris: ['https://app.example.com/cb'], token_endpoint_auth_method: 'none' }
    const asked = await call('/oauth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...metadata, scope: 'openid tenant:admin' }),
    })
    expect(asked.status, await describeResponse(asked)).toBe(400)
    const plain = await call('/oauth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(metadata),
    })
    expect(plain.status, await describeResponse(plain)).toBe(201)
    expect(((await plain.json()) as { scope: string }).scope.split(' ')).not.toContain('tenant:admin')
  })
})
