import { and, eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents } from '../../db/schema'
import { parseApiKey } from '../../functions/apikeys/key-format'
import { sha256Hex } from '../../functions/crypto/hash'
import { createKey, createKeyAsAdmin, eventually, getJson, keyRow, seedUser } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

function auditTypesFor(keyId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.type, type), sql`${auditEvents.metadata} ->> 'key_id' = ${keyId}`))
}

describe('POST /api-keys', () => {
  it('creates a key shown once, stored only as its hash', async () => {
    const user = await seedUser()
    const res = await postJson(
      '/api-keys',
      { name: 'ci', scopes: ['read', 'write', 'read'], metadata: { team: 'core' } },
      user.headers,
    )
    expect(res.status, await describeResponse(res)).toBe(201)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as Record<string, unknown> & { key: string; id: string }
    expect(body).toMatchObject({
      name: 'ci',
      tier: 'trial',
      scopes: ['read', 'write'],
      metadata: { team: 'core' },
      expires_at: null,
      owner_id: user.id,
      status: 'active',
    })
    expect(body.key).toMatch(/^pk_test_[0-9A-Za-z]{49}$/)
    expect(parseApiKey(body.key).kind).toBe('well_formed')
    expect(body.key.startsWith(body.prefix as string)).toBe(true)
    expect(body.key.endsWith(body.last4 as string)).toBe(true)

    const row = await keyRow(body.id)
    expect(row?.keyHash).toBe(await sha256Hex(body.key))
    expect(JSON.stringify(row)).not.toContain(body.key)

    const created = await eventually(
      () => auditTypesFor(body.id, 'api_key_created'),
      (rows) => rows.length > 0,
    )
    expect(created).toHaveLength(1)
    expect(JSON.stringify(created)).not.toContain(body.key)
  })

  it('lets an admin create a key for a user with another tier and a rate limit', async () => {
    const owner = await seedUser()
    const key = await createKey(adminHeaders(), {
      owner_id: owner.id,
      tier: 'professional',
      rate_limit: { limit: 5, window_seconds: 10 },
    })
    expect(key).toMatchObject({
      owner_id: owner.id,
      tier: 'professional',
      rate_limit: { limit: 5, window_seconds: 10 },
    })
  })

  it('refuses a non-default tier from a non-admin with 403', async () => {
    const user = await seedUser()
    const res = await postJson('/api-keys', { name: 'x', tier: 'enterprise' }, user.headers)
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'forbidden' })
  })

  it('refuses creating a key for someone else unless admin', async () => {
    const [user, other] = await Promise.all([seedUser(), seedUser()])
    const res = await postJson('/api-keys', { name: 'x', owner_id: other.id }, user.headers)
    expect(res.status, await describeResponse(res)).toBe(403)
  })

  it.each([
    ['name missing', {}, 'name'],
    ['name empty', { name: '' }, 'name'],
    ['name too long', { name: 'n'.repeat(201) }, 'name'],
    ['name not a string', { name: 42 }, 'name'],
    ['expires_at in the past', { name: 'x', expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
    ['expires_at not a timestamp', { name: 'x', expires_at: 'tomorrow' }, 'expires_at'],
    ['scopes not an array', { name: 'x', scopes: 'read' }, 'scopes'],
    ['scope with a space', { name: 'x', scopes: ['a b'] }, 'scopes.0'],
    ['too many scopes', { name: 'x', scopes: Array.from({ length: 51 }, (_, i) => `s${i}`) }, 'scopes'],
    ['metadata an array', { name: 'x', metadata: [1] }, 'metadata'],
    ['metadata over 8 KiB', { name: 'x', metadata: { blob: 'x'.repeat(8200) } }, 'metadata'],
    ['tier unknown', { name: 'x', tier: 'gold' }, 'tier'],
    ['rate limit zero', { name: 'x', rate_limit: { limit: 0 } }, 'rate_limit.limit'],
  ])('answers 400 naming the field: %s', async (_label, body, field) => {
    const user = await seedUser()
    const res = await postJson('/api-keys', body, user.headers)
    expect(res.status, await describeResponse(res)).toBe(400)
    const problem = (await res.json()) as { code: string; errors: { field: string }[] }
    expect(problem.code).toBe('validation_failed')
    expect(problem.errors.map((e) => e.field)).toContain(field)
  })

  it('answers 400 malformed_json for a broken body', async () => {
    const user = await seedUser()
    const res = await call('/api-keys', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...user.headers },
      body: '{"name":',
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'malformed_json' })
  })

  it('answers 401 without a credential', async () => {
    const res = await postJson('/api-keys', { name: 'x' })
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ code: 'unauthenticated' })
  })

  it('needs owner_id when the admin token creates a key', async () => {
    const res = await postJson('/api-keys', { name: 'x' }, adminHeaders())
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ errors: [{ field: 'owner_id' }] })
  })

  it('refuses an unknown owner_id with 400', async () => {
    const res = await postJson('/api-keys', { name: 'x', owner_id: crypto.randomUUID() }, adminHeaders())
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ errors: [{ field: 'owner_id' }] })
  })
})

