import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { seedUser, signIn } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { adminHeaders, call, callWith, describeResponse, postJson } from '../helpers/worker'

interface TenantJson {
  id: string
  slug: string
  name: string
  plan: string
  active: boolean
  role?: string
}

const slug = () => unique('org').toLowerCase()

async function createTenant(body: Record<string, unknown>): Promise<TenantJson> {
  const res = await postJson('/admin/tenants', body, adminHeaders())
  expect(res.status, await describeResponse(res)).toBe(201)
  return ((await res.json()) as { tenant: TenantJson }).tenant
}

function patchTenant(id: string, body: unknown, headers = adminHeaders()) {
  return call(`/admin/tenants/${id}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** Tenants with this slug (other files create tenants at the same time: never count all). */
async function tenantsNamed(slugOrName: string): Promise<number> {
  const [row] = await queryRows(
    testDb(),
    sql`select count(*)::int as n from tenants where slug = ${slugOrName}`,
  )
  return Number(row?.n)
}

describe('/admin/tenants', () => {
  it('creates, reads, lists and patches a tenant, auditing create and update', async () => {
    const s = slug()
    const tenant = await createTenant({ slug: s, name: 'Acme' })
    expect(tenant).toMatchObject({ slug: s, name: 'Acme', plan: 'free', active: true })
    const got = await call(`/admin/tenants/${tenant.id}`, { headers: adminHeaders() })
    expect(((await got.json()) as { tenant: TenantJson }).tenant.id).toBe(tenant.id)
    const list = await call('/admin/tenants?limit=100', { headers: adminHeaders() })
    expect(((await list.json()) as { data: TenantJson[] }).data.map((t) => t.id)).toContain(tenant.id)
    const patched = await patchTenant(tenant.id, { name: 'Acme Inc', plan: 'enterprise' })
    expect(patched.status, await describeResponse(patched)).toBe(200)
    expect(((await patched.json()) as { tenant: TenantJson }).tenant).toMatchObject({
      name: 'Acme Inc',
      plan: 'enterprise',
    })
    const audit = await queryRows(
      testDb(),
      sql`select type from audit_events where tenant_id = ${tenant.id}::uuid order by created_at`,
    )
    expect(audit.map((r) => r.type)).toEqual(['tenant_created', 'tenant_updated'])
  })

  it('answers 409 slug_taken for a taken slug, on create and on patch, and changes nothing', async () => {
    const a = await createTenant({ slug: slug(), name: 'A' })
    const b = await createTenant({ slug: slug(), name: 'B' })
    const dup = await postJson('/admin/tenants', { slug: a.slug, name: 'C' }, adminHeaders())
    expect(dup.status).toBe(409)
    expect(((await dup.json()) as { code: string }).code).toBe('slug_taken')
    const clash = await patchTenant(b.id, { slug: a.slug, name: 'renamed' })
    expect(clash.status).toBe(409)
    expect(await tenantsNamed(a.slug)).toBe(1)
    const still = await call(`/admin/tenants/${b.id}`, { headers: adminHeaders() })
    expect(((await still.json()) as { tenant: TenantJson }).tenant).toMatchObject({ slug: b.slug, name: 'B' })
  })

  it.each([
    ['uppercase slug', { slug: 'Acme', name: 'x' }],
    ['slug with a leading hyphen', { slug: '-acme', name: 'x' }],
    ['one-character slug', { slug: 'a', name: 'x' }],
    ['64-character slug', { slug: 'a'.repeat(64), name: 'x' }],
    ['unknown plan', { slug: 'valid-slug-x', name: 'x', plan: 'platinum' }],
    ['empty name', { slug: 'valid-slug-y', name: '  ' }],
    ['unknown field', { slug: 'valid-slug-z', name: 'x', owner: 'me' }],
  ])('refuses a %s with 400 and writes nothing', async (_label, body) => {
    const res = await postJson('/admin/tenants', body, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await tenantsNamed(String(body.slug))).toBe(0)
  })

  it('refuses malformed JSON, an empty patch and a non-boolean active with 400', async () => {
    const t = await createTenant({ slug: slug(), name: 'A' })
    expect((await patchTenant(t.id, '{"name":')).status).toBe(400)
    expect((await patchTenant(t.id, {})).status).toBe(400)
    expect((await patchTenant(t.id, { active: 'no' })).status).toBe(400)
  })

  it('answers 404 for unknown and malformed tenant ids', async () => {
    expect((await call(`/admin/tenants/${crypto.randomUUID()}`, { headers: adminHeaders() })).status).toBe(
      404,
    )
    expect((await call('/admin/tenants/nope', { headers: adminHeaders() })).status).toBe(404)
    expect((await patchTenant(crypto.randomUUID(), { name: 'x' })).status).toBe(404)
  })

  it('refuses to deactivate the default tenant (409), and a signed-in user’s session (401)', async () => {
    const res = await patchTenant(DEFAULT_TENANT_ID, { active: false })
    expect(res.status).toBe(409)
    const cookie = await signIn(await seedUser())
    expect((await postJson('/admin/tenants', { slug: slug(), name: 'x' }, { cookie })).status).toBe(401)
  })
})

describe('self-service tenants (TENANT_SELF_SERVICE)', () => {
  it('is refused (403) while the flag is off, and nothing is created', async () => {
    const cookie = await signIn(await seedUser())
    const s = slug()
    const res = await postJson('/tenants', { slug: s, name: 'Mine' }, { cookie })
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await tenantsNamed(s)).toBe(0)
  })

  it('makes the signed-in creator the owner when on; GET /tenants lists it with the role', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const s = slug()
    const res = await callWith({ TENANT_SELF_SERVICE: 'true' }, '/tenants', {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie },
      body: JSON.stringify({ slug: s, name: 'Mine' }),
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    const tenant = ((await res.json()) as { tenant: TenantJson }).tenant
    expect(tenant).toMatchObject({ slug: s, role: 'owner' })
    const mine = await call('/tenants', { headers: { cookie } })
    expect(((await mine.json()) as { data: TenantJson[] }).data).toEqual([
      expect.objectContaining({ id: tenant.id, role: 'owner' }),
    ])
    const members = await queryRows(
      testDb(),
      sql`select user_id::text, role from tenant_members where tenant_id = ${tenant.id}::uuid`,
    )
    expect(members).toEqual([{ user_id: user.id, role: 'owner' }])
  })

  it('needs a credential (401)', async () => {
    expect((await postJson('/tenants', { slug: slug(), name: 'x' })).status).toBe(401)
  })
})
