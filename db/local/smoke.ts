// Checks the local gateway with the official driver, the way the Worker uses it, in front
// of the real Postgres (TEST_DATABASE_URL or 127.0.0.1:5432/test) and the embedded one.
// Run: npx tsx db/local/smoke.ts
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NeonDbError, neon, neonConfig, Pool } from '@neondatabase/serverless'
import { WebSocket } from 'ws'
import { startEmbeddedPostgres } from './embedded'
import { type Gateway, startGateway } from './gateway'
import { launchLocalDatabase } from './launch'

const REAL_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

let failures = 0

async function check(name: string, run: () => Promise<void>): Promise<void> {
  try {
    await run()
    console.log(`PASS ${name}`)
  } catch (error) {
    failures += 1
    console.log(`FAIL ${name}: ${error instanceof Error ? error.message : String(error)}`)
  }
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) {
    throw new Error(`${what}: expected ${e}, got ${a}`)
  }
}

async function expectDbError(run: () => Promise<unknown>, code: string): Promise<NeonDbError> {
  try {
    await run()
  } catch (error) {
    if (!(error instanceof NeonDbError)) {
      throw new Error(`expected NeonDbError ${code}, got ${String(error)}`)
    }
    expectEqual(error.code, code, 'error code')
    return error
  }
  throw new Error(`expected NeonDbError ${code}, but the query succeeded`)
}

function pointDriverAt(gateway: Gateway): void {
  neonConfig.webSocketConstructor = WebSocket
  neonConfig.fetchEndpoint = `${gateway.url}/sql`
  neonConfig.wsProxy = (host, port) => `127.0.0.1:${gateway.port}/v2?address=${host}:${port}`
  neonConfig.useSecureWebSocket = false
  neonConfig.pipelineTLS = false
  neonConfig.pipelineConnect = false
}

