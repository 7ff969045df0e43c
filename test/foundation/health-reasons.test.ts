import { env } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { beforeAll, describe, expect, it } from 'vitest'
import { createDb, queryRows } from '../../db/client'
import { HEALTHZ_DB_TIMEOUT_MS } from '../../functions/health/healthz'
import { testDb } from '../helpers/db'
import { callWith } from '../helpers/worker'

/**
 * Issue 12: `/healthz` gives a reason code for every failure. database_unreachable and
 * config_invalid are tested in failure-modes.test.ts and database-faults.test.ts; these are the
 * two a database that answers can cause: no migrations applied, and a check past its deadline.
 */
describe('/healthz against a database that answers but is not ready', () => {
  // A database of this file's own beside the test database, never migrated.
  const base = new URL(env.DATABASE_URL ?? '')
  const name = `${base.pathname.slice(1)}_unmigrated`
  const url = Object.assign(new URL(base), { pathname: `/${name}` }).toString()

  beforeAll(async () => {
    const exists = await queryRows(testDb(), sql`select 1 from pg_database where datname = ${name}`)
    if (exists.length === 0) {
      await testDb()
        .execute(sql.raw(`create database "${name}"`))
        .catch((error: unknown) => {
          // Another run created it in between (42P04 duplicate_database).
          if (!String((error as { code?: string }).code).startsWith('42P04')) {
            throw error
          }
        })
    }
  })

  it('names migrations_pending: reachable, degraded, nothing applied', async () => {
    const res = await callWith({ DATABASE_URL: url }, '/healthz')
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toMatchObject({
      status: 'degraded',
      reasons: ['migrations_pending'],
      database: { reachable: true, migration: { applied: null, up_to_date: false } },
      signing_keys: null,
    })
  })

  it('names database_timeout when the check waits past its deadline (a lock held elsewhere)', async () => {
    const db = createDb({ databaseUrl: url, gatewayUrl: env.DB_GATEWAY_URL, waitUntil: () => {} })
    await db.http.execute(sql`create schema if not exists drizzle`)
    await db.http.execute(
      sql`create table if not exists drizzle.__drizzle_migrations (id serial primary key, hash text not null, created_at bigint)`,
    )
    let elapsed = 0
    const res = await db.transaction(async (tx) => {
      // Held until the health check has answered: its read of the journal waits on it.
      await tx.execute(sql`lock table drizzle.__drizzle_migrations in access exclusive mode`)
      const started = Date.now()
      const answer = await callWith({ DATABASE_URL: url }, '/healthz')
      elapsed = Date.now() - started
      return answer
    })
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({
      status: 'unavailable',
      reasons: ['database_timeout'],
      database: { reachable: false },
    })
    expect(elapsed).toBeGreaterThanOrEqual(HEALTHZ_DB_TIMEOUT_MS - 100)
    expect(elapsed).toBeLessThan(HEALTHZ_DB_TIMEOUT_MS + 1_500)
  })
})
