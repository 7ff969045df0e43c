import { AsyncLocalStorage } from 'node:async_hooks'
import { neon, neonConfig, Pool, type PoolClient } from '@neondatabase/serverless'
import type { SQL } from 'drizzle-orm'
import { drizzle as drizzleHttp, type NeonHttpDatabase } from 'drizzle-orm/neon-http'
import { drizzle as drizzleWs } from 'drizzle-orm/neon-serverless'
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import { DatabaseUnavailableError, isDatabaseUnavailable, sqlState } from './errors'
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
  /**
   * Deadline of every database call in milliseconds (a statement, a batch, a whole interactive
   * transaction); past it the call fails with DatabaseUnavailableError (reason `timeout`).
   * Defaults to DEFAULT_DB_TIMEOUT_MS.
   */
  timeoutMs?: number | undefined
}

/** Deadline of a database call when the configuration names none. */
export const DEFAULT_DB_TIMEOUT_MS = 5_000

export interface Db {
  /** Single statements and non-interactive batches (one HTTP round trip each). */
  readonly http: HttpDb
  /**
   * Runs `work` in an interactive transaction on a WebSocket Pool opened for this call and
   * closed through `waitUntil` afterwards. Use only where atomicity needs a read between writes.
   */
  transaction<T>(work: (tx: Executor) => Promise<T>): Promise<T>
  /** Keeps the Worker alive for database work the response does not wait for. */
  defer(work: Promise<unknown>): void
}

const REQUEST_ID_HEADER = 'x-portcullis-request-id'
const requestScope = new AsyncLocalStorage<string>()
const deadlineScope = new AsyncLocalStorage<number>()

/**
 * Runs `work` with `requestId` attached to every SQL-over-HTTP call it makes, so the local
 * gateway can count round trips per request. A no-op cost in production.
 */
export function withRequestScope<T>(requestId: string, work: () => T): T {
  return requestScope.run(requestId, work)
}

/**
 * Runs `work` with a shorter (or longer) deadline for the database calls it makes, e.g. the
 * health check's own short one. Nested calls keep the innermost deadline.
 */
export function withDatabaseDeadline<T>(timeoutMs: number, work: () => PromiseLike<T> | T): Promise<T> {
  // Awaited inside the scope: drizzle's queries are lazy and only run once awaited.
  return deadlineScope.run(timeoutMs, async () => await work())
}

let configuredGateway: string | undefined | null = null
// The SQL-over-HTTP fetch is module-global in the driver, so its default deadline is too
// (one configuration per isolate); withDatabaseDeadline overrides it per call.
let defaultTimeoutMs = DEFAULT_DB_TIMEOUT_MS

function currentTimeoutMs(): number {
  return deadlineScope.getStore() ?? defaultTimeoutMs
}