async function runSuite(label: string, databaseUrl: string, gateway: Gateway): Promise<void> {
  pointDriverAt(gateway)
  const sql = neon(databaseUrl)
  const table = `smoke_${label}_${process.pid}`

  await check(`${label}: value types round-trip through neon()`, async () => {
    const at = new Date('2024-05-06T07:08:09.123Z')
    const [row] = await sql.query(
      `select $1::timestamptz as at, $2::jsonb as doc, $3::text[] as tags, 9007199254740993::bigint as big,
         $4::uuid as id, true as yes, $5::bytea as bin, null::text as nothing, gen_random_uuid() as fresh`,
      [
        at,
        { a: [1, 'two'], b: null },
        ['x', 'y,z', 'q"uote'],
        'c6b0b0a4-8f1e-4b8a-9a0e-2f0c5f7e7d11',
        Buffer.from([0, 1, 254, 255]),
      ],
    )
    if (row === undefined) {
      throw new Error('no row')
    }
    expectEqual(row.at instanceof Date && row.at.toISOString(), at.toISOString(), 'timestamptz')
    expectEqual(row.doc, { a: [1, 'two'], b: null }, 'jsonb')
    expectEqual(row.tags, ['x', 'y,z', 'q"uote'], 'text[]')
    expectEqual(row.big, '9007199254740993', 'bigint')
    expectEqual(row.id, 'c6b0b0a4-8f1e-4b8a-9a0e-2f0c5f7e7d11', 'uuid')
    expectEqual(row.yes, true, 'boolean')
    expectEqual(Buffer.isBuffer(row.bin) && [...row.bin], [0, 1, 254, 255], 'bytea')
    expectEqual(row.nothing, null, 'null')
    expectEqual(typeof row.fresh === 'string' && /^[0-9a-f-]{36}$/.test(row.fresh), true, 'gen_random_uuid()')
  })

  await check(`${label}: full results carry fields and rowCount`, async () => {
    const result = await sql.query('select 1::int4 as one, $1::text as two', ['b'], { fullResults: true })
    expectEqual(result.rows, [{ one: 1, two: 'b' }], 'rows')
    expectEqual(result.rowCount, 1, 'rowCount')
    expectEqual(result.command, 'SELECT', 'command')
    expectEqual(
      result.fields.map((field) => field.dataTypeID),
      [23, 25],
      'dataTypeIDs',
    )
  })

  await sql.query(`create table if not exists ${table} (id int primary key, note text)`)
  try {
    await check(`${label}: unique violation surfaces as NeonDbError 23505`, async () => {
      await sql.query(`insert into ${table} values (1, 'first')`)
      const error = await expectDbError(() => sql.query(`insert into ${table} values (1, 'again')`), '23505')
      expectEqual(error.constraint, `${table}_pkey`, 'constraint')
    })

    await check(`${label}: syntax error surfaces as NeonDbError 42601`, async () => {
      await expectDbError(() => sql.query('selec 1'), '42601')
    })

    await check(`${label}: transaction() rolls back entirely when the 2nd statement fails`, async () => {
      await expectDbError(
        () =>
          sql.transaction([
            sql.query(`insert into ${table} values (2, 'batched')`),
            sql.query(`insert into ${table} values (1, 'duplicate')`),
          ]),
        '23505',
      )
      const rows = await sql.query(`select id from ${table} where id = 2`)
      expectEqual(rows, [], 'rows after rollback')
    })

    await check(`${label}: transaction() commits and honours isolation/read-only`, async () => {
      const [inserted, counted] = await sql.transaction(
        [
          sql.query(`insert into ${table} values (3, 'ok') returning id`),
          sql.query(`select count(*)::int as n from ${table}`),
        ],
        { isolationLevel: 'Serializable' },
      )
      expectEqual(inserted, [{ id: 3 }], 'insert result')
      expectEqual(counted, [{ n: 2 }], 'count in same transaction')
      await expectDbError(
        () => sql.transaction([sql.query(`insert into ${table} values (4, 'ro')`)], { readOnly: true }),
        '25006',
      )
    })

    await check(`${label}: WebSocket Pool runs an interactive transaction`, async () => {
      const pool = new Pool({ connectionString: databaseUrl })
      try {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query(`insert into ${table} (id, note) values ($1, $2)`, [10, 'in tx'])
          const seen = await client.query(`select note from ${table} where id = $1`, [10])
          expectEqual(seen.rows, [{ note: 'in tx' }], 'row inside transaction')
          await client.query('ROLLBACK')
        } finally {
          client.release()
        }
        const after = await pool.query(`select count(*)::int as n from ${table} where id = 10`)
        expectEqual(after.rows, [{ n: 0 }], 'row after rollback')
      } finally {
        await pool.end()
      }
    })

    await check(`${label}: concurrent HTTP queries and WebSocket sessions`, async () => {
      const pool = new Pool({ connectionString: databaseUrl, max: 5 })
      try {
        const viaHttp = Array.from({ length: 40 }, async (_, i) => {
          const query =
            i % 2 === 0
              ? 'select $1::int as n, $2::text as s'
              : 'select $2::text as s, 7 as seven, $1::int as n'
          const [row] = await sql.query(query, [i, `v${i}`])
          expectEqual([row?.n, row?.s], [i, `v${i}`], `http query ${i}`)
        })
        const viaPool = Array.from({ length: 10 }, async (_, i) => {
          const client = await pool.connect()
          try {
            await client.query('BEGIN')
            await client.query(`insert into ${table} (id, note) values ($1, 'concurrent')`, [100 + i])
            const seen = await client.query(`select count(*)::int as n from ${table} where id = $1`, [
              100 + i,
            ])
            expectEqual(seen.rows, [{ n: 1 }], `ws session ${i}`)
            await client.query(i % 2 === 0 ? 'COMMIT' : 'ROLLBACK')
          } finally {
            client.release()
          }
        })
        await Promise.all([...viaHttp, ...viaPool])
        const [row] = await sql.query(`select count(*)::int as n from ${table} where id >= 100`)
        expectEqual(row?.n, 5, 'committed sessions')
      } finally {
        await pool.end()
      }
    })

    await check(`${label}: stats count requests, statements and WebSocket traffic`, async () => {
      const requestId = `smoke-${label}-${Date.now()}`
      // fetchOptions.headers would replace the driver's own headers, so tag via fetchFunction.
      neonConfig.fetchFunction = (input: string, init: RequestInit) =>
        fetch(input, {
          ...init,
          headers: { ...(init.headers as Record<string, string>), 'x-portcullis-request-id': requestId },
        })
      const before = gateway.stats()
      try {
        await sql.transaction([sql.query('select 1'), sql.query('select 2')])
      } finally {
        neonConfig.fetchFunction = undefined
      }
      expectEqual(
        gateway.stats(requestId),
        { httpRequests: 1, httpQueries: 2, wsConnections: 0, wsClientMessages: 0 },
        'per request',
      )
      const after = gateway.stats()
      expectEqual(
        [after.httpRequests - before.httpRequests, after.httpQueries - before.httpQueries],
        [1, 2],
        'totals delta',
      )
      const overHttp = (await (
        await fetch(`${gateway.url}/__stats?request_id=${requestId}`)
      ).json()) as unknown
      expectEqual(overHttp, gateway.stats(requestId), 'GET /__stats?request_id')

      const pool = new Pool({ connectionString: databaseUrl })
      await pool.query('select 1')
      await pool.end()
      // The driver flushes its last write (Terminate) on a timer after end() resolves.
      await new Promise((resolve) => setTimeout(resolve, 200))
      const withWs = gateway.stats()
      expectEqual(withWs.wsConnections - after.wsConnections, 1, 'wsConnections delta')
      if (withWs.wsClientMessages - after.wsClientMessages < 2) {
        throw new Error('expected client WebSocket messages to be counted')
      }
      const reset = await fetch(`${gateway.url}/__stats/reset`, { method: 'POST' })
      expectEqual(reset.status, 200, 'reset status')
      expectEqual(
        gateway.stats(),
        { httpRequests: 0, httpQueries: 0, wsConnections: 0, wsClientMessages: 0 },
        'after reset',
      )
    })

    await check(`${label}: gateway refuses non-loopback targets and unknown paths`, async () => {
      const refused = await fetch(`${gateway.url}/sql`, {
        method: 'POST',
        headers: { 'Neon-Connection-String': 'postgresql://u:p@db.example.com/neondb' },
        body: JSON.stringify({ query: 'select 1', params: [] }),
      })
      expectEqual(refused.status, 400, 'non-loopback status')
      const body = (await refused.json()) as { message?: unknown }
      expectEqual(typeof body.message, 'string', 'non-loopback message')
      const missing = await fetch(`${gateway.url}/nope`)
      expectEqual(missing.status, 404, 'unknown path status')
    })

    await check(`${label}: unreachable database gives HTTP 503`, async () => {
      const down = neon('postgresql://postgres@127.0.0.1:1/postgres')
      try {
        await down.query('select 1')
      } catch (error) {
        expectEqual(error instanceof Error && /HTTP status 503/.test(error.message), true, String(error))
        return
      }
      throw new Error('query against a closed port succeeded')
    })
  } finally {
    await sql.query(`drop table if exists ${table}`)
  }
}

