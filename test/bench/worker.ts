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

async function selectOne(env: Bindings, ctx: ExecutionContext, driver: 'http' | 'pool'): Promise<Response> {
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
    driver === 'http'
      ? queryRows(db.http, sql`select 1 as one`)
      : db.transaction((tx) => queryRows(tx, sql`select 1 as one`)),
  )
  return Response.json({ rows: rows.length }, { headers: { [REQUEST_ID_HEADER]: requestId } })
}

function route(request: Request, env: Bindings, ctx: ExecutionContext): Promise<Response> | Response {
  switch (new URL(request.url).pathname) {
    case '/__bench/noop':
      return new Response('ok', { headers: { 'content-type': 'text/plain' } })
    case '/__bench/select1-http':
      return selectOne(env, ctx, 'http')
    case '/__bench/select1-pool':
      return selectOne(env, ctx, 'pool')
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
