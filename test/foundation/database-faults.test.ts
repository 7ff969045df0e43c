import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { beforeAll, describe, expect, it } from 'vitest'
import { createDb, queryRows, withDatabaseDeadline } from '../../db/client'
import { DatabaseUnavailableError, databaseUnavailableReason, isDatabaseUnavailable } from '../../db/errors'
import { renderError } from '../../functions/errors/render'
import worker from '../../functions/index'
import { testDb, unique } from '../helpers/db'
import { BASE } from '../helpers/worker'

function dbAt(databaseUrl: string) {
  return createDb({ databaseUrl, gatewayUrl: env.DB_GATEWAY_URL, waitUntil: () => {} })
}

async function fetchWith(bindings: Record<string, string | undefined>, path: string, init: RequestInit = {}) {
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(`${BASE}${path}`, init), { ...env, ...bindings }, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

async function failureOf(work: Promise<unknown>): Promise<unknown> {
  try {
    await work
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail')
}

describe('a database that refuses connections (SQLSTATE 55000 at connect)', () => {
  // A database of this suite's own, next to the test database, with connections disallowed:
  // Postgres answers the startup with FATAL 55000 "not currently accepting connections".
  const base = new URL(env.DATABASE_URL ?? '')
  const closedName = `${base.pathname.slice(1)}_closed`
  const closedUrl = Object.assign(new URL(base), { pathname: `/${closedName}` }).toString()

  beforeAll(async () => {
    const exists = await queryRows(testDb(), sql`select 1 from pg_database where datname = ${closedName}`)
    if (exists.length === 0) {
      await testDb()
        .execute(sql.raw(`create database "${closedName}"`))
        .catch((error: unknown) => {
          // Another run created it in between (42P04 duplicate_database).
          if (!String((error as { code?: string }).code).startsWith('42P04')) {
            throw error
          }
        })
    }
    await testDb().execute(sql.raw(`alter database "${closedName}" allow_connections false`))
  })

  it('an interactive transaction fails as DatabaseUnavailableError, not as a statement error', async () => {
    const error = await failureOf(dbAt(closedUrl).transaction(async (tx) => tx.execute(sql`select 1`)))
    expect(error).toBeInstanceOf(DatabaseUnavailableError)
    expect(isDatabaseUnavailable(error)).toBe(true)
  })

  it('a SQL-over-HTTP statement fails as unavailable too', async () => {
    const error = await failureOf(dbAt(closedUrl).http.execute(sql`select 1`))
    expect(isDatabaseUnavailable(error)).toBe(true)
  })

  it('the one interactive-transaction route answers 503 with Retry-After, never 500', async () => {
    const res = await fetchWith({ DATABASE_URL: closedUrl }, '/auth/password-reset/confirm', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'a'.repeat(43), password: 'a sturdy passphrase 42' }),
    })
    expect(res.status, await res.clone().text()).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toMatchObject({ code: 'database_unavailable' })
  })

  it('/healthz names the reason: database_unreachable', async () => {
    const res = await fetchWith({ DATABASE_URL: closedUrl }, '/healthz')
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({
      status: 'unavailable',
      reasons: ['database_unreachable'],
      database: { reachable: false },
    })
  })
})

describe('deadlines', () => {
  it('a SQL-over-HTTP call past its deadline fails as a timeout, at the deadline', async () => {
    const started = Date.now()
    const error = await failureOf(withDatabaseDeadline(300, () => testDb().execute(sql`select pg_sleep(3)`)))
    expect(databaseUnavailableReason(error)).toBe('timeout')
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it('an interactive transaction past its deadline fails as a timeout and leaves nothing written', async () => {
    const slug = unique('deadline')
    const started = Date.now()
    const error = await failureOf(
      withDatabaseDeadline(500, () =>
        dbAt(env.DATABASE_URL ?? '').transaction(async (tx) => {
          await tx.execute(sql`insert into tenants (slug, name) values (${slug}, 'Deadline')`)
          await tx.execute(sql`select pg_sleep(3)`)
        }),
      ),
    )
    expect(databaseUnavailableReason(error)).toBe('timeout')
    expect(Date.now() - started).toBeLessThan(2_000)
    // The destroyed session rolled back: the insert never becomes visible.
    await new Promise((resolve) => setTimeout(resolve, 3_500))
    expect(await queryRows(testDb(), sql`select 1 from tenants where slug = ${slug}`)).toHaveLength(0)
  })
})

describe('a terminated backend', () => {
  it('fails the batch it was running as unavailable, and the gateway keeps serving', async () => {
    const marker = unique('terminate').replace(/-/g, '_')
    const client = createDb({
      databaseUrl: env.DATABASE_URL ?? '',
      gatewayUrl: env.DB_GATEWAY_URL,
      waitUntil: () => {},
    })
    const victim = client.http.batch([
      client.http.execute(sql`select 1`),
      client.http.execute(sql.raw(`select pg_sleep(5) as ${marker}`)),
    ])
    const killer = (async () => {
      for (let attempt = 0; attempt < 50; attempt++) {
        const rows = await queryRows<{ killed: boolean }>(
          testDb(),
          sql`select pg_terminate_backend(pid) as killed from pg_stat_activity
              where query like ${`%${marker}%`} and pid <> pg_backend_pid()`,
        )
        if (rows.some((r) => r.killed)) {
          return true
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      return false
    })()
    const [error, killed] = await Promise.all([failureOf(victim), killer])
    expect(killed).toBe(true)
    expect(isDatabaseUnavailable(error)).toBe(true)
    // Before the fix the gateway process died here with an unhandled 'error' event.
    expect(await queryRows(testDb(), sql`select 1 as one`)).toEqual([{ one: 1 }])
  })
})

describe('data exceptions (SQLSTATE class 22)', () => {
  // A real Postgres data exception: a NUL byte in text is 22021 (character_not_in_repertoire).
  async function nulByteError(): Promise<unknown> {
    return failureOf(testDb().execute(sql`select ${'a\u0000b'}::text as value`))
  }
  const app = new Hono()
    .get('/api/thing', async () => {
      throw await nulByteError()
    })
    .post('/oauth/thing', async () => {
      throw await nulByteError()
    })
    .onError(renderError)

  it('answer 400 validation_failed, not 500, without the statement', async () => {
    const res = await app.request('/api/thing')
    const text = await res.text()
    expect(res.status, text).toBe(400)
    expect(JSON.parse(text)).toMatchObject({ code: 'validation_failed', status: 400 })
    expect(text).not.toMatch(/select|::text|0x00|22021/i)
  })

  it('answer invalid_request on OAuth endpoints', async () => {
    const res = await app.request('/oauth/thing', { method: 'POST' })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  })
})