async function checkPersistence(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'portcullis-smoke-'))
  try {
    await check('embedded: data survives close() and restart on the same dataDir', async () => {
      const first = await launchLocalDatabase({ dataDir })
      pointDriverAt(first.gateway)
      await neon(first.databaseUrl).query('create table kept (note text)')
      await neon(first.databaseUrl).query(`insert into kept values ('still here')`)
      await first.close()
      const second = await launchLocalDatabase({ dataDir })
      try {
        pointDriverAt(second.gateway)
        const rows = await neon(second.databaseUrl).query('select note from kept')
        expectEqual(rows, [{ note: 'still here' }], 'rows after restart')
      } finally {
        await second.close()
      }
    })
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function checkStalledSession(): Promise<void> {
  await check('embedded: a session idle in a transaction is cut off when others wait', async () => {
    const database = await startEmbeddedPostgres({ idleInTransactionTimeoutMs: 1_000 })
    try {
      const gateway = await startGateway({})
      try {
        pointDriverAt(gateway)
        const pool = new Pool({ connectionString: database.connectionString })
        pool.on('error', () => {})
        const holder = await pool.connect()
        holder.on('error', () => {})
        await holder.query('BEGIN')
        const [row] = await neon(database.connectionString).query('select 42 as answer')
        expectEqual(row?.answer, 42, 'query after the stalled session was cut off')
        holder.release(true)
        await pool.end()
      } finally {
        await gateway.close()
      }
    } finally {
      await database.close()
    }
  })
}

// pglite-socket's own queue interleaves sessions message by message; a Parse sent apart
// from its Bind must still get its own statement's result.
async function checkSplitExtendedExchange(): Promise<void> {
  await check('embedded: a split Parse/Bind exchange is not interleaved with another session', async () => {
    const database = await startEmbeddedPostgres({})
    const { port } = database
    const a = await openRawSession(port)
    const b = await openRawSession(port)
    try {
      a.socket.write(wireMessage('P', '\0', 'select 111 as a\0', [0, 0]))
      await new Promise((resolve) => setTimeout(resolve, 50))
      const bDone = b.exchange([wireMessage('P', '\0', 'select 222 as b\0', [0, 0]), ...bindExecuteSync()])
      await new Promise((resolve) => setTimeout(resolve, 50))
      const aText = await a.exchange(bindExecuteSync())
      const bText = await bDone
      expectEqual(
        [aText.includes('111'), bText.includes('222')],
        [true, true],
        'each session saw its own row',
      )
    } finally {
      a.socket.destroy()
      b.socket.destroy()
      await database.close()
    }
  })
}

function wireMessage(type: string, ...parts: (string | number[])[]): Buffer {
  const body = Buffer.concat(
    parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part))),
  )
  const header = Buffer.alloc(5)
  header.write(type, 0, 'latin1')
  header.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([header, body])
}

