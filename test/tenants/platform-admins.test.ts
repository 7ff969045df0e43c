import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb } from '../helpers/db'
import { exchangeCode, obtainCode, seedUser, type TokenSet, webClient } from '../helpers/oauth'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

/** An access token with `scope` for `user`, through the code flow of an admin-made client. */
async function tokenFor(user: Awaited<ReturnType<typeof seedUser>>, scope: string): Promise<string> {
  const client = await webClient({ scope: `openid ${scope}` })
  const code = await obtainCode(client, user, { scope: `openid ${scope}` })
  const res = await exchangeCode(client, code)
  expect(res.status, await describeResponse(res)).toBe(200)
  return ((await res.json()) as TokenSet).access_token
}

async function isAdmin(userId: string): Promise<boolean> {
  const [row] = await queryRows(testDb(), sql`select is_admin from users where id = ${userId}::uuid`)
  return row?.is_admin === true
}

async function auditTypes(userId: string): Promise<string[]> {
  const rows = await queryRows(
    testDb(),
    sql`select type, actor from audit_events where user_id = ${userId}::uuid and type in ('user_promoted', 'user_demoted')
        order by created_at`,
  )
  return rows.map((r) => `${r.type} by ${r.actor}`)
}

describe('human platform admins', () => {
  it('the admin token promotes and demotes, each audited once; repeats change nothing', async () => {
    const user = await seedUser()
    const promote = await postJson(`/admin/users/${user.id}/promote`, {}, adminHeaders())
    expect(promote.status, await describeResponse(promote)).toBe(200)
    expect(((await promote.json()) as { user: { is_admin: boolean } }).user.is_admin).toBe(true)
    expect((await postJson(`/admin/users/${user.id}/promote`, {}, adminHeaders())).status).toBe(200)
    expect(await isAdmin(user.id)).toBe(true)
    expect((await postJson(`/admin/users/${user.id}/demote`, {}, adminHeaders())).status).toBe(200)
    expect(await isAdmin(user.id)).toBe(false)
    expect(await auditTypes(user.id)).toEqual(['user_promoted by admin', 'user_demoted by admin'])
  })

  it('an admin-scoped token of a promoted user reaches /admin/* and promotes others; demoted, it is refused at once', async () => {
    const admin = await seedUser({ isAdmin: true })
    const token = await tokenFor(admin, 'admin')
    const bearer = { authorization: `Bearer ${token}` }
    expect((await call('/admin/tenants', { headers: bearer })).status).toBe(200)
    const other = await seedUser()
    const res = await postJson(`/admin/users/${other.id}/promote`, {}, bearer)
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await auditTypes(other.id)).toEqual([`user_promoted by user:${admin.id}`])
    await postJson(`/admin/users/${admin.id}/demote`, {}, adminHeaders())
    expect((await call('/admin/tenants', { headers: bearer })).status).toBe(403)
  })

  it('refuses a non-admin’s admin-scoped token (403), a session (401), and unknown ids (404)', async () => {
    const plain = await seedUser()
    const target = await seedUser()
    const token = await tokenFor(plain, 'admin')
    const res = await postJson(`/admin/users/${target.id}/promote`, {}, { authorization: `Bearer ${token}` })
    expect(res.status).toBe(403)
    expect((await postJson(`/admin/users/${target.id}/promote`, {}, { cookie: plain.cookie })).status).toBe(
      401,
    )
    expect(await isAdmin(target.id)).toBe(false)
    expect((await postJson(`/admin/users/${crypto.randomUUID()}/promote`, {}, adminHeaders())).status).toBe(
      404,
    )
    expect((await postJson('/admin/users/not-a-uuid/demote', {}, adminHeaders())).status).toBe(404)
    expect(await auditTypes(target.id)).toEqual([])
  })
})