// neonConfig is module-global in the driver: set it once per isolate for the gateway in use.
function configureDriver(gatewayUrl: string | undefined, timeoutMs: number): void {
  defaultTimeoutMs = timeoutMs
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

/**
 * What the driver reads of an SQL-over-HTTP answer (`ok`, `status`, then `json()` or `text()`):
 * the body already read in full, so the driver's own read can neither stall nor fail.
 */
interface ReadAnswer {
  ok: boolean
  status: number
  text(): Promise<string>
  json(): Promise<unknown>
}

// Network failures, 5xx answers and calls past their deadline become DatabaseUnavailableError
// (the driver keeps it as `sourceError`), so the edge can answer 503 rather than 500 or hang.
async function fetchThroughGateway(input: string | URL | Request, init?: RequestInit): Promise<ReadAnswer> {
  const requestId = requestScope.getStore()
  const headers =
    requestId !== undefined && configuredGateway ? withRequestId(init?.headers, requestId) : init?.headers
  const timeoutMs = currentTimeoutMs()
  const deadline = AbortSignal.timeout(timeoutMs)
  const signal = init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline
  let response: Response
  try {
    response = await fetch(input, { ...init, headers, signal })
  } catch (cause) {
    throw deadline.aborted
      ? new DatabaseUnavailableError(`database call exceeded its ${timeoutMs} ms deadline`, {
          cause,
          reason: 'timeout',
        })
      : new DatabaseUnavailableError('database unreachable', { cause })
  }
  if (response.status >= 500) {
    await response.body?.cancel().catch(() => {})
    throw new DatabaseUnavailableError(`database answered HTTP ${response.status}`)
  }
  // Read the body here, under the same deadline, so a stall mid-body (or the deadline firing
  // while the driver reads it) surfaces as DatabaseUnavailableError, never as a bare
  // TimeoutError that would render as a 500.
  let body: string
  try {
    body = await response.text()
  } catch (cause) {
    throw deadline.aborted
      ? new DatabaseUnavailableError(`database call exceeded its ${timeoutMs} ms deadline`, {
          cause,
          reason: 'timeout',
        })
      : new DatabaseUnavailableError('database connection lost mid-answer', { cause })
  }
  // The text itself rather than a second Response around it: building one per statement was a
  // few percent of the Worker's CPU on every hot path.
  const { ok, status } = response
  return {
    ok,
    status,
    text: async () => body,
    json: async () => JSON.parse(body) as unknown,
  }
}

// The driver sends its headers as a plain object; a copy with the id spares a Headers object.
function withRequestId(headers: HeadersInit | undefined, requestId: string): HeadersInit {
  if (headers === undefined || headers instanceof Headers || Array.isArray(headers)) {
    const copy = new Headers(headers)
    copy.set(REQUEST_ID_HEADER, requestId)
    return copy
  }
  return { ...headers, [REQUEST_ID_HEADER]: requestId }
}

// One SQL-over-HTTP database per database URL per isolate. drizzle() walks the whole schema to
// build its relational config every time it is called: per request that was about a third of
// the Worker's own CPU on an API-key verify. The handle holds no request state (the request id
// and the deadline reach the fetch through AsyncLocalStorage), so requests can share it.
const MAX_HTTP_DBS = 8
const httpDbs = new Map<string, HttpDb>()

function httpDbFor(databaseUrl: string): HttpDb {
  let http = httpDbs.get(databaseUrl)
  if (http === undefined) {
    http = drizzleHttp({ client: neon(databaseUrl), schema })
    httpDbs.set(databaseUrl, http)
    if (httpDbs.size > MAX_HTTP_DBS) {
      const oldest = httpDbs.keys().next()
      if (oldest.done !== true) {
        httpDbs.delete(oldest.value)
      }
    }
  }
  return http
}

/** Builds the request's database handle. Cheap: nothing connects until a query runs. */
export function createDb(options: DbOptions): Db {
  configureDriver(options.gatewayUrl, options.timeoutMs ?? DEFAULT_DB_TIMEOUT_MS)
  const http = httpDbFor(options.databaseUrl)
  return {
    http,
    defer: (work) => options.waitUntil(work),
    async transaction(work) {
      const timeoutMs = currentTimeoutMs()
      const pool = new Pool({
        connectionString: options.databaseUrl,
        max: 1,
        connectionTimeoutMillis: timeoutMs,
      })
      // A Pool emits 'error' for a broken idle client; without a listener that would crash.
      pool.on('error', () => {})
      let client: PoolClient | undefined
      let timer: ReturnType<typeof setTimeout> | undefined
      let timedOut = false
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          timedOut = true
          reject(
            new DatabaseUnavailableError(`database transaction exceeded its ${timeoutMs} ms deadline`, {
              reason: 'timeout',
            }),
          )
        }, timeoutMs)
      })
      let failure: unknown
      try {
        // Anything that goes wrong before the session exists is the database's fault, whatever
        // SQLSTATE it carries (55000 not accepting connections, 53300 too many connections).
        const connecting = pool.connect().catch((cause: unknown) => {
          throw cause instanceof DatabaseUnavailableError
            ? cause
            : new DatabaseUnavailableError('database connection failed', { cause })
        })
        // Connected only after the deadline passed: nobody will use or release this session.
        connecting.then(
          (late) => {
            if (timedOut && client === undefined) {
              late.release(true)
            }
          },
          () => {},
        )
        client = await Promise.race([connecting, expired])
        const db = drizzleWs({ client, schema })
        return await Promise.race([db.transaction(async (tx) => work(tx)), expired])
      } catch (error) {
        failure = asUnavailableWhenConnectionFailed(error)
        throw failure
      } finally {
        clearTimeout(timer)
        // A session that failed for the database's sake (or ran out of time mid-transaction) is
        // destroyed, which makes Postgres roll back whatever the transaction had written.
        client?.release(isDatabaseUnavailable(failure) ? true : undefined)
        options.waitUntil(pool.end().catch(() => {}))
      }
    },
  }
}

function asUnavailableWhenConnectionFailed(error: unknown): unknown {
  if (isDatabaseUnavailable(error)) {
    return error instanceof DatabaseUnavailableError
      ? error
      : new DatabaseUnavailableError('database connection failed', { cause: error })
  }
  // The WebSocket driver reports a lost connection ("Network connection lost", "Connection
  // terminated unexpectedly") without a SQLSTATE; statements Postgres rejected carry one.
  if (
    error instanceof Error &&
    sqlState(error) === undefined &&
    /connect|WebSocket|socket|terminated|timeout|network/i.test(error.message)
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
