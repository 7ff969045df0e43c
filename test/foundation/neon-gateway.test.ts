import { env } from 'cloudflare:test'
import { neon } from '@neondatabase/serverless'
import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { createDb, queryRows } from '../../db/client'
import { sqlState } from '../../db/errors'
import { testDb, unique } from '../helpers/db'
import { call } from '../helpers/worker'

// The Worker's only way to Postgres is the official Neon driver; locally it goes through our
// gateway. These run the driver inside workerd against that gateway.
function driver() {
  createDb({ databaseUrl: env.DATABASE_URL, gatewayUrl: env.DB_GATEWAY_URL, waitUntil: () => {} })
  return neon(env.DATABASE_URL)
}

describe('SQL over HTTP through the gateway', () => {
  it('round-trips timestamptz, jsonb, arrays, bigint, uuid, boolean and NULL', async () => {
    const sqlFn = driver()
    const [row] = await sqlFn.query(
      `select '2026-01-02T03:04:05.678Z'::timestamptz as at, '{"a":[1,"x"],"b":null}'::jsonb as doc,
              array['a','b,c',null]::text[] as list, 9007199254740993::bigint as big,
              '7f2a4e6c-1d1b-4c1f-9e0b-1a2b3c4d5e6f'::uuid as id, true as yes, null::text as nothing,
              $1::text as param`,
      ["O'Brien; drop table users; --"],
    )
    // drizzle's neon-http driver registers identity parsers for timestamps (it maps them
    // itself), so raw queries see Postgres's text form of the same instant.
    expect(new Date(String(row?.at)).toISOString()).toBe('2026-01-02T03:04:05.678Z')
    expect(row?.doc).toEqual({ a: [1, 'x'], b: null })
    expect(row?.list).toEqual(['a', 'b,c', null])
    expect(row?.big).toBe('9007199254740993')
    expect(row?.id).toBe('7f2a4e6c-1d1b-4c1f-9e0b-1a2b3c4d5e6f')
    expect(row?.yes).toBe(true)
    expect(row?.nothing).toBeNull()
    expect(row?.param).toBe("O'Brien; drop table users; --")
  })

  it('surfaces Postgres errors with their SQLSTATE', async () => {
    const sqlFn = driver()
    const missing = await sqlFn.query('select * from no_such_table').catch((e: unknown) => e)
    expect(sqlState(missing)).toBe('42P01')
    const syntax = await sqlFn.query('selec 1').catch((e: unknown) => e)
    expect(sqlState(syntax)).toBe('42601')
  })

  it('rolls a batch back entirely when one statement fails', async () => {
    const sqlFn = driver()
    const slug = unique('batch')
    const failed = await sqlFn
      .transaction([
        sqlFn.query(`insert into tenants (slug, name) values ($1, 'Batch')`, [slug]),
        sqlFn.query(`insert into tenants (slug, name) values ($1, 'Again')`, [slug]),
      ])
      .catch((e: unknown) => e)
    expect(sqlState(failed)).toBe('23505')
    const rows = await sqlFn.query('select 1 from tenants where slug = $1', [slug])
    expect(rows).toHaveLength(0)
  })

  it('commits a batch that succeeds', async () => {
    const sqlFn = driver()
    const slug = unique('batch')
    await sqlFn.transaction([
      sqlFn.query(`insert into tenants (slug, name) values ($1, 'Batch')`, [slug]),
      sqlFn.query(`update tenants set name = 'Renamed' where slug = $1`, [slug]),
    ])
    const rows = await sqlFn.query('select name from tenants where slug = $1', [slug])
    expect(rows).toEqual([{ name: 'Renamed' }])
  })
})

describe('interactive transactions over the WebSocket Pool', () => {
  const db = () =>
    createDb({ databaseUrl: env.DATABASE_URL, gatewayUrl: env.DB_GATEWAY_URL, waitUntil: () => {} })

  it('commits what the transaction wrote', async () => {
    const slug = unique('tx')
    await db().transaction(async (tx) => {
      await tx.execute(sql`insert into tenants (slug, name) values (${slug}, 'Tx')`)
      const rows = await queryRows<{ n: number }>(
        tx,
        sql`select count(*)::int as n from tenants where slug = ${slug}`,
      )
      expect(rows[0]?.n).toBe(1)
    })
    expect(await queryRows(testDb(), sql`select 1 from tenants where slug = ${slug}`)).toHaveLength(1)
  })

  it('leaves nothing behind when the work throws', async () => {
    const slug = unique('tx')
    const failure = await db()
      .transaction(async (tx) => {
        await tx.execute(sql`insert into tenants (slug, name) values (${slug}, 'Tx')`)
        throw new Error('abort mid-transaction')
      })
      .catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(Error)
    expect(await queryRows(testDb(), sql`select 1 from tenants where slug = ${slug}`)).toHaveLength(0)
  })
})

describe('round-trip counter', () => {
  it('counts exactly the statements a request runs', async () => {
    // The first /healthz of an isolate also loads the signing-key ring (cached per isolate
    // after that); count a warm one.
    expect((await call('/healthz')).status).toBe(200)
    const res = await call('/healthz')
    expect(res.status).toBe(200)
    const requestId = res.headers.get('x-request-id')
    const stats = (await (await fetch(`${env.DB_GATEWAY_URL}/__stats?request_id=${requestId}`)).json()) as {
      httpRequests: number
      httpQueries: number
    }
    // A warm /healthz reads the migration table once; the key ring comes from the isolate's cache.
    expect(stats).toMatchObject({ httpRequests: 1, httpQueries: 1 })
  })

  it('counts a batch as one request and one query per statement', async () => {
    const requestId = crypto.randomUUID()
    const sqlFn = driver()
    // Tag the batch the way the Worker tags its requests.
    const { withRequestScope } = await import('../../db/client')
    await withRequestScope(requestId, () =>
      sqlFn.transaction([sqlFn.query('select 1'), sqlFn.query('select 2')]),
    )
    const stats = (await (await fetch(`${env.DB_GATEWAY_URL}/__stats?request_id=${requestId}`)).json()) as {
      httpRequests: number
      httpQueries: number
    }
    expect(stats).toMatchObject({ httpRequests: 1, httpQueries: 2 })
  })
})
