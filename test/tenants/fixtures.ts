import { sql } from 'drizzle-orm'
import { queryRows } from '../../db/client'
import type { TenantRole } from '../../db/schema/constants'
import { testDb, unique } from '../helpers/db'
import { type SeededUser, seedUser } from '../helpers/oauth'
import { adminHeaders, call } from '../helpers/worker'

export interface SeededTenant {
  id: string
  slug: string
  owner: SeededUser
  admin: SeededUser
  member: SeededUser
}

/** A tenant with one user per role, written directly (independent of the endpoints under test). */
export async function seedTenant(): Promise<SeededTenant> {
  const id = crypto.randomUUID()
  const slug = unique('org').toLowerCase()
  await testDb().execute(sql`insert into tenants (id, slug, name) values (${id}::uuid, ${slug}, ${slug})`)
  const [owner, admin, member] = await Promise.all([seedUser(), seedUser(), seedUser()])
  for (const [user, role] of [
    [owner, 'owner'],
    [admin, 'admin'],
    [member, 'member'],
  ] as const) {
    await addMember(id, user.id, role)
  }
  return { id, slug, owner, admin, member }
}

export async function addMember(tenantId: string, userId: string, role: TenantRole): Promise<void> {
  await testDb().execute(
    sql`insert into tenant_members (tenant_id, user_id, role) values (${tenantId}::uuid, ${userId}::uuid, ${role})`,
  )
}

/** user id → role, for asserting that a refusal changed nothing. */
export async function rolesOf(tenantId: string): Promise<Record<string, string>> {
  const rows = await queryRows(
    testDb(),
    sql`select user_id::text, role from tenant_members where tenant_id = ${tenantId}::uuid`,
  )
  return Object.fromEntries(rows.map((r) => [String(r.user_id), String(r.role)]))
}

export function jsonRequest(method: string, body: unknown, cookie: string): RequestInit {
  return {
    method,
    headers: { 'content-type': 'application/json', cookie },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  }
}

/** `PATCH /admin/tenants/{id}` with the admin token (plan, active, monthly_quota…). */
export function patchTenant(tenantId: string, body: Record<string, unknown>): Promise<Response> {
  return call(`/admin/tenants/${tenantId}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...adminHeaders() },
    body: JSON.stringify(body),
  })
}

export function setActive(tenantId: string, active: boolean): Promise<Response> {
  return patchTenant(tenantId, { active })
}
