import { AsyncLocalStorage } from 'node:async_hooks'
import { sql } from 'drizzle-orm'
import { createDb, queryRows, withRequestScope } from '../../db/client'
import { createApp } from '../../functions/app'
import type { Bindings } from '../../functions/env'
import { scheduled } from '../../scheduled'

/**
 * Bench-only Worker: the real app plus the floors the bench compares it with. Never deployed:
 * `/__bench/*` exists only here (test/bench/wrangler.bench.toml points at this file).
 *
 * - `/__bench/noop`: the runtime floor (no Hono, no config, nothing).
 * - `/__bench/select1-http`: `select 1` over the SQL-over-HTTP driver, one round trip.
 * - `/__bench/select1-raw`: the same `select 1` posted to the gateway with the bare platform
 *   fetch (no driver): separates workerd's outbound fetch from the driver's own cost.
 * - `/__bench/commit1-http`: one statement over the HTTP driver that writes WAL (a transactional
 *   logical message, no table) so its commit waits for the WAL flush: the floor of a writing path.
 * - `/__bench/select1-pool`: `select 1` in a transaction on a per-request WebSocket Pool,
 *   what any handler that opens a Pool pays (connection start-up and authentication).
 *
 * A request carrying `x-bench-db-delay-ms: N` has every SQL-over-HTTP answer held back N ms
 * inside the Worker. Its latency then grows by N per round trip on the critical path, while
 * writes left to `waitUntil` add nothing: that is how the bench tells the two apart.
 */
const app = createApp()

const DB_DELAY_HEADER = 'x-bench-db-delay-ms'
const MAX_DB_DELAY_MS = 1_000
const dbDelay = new AsyncLocalStorage<number>()
const platformFetch = globalThis.fetch.bind(globalThis)

// The driver calls the global fetch for each SQL-over-HTTP round trip (db/client.ts).
globalThis.fetch = async function fetchWithBenchDelay(input, init) {
  const response = await platformFetch(input, init)
  const delayMs = dbDelay.getStore()
  if (delayMs !== undefined && new URL(input instanceof Request ? input.url : input).pathname === '/sql') {
    await new Promise((resolve) => setTimeout(resolve, delayMs))
  }
  return response
}

const REQUEST_ID_HEADER = 'x-request-id'

// A statement that writes WAL without touching a table (a transactional logical message): its
// commit waits for the WAL flush, as every writing hot statement's does.
const DURABLE_COMMIT = sql`select pg_logical_emit_message(true, 'portcullis-bench', '') is not null as one`

async function selectOne(
  env: Bindings,
  ctx: ExecutionContext,
  driver: 'http' | 'pool' | 'commit',
): Promise<Response> {
  const databaseUrl = env.DATABASE_URL
  if (databaseUrl === undefined) {
    return Response.json({ error: 'DATABASE_URL is not set' }, { status: 500 })
  }
  const requestId = crypto.randomUUID()
  const db = createDb({
    databaseUrl,
    gatewayUrl: env.DB_GATEWAY_URL,
    waitUntil: (promise) => ctx.waitUntil(promise),
  })
  const rows = await withRequestScope(requestId, () =>
    driver === 'pool'
      ? db.transaction((tx) => queryRows(tx, sql`select 1 as one`))
      : queryRows(db.http, driver === 'commit' ? DURABLE_COMMIT : sql`select 1 as one`),
  )
  return Response.json({ rows: rows.length }, { headers: { [REQUEST_ID_HEADER]: requestId } })
}

// `select 1` posted to the gateway's SQL-over-HTTP endpoint with the platform fetch alone (no
// driver, no drizzle, no deadline wrapper): what workerd's outbound fetch costs by itself.
async function rawSelectOne(env: Bindings): Promise<Response> {
  if (env.DATABASE_URL === undefined || env.DB_GATEWAY_URL === undefined) {
    return Response.json({ error: 'DATABASE_URL and DB_GATEWAY_URL must be set' }, { status: 500 })
  }
  const res = await platformFetch(`${new URL(env.DB_GATEWAY_URL).origin}/sql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'neon-connection-string': env.DATABASE_URL },
    body: JSON.stringify({ query: 'select 1 as one', params: [] }),
  })
  const text = await res.text()
  return new Response(text, { status: res.status, headers: { 'content-type': 'application/json' } })
}

function route(request: Request, env: Bindings, ctx: ExecutionContext): Promise<Response> | Response {
  switch (new URL(request.url).pathname) {
    case '/__bench/noop':
      return new Response('ok', { headers: { 'content-type': 'text/plain' } })
    case '/__bench/select1-http':
      return selectOne(env, ctx, 'http')
    case '/__bench/select1-pool':
      return selectOne(env, ctx, 'pool')
    case '/__bench/commit1-http':
      return selectOne(env, ctx, 'commit')
    case '/__bench/select1-raw':
      return rawSelectOne(env)
    default:
      return app.fetch(request, env, ctx)
  }
}

async function fetchBench(request: Request, env: Bindings, ctx: ExecutionContext): Promise<Response> {
  const delayMs = Number(request.headers.get(DB_DELAY_HEADER) ?? 'NaN')
  if (Number.isInteger(delayMs) && delayMs > 0 && delayMs <= MAX_DB_DELAY_MS) {
    return dbDelay.run(delayMs, () => route(request, env, ctx))
  }
  return route(request, env, ctx)
}

// biome-ignore lint/style/noDefaultExport: the Workers runtime reads `fetch` and `scheduled` from the module's default.
export default {
  fetch: fetchBench,
  scheduled,
} satisfies ExportedHandler<Bindings>
