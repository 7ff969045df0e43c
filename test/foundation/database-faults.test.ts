import { env } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { beforeAll, describe, expect, it } from 'vitest'
import { createDb, queryRows, withDatabaseDeadline } from '../../db/client'
import { DatabaseUnavailableError, databaseUnavailableReason, isDatabaseUnavailable } from '../../db/errors'
import { renderError } from '../../functions/errors/render'
import { HEALTHZ_DB_TIMEOUT_MS } from '../../functions/health/healthz'
import { siblingDatabase, testDb, unique } from '../helpers/db'
import { callWith, expectTransactionRouteUnavailable, realPostgres } from '../helpers/worker'

function dbAt(databaseUrl: string) {
  return createDb({ databaseUrl, gatewayUrl: env.DB_GATEWAY_URL, waitUntil: () => {} })
}

async function failureOf(work: Promise<unknown>): Promise<unknown> {
  try {
    await work
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail')
}

describe.skipIf(!realPostgres)('a database that refuses connections (SQLSTATE 55000 at connect)', () => {
  // A database of this suite's own, next to the test database, with connections disallowed:
  // Postgres answers the startup with FATAL 55000 "not currently accepting connections".
  const closed = siblingDatabase('closed')
  const closedUrl = closed.url

  beforeAll(async () => {
    await closed.create()
    await testDb().execute(sql.raw(`alter database "${closed.name}" allow_connections false`))
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
    await expectTransactionRouteUnavailable({ DATABASE_URL: closedUrl })
  })

  it('/healthz names the reason: database_unreachable', async () => {
    const res = await callWith({ DATABASE_URL: closedUrl }, '/healthz')
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

describe.skipIf(!realPostgres)('/healthz has its own short deadline (issue 18 item 3)', () => {
  // A database of this suite's own whose migrations table another session holds locked: the
  // health check's read waits on the lock, as on a stalled database, until its deadline.
  const stalledDatabase = siblingDatabase('stalled')
  const stalledUrl = stalledDatabase.url

  beforeAll(async () => {
    await stalledDatabase.create()
    const stalled = dbAt(stalledUrl).http
    await stalled.execute(sql.raw('create schema if not exists drizzle'))
    await stalled.execute(
      sql.raw(
        'create table if not exists drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)',
      ),
    )
  })

  /** /healthz with the migrations table locked by another session for the whole request. */
  async function healthzWhileStalled(bindings: Record<string, string>) {
    let answer: { status: number; retryAfter: string | null; body: unknown; ms: number } | undefined
    // The lock holder's own deadline, long enough to outlast the request it stalls.
    await withDatabaseDeadline(15_000, () =>
      dbAt(stalledUrl).transaction(async (tx) => {
        await tx.execute(sql.raw('lock table drizzle.__drizzle_migrations in access exclusive mode'))
        const started = Date.now()
        const res = await callWith({ DATABASE_URL: stalledUrl, ...bindings }, '/healthz')
        answer = {
          status: res.status,
          retryAfter: res.headers.get('retry-after'),
          body: await res.json(),
          ms: Date.now() - started,
        }
      }),
    )
    if (answer === undefined) {
      throw new Error('no /healthz answer')
    }
    return answer
  }

  it('answers 503 database_timeout at its own deadline, not at a longer DB_TIMEOUT_MS', async () => {
    const answer = await healthzWhileStalled({ DB_TIMEOUT_MS: '30000' })
    expect(answer.status, JSON.stringify(answer.body)).toBe(503)
    expect(answer.retryAfter).toBe('5')
    expect(answer.body).toMatchObject({
      status: 'unavailable',
      reasons: ['database_timeout'],
      database: { reachable: false },
    })
    expect(answer.ms).toBeGreaterThanOrEqual(HEALTHZ_DB_TIMEOUT_MS - 50)
    expect(answer.ms).toBeLessThan(HEALTHZ_DB_TIMEOUT_MS + 1_500)
  })

  it('keeps to DB_TIMEOUT_MS when that is the shorter one', async () => {
    const answer = await healthzWhileStalled({ DB_TIMEOUT_MS: '400' })
    expect(answer.status, JSON.stringify(answer.body)).toBe(503)
    expect(answer.body).toMatchObject({ reasons: ['database_timeout'] })
    expect(answer.ms).toBeLessThan(HEALTHZ_DB_TIMEOUT_MS)
  })
})

describe.skipIf(!realPostgres)('a terminated backend', () => {
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