describe('GET /api-keys', () => {
  it('lists only your keys, newest first, paginated, never the secret', async () => {
    const [user, other] = await Promise.all([seedUser(), seedUser()])
    const mine = []
    for (let i = 0; i < 5; i++) {
      mine.push(await createKey(user.headers, { name: `k${i}` }))
    }
    await createKey(other.headers)
    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${cursor}`
      const res = await getJson(`/api-keys${query}`, user.headers)
      expect(res.status, await describeResponse(res)).toBe(200)
      const text = await res.text()
      for (const key of mine) {
        expect(text).not.toContain(key.key)
      }
      const page = JSON.parse(text) as { data: { id: string; key?: string }[]; next_cursor: string | null }
      expect(page.data.length).toBeLessThanOrEqual(2)
      for (const row of page.data) {
        expect(row.key).toBeUndefined()
        seen.push(row.id)
      }
      cursor = page.next_cursor
      pages++
    } while (cursor !== null && pages < 10)
    expect(seen).toEqual(mine.map((k) => k.id).reverse())
  })

  it('hides revoked keys unless include_revoked=true', async () => {
    const user = await seedUser()
    const [kept, gone] = [await createKey(user.headers), await createKey(user.headers)]
    expect((await call(`/api-keys/${gone.id}`, { method: 'DELETE', headers: user.headers })).status).toBe(204)
    const active = (await (await getJson('/api-keys', user.headers)).json()) as { data: { id: string }[] }
    expect(active.data.map((k) => k.id)).toEqual([kept.id])
    const all = (await (await getJson('/api-keys?include_revoked=true', user.headers)).json()) as {
      data: { id: string; status: string }[]
    }
    expect(all.data.map((k) => [k.id, k.status])).toEqual([
      [gone.id, 'revoked'],
      [kept.id, 'active'],
    ])
  })

  it.each([['?limit=0'], ['?limit=101'], ['?limit=abc'], ['?cursor=bogus'], ['?include_revoked=maybe']])(
    'answers 400 for %s',
    async (query) => {
      const user = await seedUser()
      const res = await getJson(`/api-keys${query}`, user.headers)
      expect(res.status, await describeResponse(res)).toBe(400)
      expect(await res.json()).toMatchObject({ code: 'validation_failed' })
    },
  )

  it('lets an admin list one owner’s keys', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    const res = await getJson(`/api-keys?owner_id=${user.id}`, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(200)
    const page = (await res.json()) as { data: { id: string }[] }
    expect(page.data.map((k) => k.id)).toEqual([key.id])
  })
})

describe('GET /api-keys/{id} and DELETE', () => {
  it('reads your key without its secret', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers, { name: 'reader' })
    const res = await getJson(`/api-keys/${key.id}`, user.headers)
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({ id: key.id, name: 'reader', prefix: key.prefix, last4: key.last4 })
    expect(body.key).toBeUndefined()
  })

  it('answers 404 for another user’s key, on every route, and leaves it untouched', async () => {
    const [owner, intruder] = await Promise.all([seedUser(), seedUser()])
    const key = await createKey(owner.headers)
    const attempts = [
      call(`/api-keys/${key.id}`, { headers: intruder.headers }),
      call(`/api-keys/${key.id}`, { method: 'DELETE', headers: intruder.headers }),
      postJson(`/api-keys/${key.id}/rotate`, {}, intruder.headers),
      call(`/api-keys/${key.id}/usage`, { headers: intruder.headers }),
    ]
    for (const res of await Promise.all(attempts)) {
      expect(res.status, await describeResponse(res)).toBe(404)
      expect(await res.json()).toMatchObject({ code: 'not_found' })
    }
    const row = await keyRow(key.id)
    expect(row).toMatchObject({ revokedAt: null, graceUntil: null })
    const list = (await (await getJson('/api-keys?include_revoked=true', intruder.headers)).json()) as {
      data: unknown[]
    }
    expect(list.data).toHaveLength(0)
  })

  it('answers 404 for an id that is not a UUID, and for an unknown one', async () => {
    const user = await seedUser()
    expect((await getJson('/api-keys/not-a-key', user.headers)).status).toBe(404)
    expect((await getJson(`/api-keys/${crypto.randomUUID()}`, user.headers)).status).toBe(404)
  })

  it('revokes with 204, keeps a tombstone, is idempotent and audits once', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    const first = await call(`/api-keys/${key.id}`, { method: 'DELETE', headers: user.headers })
    expect(first.status, await describeResponse(first)).toBe(204)
    const second = await call(`/api-keys/${key.id}`, { method: 'DELETE', headers: user.headers })
    expect(second.status).toBe(204)
    const res = await getJson(`/api-keys/${key.id}`, user.headers)
    expect(await res.json()).toMatchObject({ status: 'revoked', revoked_at: expect.any(String) })
    const revoked = await eventually(
      () => auditTypesFor(key.id, 'api_key_revoked'),
      (rows) => rows.length > 0,
    )
    expect(revoked).toHaveLength(1)
  })

  it('lets an admin read and revoke anyone’s key', async () => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    expect((await getJson(`/api-keys/${key.id}`, adminHeaders())).status).toBe(200)
    expect((await call(`/api-keys/${key.id}`, { method: 'DELETE', headers: adminHeaders() })).status).toBe(
      204,
    )
    expect((await keyRow(key.id))?.revokedAt).toBeInstanceOf(Date)
  })

  it('answers 405 with Allow for GET /api-keys/verify', async () => {
    const res = await call('/api-keys/verify', { headers: adminHeaders() })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toContain('POST')
  })
})

describe('POST /api-keys/{id}/rotate', () => {
  it('issues a new key that copies the old one and audits the rotation', async () => {
    const key = await createKeyAsAdmin({
      tier: 'starter',
      scopes: ['a'],
      metadata: { m: 1 },
      rate_limit: { limit: 9, window_seconds: 30 },
    })
    const res = await postJson(`/api-keys/${key.id}/rotate`, { grace_period_seconds: 60 }, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(201)
    const rotated = (await res.json()) as Record<string, unknown> & { key: string; id: string }
    expect(rotated.key).not.toBe(key.key)
    expect(rotated).toMatchObject({
      name: key.name,
      tier: 'starter',
      scopes: ['a'],
      metadata: { m: 1 },
      rate_limit: { limit: 9, window_seconds: 30 },
      owner_id: key.owner_id,
      rotated_from: key.id,
      status: 'active',
    })
    const old = (await (await getJson(`/api-keys/${key.id}`, adminHeaders())).json()) as Record<
      string,
      unknown
    >
    expect(old).toMatchObject({ status: 'grace', grace_until: expect.any(String) })
    const audited = await eventually(
      () => auditTypesFor(rotated.id, 'api_key_rotated'),
      (rows) => rows.length > 0,
    )
    expect(audited[0]?.metadata).toMatchObject({ rotated_from: key.id, grace_period_seconds: 60 })
  })

  it('refuses to rotate a revoked key, or one already rotated, with 409', async () => {
    const user = await seedUser()
    const revoked = await createKey(user.headers)
    await call(`/api-keys/${revoked.id}`, { method: 'DELETE', headers: user.headers })
    const res = await postJson(`/api-keys/${revoked.id}/rotate`, {}, user.headers)
    expect(res.status, await describeResponse(res)).toBe(409)

    const once = await createKey(user.headers)
    expect((await postJson(`/api-keys/${once.id}/rotate`, {}, user.headers)).status).toBe(201)
    const again = await postJson(`/api-keys/${once.id}/rotate`, {}, user.headers)
    expect(again.status, await describeResponse(again)).toBe(409)
  })

  it.each([
    [{ grace_period_seconds: -1 }],
    [{ grace_period_seconds: 1.5 }],
    [{ grace_period_seconds: '60' }],
  ])('answers 400 for %j', async (body) => {
    const user = await seedUser()
    const key = await createKey(user.headers)
    const res = await postJson(`/api-keys/${key.id}/rotate`, body, user.headers)
    expect(res.status, await describeResponse(res)).toBe(400)
  })
})
