import { AsyncLocalStorage } from 'node:async_hooks'
import { neon, neonConfig, Pool } from '@neondatabase/serverless'
import type { SQL } from 'drizzle-orm'
import { drizzle as drizzleHttp, type NeonHttpDatabase } from 'drizzle-orm/neon-http'
import { drizzle as drizzleWs } from 'drizzle-orm/neon-serverless'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { DatabaseUnavailableError, sqlState } from './errors'
import * as schema from './schema'

export type Schema = typeof schema

/** The SQL-over-HTTP database: one round trip per statement or per `batch([...])`. */
export type HttpDb = NeonHttpDatabase<Schema>

/**
 * What query functions take first: the HTTP database or an interactive transaction. Query
 * functions written against it run unchanged on either, so they join a caller's transaction.
 */
export type Executor = PgDatabase<PgQueryResultHKT, Schema>

export interface DbOptions {
  databaseUrl: string
  /** Local gateway base URL (development and tests); unset in production, where Neon is reached directly. */
  gatewayUrl?: string | undefined
  /** Keeps the Worker alive for work the response does not wait for (closing the Pool). */
  waitUntil(promise: Promise<unknown>): void
}

export interface Db {
  /** Single statements and non-interactive batches (one HTTP round trip each). */
  readonly http: HttpDb
  /**
   * Runs `work` in an interactive transaction on a WebSocket Pool opened for this call and
   * closed through `waitUntil` afterwards. Use only where atomicity needs a read between writes.
   */
  transaction<T>(work: (tx: Executor) => Promise<T>): Promise<T>
}

const REQUEST_ID_HEADER = 'x-portcullis-request-id'
const requestScope = new AsyncLocalStorage<string>()

/**
 * Runs `work` with `requestId` attached to every SQL-over-HTTP call it makes, so the local
 * gateway can count round trips per request. A no-op cost in production.
 */
export function withRequestScope<T>(requestId: string, work: () => T): T {
  return requestScope.run(requestId, work)
}

let configuredGateway: string | undefined | null = null

// neonConfig is module-global in the driver: set it once per isolate for the gateway in use.
function configureDriver(gatewayUrl: string | undefined): void {
  if (configuredGateway === gatewayUrl) {
    return
  }
  configuredGateway = gatewayUrl
  neonConfig.fetchFunction = fetchThroughGateway
  if (gatewayUrl === undefined) {
    return
  }
  const gateway = new URL(gatewayUrl)
  neonConfig.fetchEndpoint = () => `${gateway.origin}/sql`
  neonConfig.wsProxy = (host, port) => `${gateway.host}/v2?address=${host}:${port}`
  neonConfig.useSecureWebSocket = gateway.protocol === 'https:'
  neonConfig.pipelineTLS = false
  neonConfig.pipelineConnect = false
}

// Network failures and 5xx answers become DatabaseUnavailableError (the driver keeps it as
// `sourceError`), so the edge can answer 503 rather than 500.
async function fetchThroughGateway(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const requestId = requestScope.getStore()
  const headers = new Headers(init?.headers)
  if (requestId !== undefined && configuredGateway) {
    headers.set(REQUEST_ID_HEADER, requestId)
  }
  let response: Response
  try {
    response = await fetch(input, { ...init, headers })
  } catch (cause) {
    throw new DatabaseUnavailableError('database unreachable', { cause })
  }
  if (response.status >= 500) {
    await response.body?.cancel()
    throw new DatabaseUnavailableError(`database answered HTTP ${response.status}`)
  }
  return response
}

/** Builds the request's database handle. Cheap: nothing connects until a query runs. */
export function createDb(options: DbOptions): Db {
  configureDriver(options.gatewayUrl)
  const http = drizzleHttp({ client: neon(options.databaseUrl), schema })
  return {
    http,
    async transaction(work) {
      const pool = new Pool({ connectionString: options.databaseUrl, max: 1 })
      // A Pool emits 'error' for a broken idle client; without a listener that would crash.
      pool.on('error', () => {})
      try {
        const db = drizzleWs({ client: pool, schema })
        return await db.transaction(async (tx) => work(tx))
      } catch (error) {
        throw asUnavailableWhenConnectionFailed(error)
      } finally {
        options.waitUntil(pool.end().catch(() => {}))
      }
    },
  }
}

function asUnavailableWhenConnectionFailed(error: unknown): unknown {
  // Statements Postgres rejected carry a SQLSTATE; failures to connect or stay connected do not.
  if (
    error instanceof Error &&
    sqlState(error) === undefined &&
    /connect|WebSocket|socket|terminated|timeout/i.test(error.message)
  ) {
    return new DatabaseUnavailableError('database connection failed', { cause: error })
  }
  return error
}

/** Raw SQL through either executor; both drivers answer `{ rows }`. One round trip. */
export async function queryRows<T extends Record<string, unknown>>(x: Executor, query: SQL): Promise<T[]> {
  const result = (await x.execute(query)) as { rows: T[] }
  return result.rows
}
