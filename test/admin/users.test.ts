import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { sessions } from '../../db/schema'
import { seedUser, signIn } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

interface UserList {
  data: { id: string; email: string; status: string }[]
  next_cursor: string | null
}

async function listUsers(query: string): Promise<UserList> {
  const res = await call(`/admin/users${query}`, { headers: adminHeaders() })
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as UserList
}

describe('admin users', () => {
  it('needs the admin token: 401 without a credential, 401 for a wrong one', async () => {
    expect((await call('/admin/users')).status).toBe(401)
    expect((await call('/admin/users', { headers: { authorization: 'Bearer nope' } })).status).toBe(401)
  })

  it('refuses a signed-in user’s session cookie', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    expect((await call('/admin/users', { headers: { cookie } })).status).toBe(401)
  })

  it('filters by status and search text, and paginates with a cursor', async () => {
    const tag = unique('pg')
    const seeded = []
    for (let i = 0; i < 5; i++) {
      seeded.push(await seedUser({ email: `${tag}-${i}@example.test`, status: i < 3 ? 'pending' : 'active' }))
    }
    const pending = await listUsers(`?q=${tag}&status=pending`)
    expect(pending.data.map((u) => u.email).sort()).toEqual(
      seeded
        .slice(0, 3)
        .map((u) => u.email)
        .sort(),
    )
    const seen: string[] = []
    let cursor: string | null = ''
    let pages = 0
    while (cursor !== null) {
      const page: UserList = await listUsers(`?q=${tag}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(page.data.length).toBeLessThanOrEqual(2)
      seen.push(...page.data.map((u) => u.email))
      cursor = page.next_cursor
      pages++
    }
    expect(pages).toBe(3)
    expect(seen.sort()).toEqual(seeded.map((u) => u.email).sort())
  })

  it('treats % and _ in the search text literally', async () => {
    await seedUser()
    expect((await listUsers('?q=%25')).data).toEqual([])
    // `_` is LIKE's one-character wildcard: a_b must find a_b and not axb.
    const tag = unique('like')
    const [literal, lookalike] = [
      await seedUser({ email: `${tag}-a_b@example.test` }),
      await seedUser({ email: `${tag}-axb@example.test` }),
    ]
    const underscore = await listUsers(`?q=${encodeURIComponent(`${tag}-a_b`)}`)
    expect(underscore.data.map((u) => u.email)).toEqual([literal.email])
    expect((await listUsers(`?q=${encodeURIComponent(`${tag}-axb`)}`)).data.map((u) => u.email)).toEqual([
      lookalike.email,
    ])
    // `%` likewise: tag-% matches nothing, although both addresses start with tag-.
    expect((await listUsers(`?q=${encodeURIComponent(`${tag}-%`)}`)).data).toEqual([])
    expect((await listUsers(`?q=${encodeURIComponent("'; drop table users;--")}`)).data).toEqual([])
  })

  it.each([
    ['?limit=0', 'limit'],
    ['?limit=101', 'limit'],
    ['?limit=abc', 'limit'],
    ['?status=deleted', 'status'],
    ['?cursor=not-a-cursor', 'cursor'],
  ])('answers %s with 400 naming %s', async (query, field) => {
    const res = await call(`/admin/users${query}`, { headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(400)
    const body = (await res.json()) as { errors: { field: string }[] }
    expect(body.errors.map((e) => e.field)).toContain(field)
  })

  it('approves a pending user, who can then sign in', async () => {
    const user = await seedUser({ status: 'pending' })
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(403)
    const res = await call(`/admin/users/${user.id}/approve`, { method: 'POST', headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ user: { id: user.id, status: 'active' } })
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(200)
  })

  it('suspends a user: their sessions end at once; reinstating lets them sign in again', async () => {
    const user = await seedUser()
    const other = await seedUser()
    const cookie = await signIn(user)
    const otherCookie = await signIn(other)
    const res = await call(`/admin/users/${user.id}/suspend`, { method: 'POST', headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ user: { status: 'suspended' } })
    expect(await testDb().select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(0)
    expect((await call('/auth/session', { headers: { cookie } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: otherCookie } })).status).toBe(200)
    const login = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(login.status).toBe(403)
    expect(await login.json()).toMatchObject({ code: 'account_suspended' })
    // Repeating is harmless; approving a suspended user is a conflict.
    expect(
      (await call(`/admin/users/${user.id}/suspend`, { method: 'POST', headers: adminHeaders() })).status,
    ).toBe(200)
    expect(
      (await call(`/admin/users/${user.id}/approve`, { method: 'POST', headers: adminHeaders() })).status,
    ).toBe(409)
    const back = await call(`/admin/users/${user.id}/reinstate`, { method: 'POST', headers: adminHeaders() })
    expect(await back.json()).toMatchObject({ user: { status: 'active' } })
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(200)
  })

  it.each(['00000000-0000-4000-8000-00000000dead', 'not-a-uuid', "1' or '1'='1"])(
    'answers 404 for user %s',
    async (id) => {
      const res = await call(`/admin/users/${encodeURIComponent(id)}/suspend`, {
        method: 'POST',
        headers: adminHeaders(),
      })
      expect(res.status, await describeResponse(res)).toBe(404)
    },
  )
})
