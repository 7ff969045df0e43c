import { sql } from 'drizzle-orm'
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb, unique } from '../helpers/db'
import { exchangeCode, ISSUER, obtainCode, seedUser, type TokenSet, webClient } from '../helpers/oauth'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'
import { jsonRequest, type SeededTenant, seedTenant } from './fixtures'

interface ResourceServer {
  id: string
  identifier: string
  display_name: string
  scopes: { name: string; description: string }[]
  access_token_ttl_seconds: number | null
  tenant_id: string
}

function body(scope = `${unique('rs')}:read`) {
  return {
    identifier: `https://${unique('api').toLowerCase()}.example.net/mcp`,
    display_name: 'Tenant API',
    scopes: [{ name: scope, description: 'Read the tenant API' }],
  }
}

async function create(t: SeededTenant, cookie: string, payload = body()): Promise<ResourceServer> {
  const res = await call(`/tenants/${t.id}/resource-servers`, jsonRequest('POST', payload, cookie))
  expect(res.status, await describeResponse(res)).toBe(201)
  return (await res.json()) as ResourceServer
}

async function auditOf(tenantId: string, id: string) {
  return queryRows(
    testDb(),
    sql`select type, actor, tenant_id::text from audit_events
        where metadata->>'resource_server_id' = ${id} order by created_at, id`,
  ).then((rows) =>
    rows.map((r) => `${String(r.type)} ${String(r.actor)} ${String(r.tenant_id === tenantId)}`),
  )
}