function bindExecuteSync(): Buffer[] {
  return [
    wireMessage('B', '\0\0', [0, 0, 0, 0, 0, 0]),
    wireMessage('E', '\0', [0, 0, 0, 0]),
    wireMessage('S'),
  ]
}

const READY_FOR_QUERY = 'Z\u0000\u0000\u0000\u0005'
const READY_STATUSES = ['I', 'T', 'E']

async function openRawSession(
  port: number,
): Promise<{ socket: Socket; exchange(messages: Buffer[]): Promise<string> }> {
  const socket = connect({ host: '127.0.0.1', port })
  let received = ''
  let waiter: (() => void) | undefined
  socket.on('data', (data: Buffer) => {
    received += data.toString('latin1')
    waiter?.()
  })
  // ReadyForQuery ('Z', length 5, status) ends each exchange.
  const untilReady = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ReadyForQuery')), 5_000)
      waiter = () => {
        const end = READY_STATUSES.map((status) => received.indexOf(READY_FOR_QUERY + status))
          .filter((index) => index >= 0)
          .reduce((first, index) => Math.min(first, index), Number.POSITIVE_INFINITY)
        if (end !== Number.POSITIVE_INFINITY) {
          clearTimeout(timer)
          const text = received.slice(0, end + 6)
          received = received.slice(end + 6)
          waiter = undefined
          resolve(text)
        }
      }
      waiter()
    })
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0')
  const startup = Buffer.alloc(8)
  startup.writeInt32BE(8 + params.length, 0)
  startup.writeInt32BE(196_608, 4)
  socket.write(Buffer.concat([startup, params]))
  await untilReady()
  return {
    socket,
    exchange(messages) {
      socket.write(Buffer.concat(messages))
      return untilReady()
    },
  }
}

const real = await launchLocalDatabase({ databaseUrl: REAL_DATABASE_URL, dataDir: '.data' }).catch(
  (error: unknown) => {
    failures += 1
    console.log(`FAIL real Postgres: ${error instanceof Error ? error.message : String(error)}`)
    return undefined
  },
)
if (real !== undefined) {
  try {
    await runSuite('real', real.databaseUrl, real.gateway)
  } finally {
    await real.close()
  }
}

const embeddedDir = await mkdtemp(join(tmpdir(), 'portcullis-smoke-'))
try {
  const embedded = await launchLocalDatabase({ dataDir: embeddedDir })
  try {
    await runSuite('embedded', embedded.databaseUrl, embedded.gateway)
  } finally {
    await embedded.close()
  }
} finally {
  await rm(embeddedDir, { recursive: true, force: true })
}
await checkPersistence()
await checkStalledSession()
await checkSplitExtendedExchange()

console.log(failures === 0 ? 'smoke: all checks passed' : `smoke: ${failures} check(s) failed`)
process.exit(failures === 0 ? 0 : 1)
