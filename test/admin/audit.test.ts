import { describe, expect, it } from 'vitest'
import { seedUser } from '../helpers/accounts'
import { eventually } from '../helpers/poll'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

interface AuditList {
  data: {
    id: string
    type: string
    actor: string
    user_id: string | null
    client_id: string | null
    ip: string | null
    metadata: Record<string, unknown>
    created_at: string
  }[]
  next_cursor: string | null
}

async function audit(query: string): Promise<AuditList> {
  const res = await call(`/admin/audit${query}`, { headers: adminHeaders() })
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as AuditList
}

/** The audit list for `query` once it holds at least `count` events (throws on timeout). */
function auditOnceAtLeast(query: string, count: number): Promise<AuditList> {
  return eventually(
    () => audit(query),
    (list) => list.data.length >= count,
    10_000,
    `${count} audit events for ${query}`,
  )
}

describe('GET /admin/audit', () => {
  it('lists a user’s sign-in events, filtered by type and user, newest first, with paging', async () => {
    const user = await seedUser()
    await postJson(
      '/auth/login',
      { email: user.email, password: 'Wrong-Password-1' },
      { 'cf-connecting-ip': '203.0.113.7' },
    )
    await postJson(
      '/auth/login',
      { email: user.email, password: user.password },
      { 'cf-connecting-ip': '203.0.113.7' },
    )
    const all = await auditOnceAtLeast(`?user_id=${user.id}`, 2)
    expect(all.data.map((e) => e.type)).toEqual(['user_login', 'user_login_failed'])
    expect(all.data[0]).toMatchObject({
      actor: `user:${user.id}`,
      user_id: user.id,
      ip: '203.0.113.7',
      client_id: null,
    })
    expect(JSON.stringify(all.data)).not.toContain(user.password)
    const failed = await audit(`?user_id=${user.id}&type=user_login_failed`)
    expect(failed.data).toHaveLength(1)
    expect(failed.data[0]?.metadata).toMatchObject({ reason: 'invalid_credentials' })
    const first = await audit(`?user_id=${user.id}&limit=1`)
    expect(first.data).toHaveLength(1)
    expect(first.next_cursor).not.toBeNull()
    const second = await audit(`?user_id=${user.id}&limit=1&cursor=${first.next_cursor}`)
    expect(second.data[0]?.type).toBe('user_login_failed')
    expect(second.next_cursor).toBeNull()
    const future = await audit(
      `?user_id=${user.id}&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`,
    )
    expect(future.data).toEqual([])
  })

  it.each([
    ['?user_id=nope', 'user_id'],
    ['?since=yesterday', 'since'],
    ['?limit=500', 'limit'],
    ['?type=DROP%20TABLE', 'type'],
    ['?cursor=eyJ4Ijo', 'cursor'],
  ])('answers %s with 400 naming %s', async (query, field) => {
    const res = await call(`/admin/audit${query}`, { headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(400)
    const body = (await res.json()) as { errors: { field: string }[] }
    expect(body.errors.map((e) => e.field)).toContain(field)
  })

  it('needs the admin token', async () => {
    expect((await call('/admin/audit')).status).toBe(401)
  })
})