describe('/tenants/{id}/resource-servers (issue 11)', () => {
  it('the owner and an admin create, list, get, update and delete their own, each change audited in the tenant', async () => {
    const t = await seedTenant()
    for (const user of [t.owner, t.admin]) {
      const rs = await create(t, user.cookie)
      expect(rs.tenant_id).toBe(t.id)
      const list = await call(`/tenants/${t.id}/resource-servers`, { headers: { cookie: user.cookie } })
      expect(((await list.json()) as { data: ResourceServer[] }).data.map((r) => r.id)).toContain(rs.id)
      const got = await call(`/tenants/${t.id}/resource-servers/${rs.id}`, {
        headers: { cookie: user.cookie },
      })
      expect(((await got.json()) as ResourceServer).identifier).toBe(rs.identifier)
      const patched = await call(
        `/tenants/${t.id}/resource-servers/${rs.id}`,
        jsonRequest('PATCH', { display_name: 'Renamed', access_token_ttl_seconds: 600 }, user.cookie),
      )
      expect(patched.status, await describeResponse(patched)).toBe(200)
      const after = (await patched.json()) as ResourceServer
      expect([after.display_name, after.access_token_ttl_seconds, after.identifier]).toEqual([
        'Renamed',
        600,
        rs.identifier,
      ])
      const del = await call(`/tenants/${t.id}/resource-servers/${rs.id}`, {
        method: 'DELETE',
        headers: { cookie: user.cookie },
      })
      expect(del.status, await describeResponse(del)).toBe(204)
      const gone = await call(`/tenants/${t.id}/resource-servers/${rs.id}`, {
        headers: { cookie: user.cookie },
      })
      expect(gone.status).toBe(404)
      expect(await auditOf(t.id, rs.id)).toEqual([
        `resource_server_created user:${user.id} true`,
        `resource_server_updated user:${user.id} true`,
        `resource_server_deleted user:${user.id} true`,
      ])
    }
    // The tenant's own audit log shows them.
    const audit = await call(`/tenants/${t.id}/audit`, { headers: { cookie: t.owner.cookie } })
    const types = ((await audit.json()) as { data: { type: string }[] }).data.map((e) => e.type)
    expect(types.filter((type) => type.startsWith('resource_server_'))).toHaveLength(6)
  })

  it('an owner’s tenant:admin access token manages them too; a token without that scope is 403', async () => {
    const t = await seedTenant()
    const tokenFor = async (scope: string) => {
      const client = await webClient({ scope: `openid ${scope}` })
      const res = await exchangeCode(client, await obtainCode(client, t.owner, { scope: `openid ${scope}` }))
      expect(res.status, await describeResponse(res)).toBe(200)
      return `Bearer ${((await res.json()) as TokenSet).access_token}`
    }
    const send = (authorization: string) =>
      call(`/tenants/${t.id}/resource-servers`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify(body()),
      })
    const made = await send(await tokenFor('tenant:admin'))
    expect(made.status, await describeResponse(made)).toBe(201)
    const id = ((await made.json()) as ResourceServer).id
    expect(await auditOf(t.id, id)).toEqual([`resource_server_created user:${t.owner.id} true`])
    const refused = await send(await tokenFor('email'))
    expect(refused.status, await describeResponse(refused)).toBe(403)
  })

  it('a plain member is refused (403) and creates nothing; an outsider gets 404', async () => {
    const t = await seedTenant()
    const rs = await create(t, t.owner.cookie)
    const outsider = await seedUser()
    for (const [cookie, status] of [
      [t.member.cookie, 403],
      [outsider.cookie, 404],
    ] as const) {
      for (const [method, path, payload] of [
        ['POST', `/tenants/${t.id}/resource-servers`, body()],
        ['GET', `/tenants/${t.id}/resource-servers`, undefined],
        ['GET', `/tenants/${t.id}/resource-servers/${rs.id}`, undefined],
        ['PATCH', `/tenants/${t.id}/resource-servers/${rs.id}`, { display_name: 'Hijacked' }],
        ['DELETE', `/tenants/${t.id}/resource-servers/${rs.id}`, undefined],
      ] as const) {
        const res =
          payload === undefined
            ? await call(path, { method, headers: { cookie } })
            : await call(path, jsonRequest(method, payload, cookie))
        expect(res.status, `${method} ${path}: ${await describeResponse(res)}`).toBe(status)
      }
    }
    const [row] = await queryRows(
      testDb(),
      sql`select count(*)::int as n, min(display_name) as name from resource_servers where tenant_id = ${t.id}::uuid`,
    )
    expect([row?.n, row?.name]).toEqual([1, 'Tenant API'])
  })

  it('another tenant’s resource server is 404 through one’s own tenant id, absent from the list, and unchanged', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const theirs = await create(b, b.owner.cookie)
    const cookie = a.owner.cookie
    for (const [method, payload] of [
      ['GET', undefined],
      ['PATCH', { display_name: 'Hijacked' }],
      ['DELETE', undefined],
    ] as const) {
      const path = `/tenants/${a.id}/resource-servers/${theirs.id}`
      const res =
        payload === undefined
          ? await call(path, { method, headers: { cookie } })
          : await call(path, jsonRequest(method, payload, cookie))
      expect(res.status, `${method}: ${await describeResponse(res)}`).toBe(404)
    }
    const list = await call(`/tenants/${a.id}/resource-servers`, { headers: { cookie } })
    expect(await list.text()).not.toContain(theirs.id)
    const still = await call(`/tenants/${b.id}/resource-servers/${theirs.id}`, {
      headers: { cookie: b.owner.cookie },
    })
    expect(((await still.json()) as ResourceServer).display_name).toBe('Tenant API')
    expect(await auditOf(b.id, theirs.id)).toEqual([`resource_server_created user:${b.owner.id} true`])
  })

  it('identifiers are global: another tenant’s identifier is 409 without naming its owner, and nothing is audited', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const theirs = await create(b, b.owner.cookie)
    const clash = await call(
      `/tenants/${a.id}/resource-servers`,
      jsonRequest('POST', { ...body(), identifier: theirs.identifier }, a.owner.cookie),
    )
    expect(clash.status).toBe(409)
    const text = await clash.text()
    expect(text).not.toContain(b.id)
    expect(text).not.toContain(b.slug)
    const [row] = await queryRows(
      testDb(),
      sql`select count(*)::int as n from audit_events where tenant_id = ${a.id}::uuid`,
    )
    expect(row?.n).toBe(0)
  })

  it('two tenants racing for one identifier: one 201, one 409, one row and one audit row', async () => {
    const [a, b] = await Promise.all([seedTenant(), seedTenant()])
    const payload = body()
    const results = await Promise.all(
      [a, b, a, b].map((t) =>
        call(`/tenants/${t.id}/resource-servers`, jsonRequest('POST', payload, t.owner.cookie)),
      ),
    )
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409])
    const [row] = await queryRows(
      testDb(),
      sql`select (select count(*) from resource_servers where identifier = ${payload.identifier})::int as servers,
                 (select count(*) from audit_events where type = 'resource_server_created'
                    and metadata->>'identifier' = ${payload.identifier})::int as audits`,
    )
    expect([row?.servers, row?.audits]).toEqual([1, 1])
  })

  it('validates like the admin API, refuses the issuer as identifier and another tenant_id', async () => {
    const t = await seedTenant()
    const other = await seedTenant()
    for (const payload of [
      { ...body(), identifier: 'http://api.example.net/' },
      { ...body(), scopes: [{ name: 'openid', description: 'mine' }] },
      { ...body(), access_token_ttl_seconds: 5 },
      { ...body(), signing_algorithm: 'none' },
      { ...body(), identifier: ISSUER },
      { ...body(), tenant_id: other.id },
    ]) {
      const res = await call(
        `/tenants/${t.id}/resource-servers`,
        jsonRequest('POST', payload, t.owner.cookie),
      )
      expect(res.status, `${JSON.stringify(payload)}: ${await describeResponse(res)}`).toBe(400)
    }
    const rs = await create(t, t.owner.cookie)
    for (const payload of [{}, { identifier: 'https://elsewhere.example/' }, { scopes: 'x' }]) {
      const res = await call(
        `/tenants/${t.id}/resource-servers/${rs.id}`,
        jsonRequest('PATCH', payload, t.owner.cookie),
      )
      expect(res.status, `${JSON.stringify(payload)}: ${await describeResponse(res)}`).toBe(400)
    }
    const [row] = await queryRows(
      testDb(),
      sql`select count(*)::int as n from resource_servers where tenant_id in (${t.id}::uuid, ${other.id}::uuid)`,
    )
    expect(row?.n).toBe(1)
  })

  it('a tenant resource server’s scopes are grantable in an authorization request naming it, until it is deleted', async () => {
    const t = await seedTenant()
    const scope = `${unique('rs')}:tools`
    const rs = await create(t, t.admin.cookie, body(scope))
    // A client of any tenant (here the default tenant's) may ask for it: the resource is a global audience.
    const client = await webClient({ scope: 'openid' })
    const user = await seedUser()
    const res = await exchangeCode(
      client,
      await obtainCode(client, user, { scope: `openid ${scope}`, resource: rs.identifier }),
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    const claims = decodeJwt(((await res.json()) as TokenSet).access_token)
    expect(claims.aud).toBe(rs.identifier)
    expect(String(claims.scope).split(' ')).toContain(scope)
    // After its tenant deletes it, the resource is invalid_target.
    const del = await call(`/tenants/${t.id}/resource-servers/${rs.id}`, {
      method: 'DELETE',
      headers: { cookie: t.admin.cookie },
    })
    expect(del.status).toBe(204)
    await expect(obtainCode(client, user, { scope: 'openid', resource: rs.identifier })).rejects.toThrow(
      /invalid_target/,
    )
  })

  it('the platform admin sees every tenant’s, filters by tenant_id, creates in a tenant and manages it', async () => {
    const t = await seedTenant()
    const mine = await create(t, t.owner.cookie)
    const made = await postJson('/admin/resource-servers', { ...body(), tenant_id: t.id }, adminHeaders())
    expect(made.status, await describeResponse(made)).toBe(201)
    const theirs = (await made.json()) as ResourceServer
    expect(theirs.tenant_id).toBe(t.id)
    const filtered = await call(`/admin/resource-servers?tenant_id=${t.id}`, { headers: adminHeaders() })
    expect(((await filtered.json()) as { data: ResourceServer[] }).data.map((r) => r.id).sort()).toEqual(
      [mine.id, theirs.id].sort(),
    )
    const unknownTenant = await postJson(
      '/admin/resource-servers',
      { ...body(), tenant_id: crypto.randomUUID() },
      adminHeaders(),
    )
    expect(unknownTenant.status, await describeResponse(unknownTenant)).toBe(400)
    const patched = await call(`/admin/resource-servers/${mine.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', ...adminHeaders() },
      body: JSON.stringify({ scopes: [] }),
    })
    expect(patched.status, await describeResponse(patched)).toBe(200)
    expect(await auditOf(t.id, mine.id)).toEqual([
      `resource_server_created user:${t.owner.id} true`,
      'resource_server_updated admin true',
    ])
  })
})
