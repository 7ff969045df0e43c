import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect as connectTcp, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import pg from 'pg'
import { type RawData, type WebSocket, WebSocketServer } from 'ws'

export interface GatewayOptions {
  /** 0 (the default) lets the OS pick a free port. */
  port?: number
  /** Defaults to 127.0.0.1. */
  host?: string
  /** Size of the pg.Pool kept per distinct connection string (default 20). */
  maxConnectionsPerDatabase?: number
  /**
   * Simulated network round trip to the database, in milliseconds (default 0): added to every
   * SQL-over-HTTP answer and to every WebSocket message towards Postgres, so the bench can show
   * what a deployment far from its database pays per round trip.
   */
  rttMs?: number
  /** Sees every SQL-over-HTTP statement before it runs, with its Worker request id (the bench EXPLAINs them). */
  onStatements?: (requestId: string | undefined, statements: readonly SqlStatement[]) => void
  /**
   * Told, for every SQL-over-HTTP call that Postgres answered, how long the database took
   * (pool checkout, the statements, the commit; not the added round trip), with its request id.
   */
  onDatabaseTime?: (requestId: string | undefined, ms: number) => void
}

export interface GatewayStats {
  httpRequests: number
  httpQueries: number
  wsConnections: number
  wsClientMessages: number
}

export interface Gateway {
  /** http://127.0.0.1:PORT */
  url: string
  port: number
  /** Totals, or the counts recorded under one `x-portcullis-request-id`. */
  stats(requestId?: string): GatewayStats
  resetStats(): void
  close(): Promise<void>
}

const DEFAULT_MAX_CONNECTIONS_PER_DATABASE = 20
const MAX_TRACKED_REQUESTS = 100_000
const MAX_BODY_BYTES = 16 * 1024 * 1024
const POOL_IDLE_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 10_000
// Longer than any client's idle keep-alive (workerd, undici: a few seconds to 60 s), so the
// client always closes an idle connection first and never reuses one the gateway just closed
// (Node's 5 s default answered login bursts with spurious 503s).
const KEEP_ALIVE_TIMEOUT_MS = 65_000
const HEADERS_TIMEOUT_MS = KEEP_ALIVE_TIMEOUT_MS + 1_000
const REQUEST_ID_HEADER = 'x-portcullis-request-id'
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', '[::1]', 'localhost'])

const ISOLATION_LEVELS: Record<string, string> = {
  ReadUncommitted: 'READ UNCOMMITTED',
  ReadCommitted: 'READ COMMITTED',
  RepeatableRead: 'REPEATABLE READ',
  Serializable: 'SERIALIZABLE',
}

// The fields the driver copies from a 400 body onto its NeonDbError.
const ERROR_FIELDS = [
  'severity',
  'code',
  'detail',
  'hint',
  'position',
  'internalPosition',
  'internalQuery',
  'where',
  'schema',
  'table',
  'column',
  'dataType',
  'constraint',
  'file',
  'line',
  'routine',
] as const

// The driver parses every value itself by dataTypeID, so hand it the text Postgres sent.
const rawText = (value: string): string => value
const RAW_TEXT_TYPES = {
  getTypeParser: () => rawText,
} as unknown as pg.CustomTypesConfig

export type SqlParam = string | null

export interface SqlStatement {
  query: string
  params: SqlParam[]
}

interface SqlResult {
  command: string
  rowCount: number | null
  fields: {
    name: string
    dataTypeID: number
    tableID: number
    columnID: number
    dataTypeSize: number
    dataTypeModifier: number
    format: 'text'
  }[]
  rows: (string | null)[][]
  rowAsArray: true
}

type ParsedBody =
  | { kind: 'single'; statement: SqlStatement }
  | { kind: 'batch'; statements: SqlStatement[] }
  | { kind: 'invalid'; message: string }

class GatewayHttpError extends Error {
  readonly status: number
  readonly body: Record<string, unknown>

  constructor(status: number, message: string, body: Record<string, unknown> = {}) {
    super(message)
    this.name = this.constructor.name
    this.status = status
    this.body = { message, ...body }
  }
}

class StatsBook {
  readonly #totals = emptyStats()
  readonly #byRequest = new Map<string, GatewayStats>()

  add(requestId: string | undefined, key: keyof GatewayStats, amount = 1): void {
    this.#totals[key] += amount
    if (requestId === undefined || requestId === '') {
      return
    }
    let entry = this.#byRequest.get(requestId)
    if (entry === undefined) {
      entry = emptyStats()
      this.#byRequest.set(requestId, entry)
      if (this.#byRequest.size > MAX_TRACKED_REQUESTS) {
        const oldest = this.#byRequest.keys().next()
        if (oldest.done !== true) {
          this.#byRequest.delete(oldest.value)
        }
      }
    }
    entry[key] += amount
  }

  get(requestId?: string): GatewayStats {
    const entry = requestId === undefined ? this.#totals : this.#byRequest.get(requestId)
    return { ...(entry ?? emptyStats()) }
  }

  reset(): void {
    Object.assign(this.#totals, emptyStats())
    this.#byRequest.clear()
  }
}

/**
 * Makes a loopback Postgres look like Neon to @neondatabase/serverless: the driver's
 * SQL-over-HTTP protocol on POST /sql (for neon()) and a WebSocket-to-TCP proxy on
 * /v2?address=host:port (for Pool/Client), plus round-trip counters on /__stats.
 */
export async function startGateway(options: GatewayOptions = {}): Promise<Gateway> {
  const host = options.host ?? '127.0.0.1'
  const rttMs = Math.max(0, options.rttMs ?? 0)
  const maxPerDatabase = options.maxConnectionsPerDatabase ?? DEFAULT_MAX_CONNECTIONS_PER_DATABASE
  const pools = new Map<string, pg.Pool>()
  const sockets = new Set<Socket>()
  const stats = new StatsBook()
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })

  function poolFor(connectionString: string): pg.Pool {
    let pool = pools.get(connectionString)
    if (pool === undefined) {
      pool = new pg.Pool({
        connectionString,
        max: maxPerDatabase,
        idleTimeoutMillis: POOL_IDLE_TIMEOUT_MS,
        connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
        types: RAW_TEXT_TYPES,
      })
      // An idle client losing its connection must not crash the process.
      pool.on('error', () => {})
      // Each client is watched from the moment the pool has connected it ('connect' is emitted
      // before the pool drops its own listener and hands the client over). A backend terminated
      // just after its startup sends 57P01 in the packet that ends the startup, so the 'error'
      // came while the client was being handed over, with no listener at all, and took the
      // gateway down (fault suite, terminate backends).
      pool.on('connect', (client) => {
        client.on('error', (error) => {
          if (!connectionErrors.has(client)) {
            connectionErrors.set(client, error)
          }
        })
      })
      pools.set(connectionString, pool)
    }
    return pool
  }

  async function handleSql(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = headerValue(req, REQUEST_ID_HEADER)
    stats.add(requestId, 'httpRequests')
    const connectionString = headerValue(req, 'neon-connection-string')
    if (connectionString === undefined) {
      throw new GatewayHttpError(400, 'missing Neon-Connection-String header')
    }
    assertLoopbackConnectionString(connectionString)
    const parsed = parseSqlBody(await readBody(req))
    if (parsed.kind === 'invalid') {
      throw new GatewayHttpError(400, parsed.message)
    }
    const pool = poolFor(connectionString)
    // A caller that gave up (its deadline passed while this process was frozen or slow) must
    // not have its statements run afterwards: it already answered 503 for them.
    let callerGone = false
    res.once('close', () => {
      callerGone = !res.writableFinished
    })
    const assertCallerWaiting = (): void => {
      if (callerGone || req.socket.destroyed) {
        throw new GatewayHttpError(503, 'the caller went away before the statement ran')
      }
    }
    assertCallerWaiting()
    options.onStatements?.(requestId, parsed.kind === 'single' ? [parsed.statement] : parsed.statements)
    const started = performance.now()
    if (parsed.kind === 'single') {
      stats.add(requestId, 'httpQueries')
      const result = await withClient(pool, (client) => {
        assertCallerWaiting()
        return runStatement(client, parsed.statement)
      })
      options.onDatabaseTime?.(requestId, performance.now() - started)
      await delay(rttMs)
      sendJson(res, 200, result)
      return
    }
    const begin = beginStatement(req)
    stats.add(requestId, 'httpQueries', parsed.statements.length)
    const results = await withClient(pool, async (client, broken) => {
      await client.query(begin)
      try {
        const out: SqlResult[] = []
        for (const statement of parsed.statements) {
          assertCallerWaiting()
          out.push(await runStatement(client, statement))
        }
        assertCallerWaiting()
        await client.query('COMMIT')
        return out
      } catch (error) {
        // On a dead connection there is nothing to roll back: Postgres aborted the transaction.
        if (broken() === undefined) {
          try {
            await client.query('ROLLBACK')
          } catch {
            throw new GatewayHttpError(503, `database unavailable: ${describe(error)}`)
          }
        }
        throw error
      }
    })
    options.onDatabaseTime?.(requestId, performance.now() - started)
    await delay(rttMs)
    sendJson(res, 200, { results })
  }

  function handleStats(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (url.pathname === '/__stats/reset' && req.method === 'POST') {
      stats.reset()
      sendJson(res, 200, stats.get())
      return
    }
    if (url.pathname === '/__stats' && req.method === 'GET') {
      sendJson(res, 200, stats.get(url.searchParams.get('request_id') ?? undefined))
      return
    }
    sendJson(res, 405, { message: 'method not allowed' })
  }

  const server = createServer({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const route =
      url.pathname === '/sql' && req.method === 'POST'
        ? handleSql(req, res)
        : url.pathname === '/__stats' || url.pathname === '/__stats/reset'
          ? Promise.resolve(handleStats(req, res, url))
          : Promise.resolve(sendJson(res, 404, { message: 'not found' }))
    route.catch(async (error: unknown) => {
      const { status, body } = toHttpError(error)
      // A refused statement crosses the network like an answered one: the same delay.
      if (url.pathname === '/sql') {
        await delay(rttMs)
      }
      if (!res.headersSent && !res.destroyed) {
        sendJson(res, status, body)
      } else {
        res.destroy()
      }
    })
  })
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.headersTimeout = HEADERS_TIMEOUT_MS
  // A client that vanishes mid-request must cost a socket, never the process.
  server.on('clientError', (_error, socket) => {
    socket.destroy()
  })

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://gateway')
    const target = url.pathname === '/v2' ? parseAddress(url.searchParams.get('address')) : undefined
    if (target === undefined) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      return
    }
    const requestId = url.searchParams.get('request_id') ?? headerValue(req, REQUEST_ID_HEADER)
    wss.handleUpgrade(req, socket, head, (ws) => {
      stats.add(requestId, 'wsConnections')
      pipeToTcp(ws, target, requestId)
    })
  })

  function pipeToTcp(
    ws: WebSocket,
    target: { host: string; port: number },
    requestId: string | undefined,
  ): void {
    const tcp = connectTcp({ host: target.host, port: target.port })
    tcp.setNoDelay(true)
    sockets.add(tcp)
    const pending: Buffer[] = []
    let connected = false
    tcp.on('connect', () => {
      connected = true
      for (const chunk of pending.splice(0)) {
        tcp.write(chunk)
      }
    })
    tcp.on('data', (data: Buffer) => {
      if (ws.readyState === ws.OPEN) {
        ws.send(data, { binary: true })
      }
    })
    tcp.on('error', () => {
      ws.terminate()
    })
    tcp.on('close', () => {
      sockets.delete(tcp)
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) {
        ws.close()
      }
    })
    const forward = (chunk: Buffer): void => {
      if (connected) {
        tcp.write(chunk)
      } else {
        pending.push(chunk)
      }
    }
    // Each chunk is due rttMs after it arrived, as on a network: chunks sent back to back arrive
    // back to back, one delay later (not one delay each, one after the other). Order is kept:
    // a chunk waits for the one before it, which is never due later.
    let delayed = Promise.resolve()
    ws.on('message', (data: RawData) => {
      stats.add(requestId, 'wsClientMessages')
      const chunk = toBuffer(data)
      if (rttMs === 0) {
        forward(chunk)
        return
      }
      const due = performance.now() + rttMs
      delayed = delayed
        .then(() => delay(due - performance.now()))
        .then(() => {
          if (!tcp.destroyed) {
            forward(chunk)
          }
        })
    })
    ws.on('close', () => {
      tcp.end()
    })
    ws.on('error', () => {
      tcp.destroy()
    })
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host

  let closing: Promise<void> | undefined
  return {
    url: `http://${urlHost}:${port}`,
    port,
    stats: (requestId) => stats.get(requestId),
    resetStats: () => stats.reset(),
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        for (const ws of wss.clients) {
          ws.terminate()
        }
        for (const socket of sockets) {
          socket.destroy()
        }
        wss.close()
        server.closeAllConnections()
        await Promise.all([...pools.values()].map((pool) => pool.end()))
        pools.clear()
        await serverClosed
      })()
      return closing
    },
  }
}

/** The first error each pool client's connection raised (see poolFor): such a client is dead. */
const connectionErrors = new WeakMap<pg.ClientBase, Error>()

/**
 * Runs `work` on a pooled client. A client whose connection broke (pg_terminate_backend, a
 * Postgres restart; recorded by the listener every client gets in poolFor), or whose work
 * failed for any reason but a statement error, is destroyed rather than returned.
 */
async function withClient<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient, broken: () => Error | undefined) => Promise<T>,
): Promise<T> {
  let client: pg.PoolClient
  try {
    client = await pool.connect()
  } catch (error) {
    throw new GatewayHttpError(503, `cannot connect to the database: ${describe(error)}`)
  }
  const broken = (): Error | undefined => connectionErrors.get(client)
  try {
    const result = await work(client, broken)
    client.release(broken())
    return result
  } catch (error) {
    const brokenBy = broken()
    // A destroyed client's late FATAL lands on the listener set in poolFor, never on nothing.
    client.release(brokenBy ?? (isStatementError(error) ? undefined : asError(error)))
    if (brokenBy !== undefined && !(error instanceof GatewayHttpError)) {
      throw new GatewayHttpError(503, `database connection lost: ${describe(brokenBy)}`)
    }
    throw error
  }
}

// A statement Postgres rejected leaves the session usable; a FATAL/PANIC one (57P01 admin
// shutdown, 57P02 crash shutdown) or a connection-class SQLSTATE ends it.
function isStatementError(error: unknown): error is pg.DatabaseError {
  return isDatabaseError(error) && !isServerFailure(error)
}

function isServerFailure(error: pg.DatabaseError): boolean {
  return error.severity === 'FATAL' || error.severity === 'PANIC' || /^(08|53|57)/.test(error.code ?? '')
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

function delay(ms: number): Promise<void> {
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms))
}

async function runStatement(client: pg.PoolClient, statement: SqlStatement): Promise<SqlResult> {
  // Neon runs every HTTP query through the extended protocol, so one statement per query.
  const config: pg.QueryArrayConfig<SqlParam[]> & { queryMode: 'extended' } = {
    text: statement.query,
    values: statement.params,
    rowMode: 'array',
    types: RAW_TEXT_TYPES,
    queryMode: 'extended',
  }
  const result = await client.query<(string | null)[], SqlParam[]>(config)
  return {
    command: result.command,
    rowCount: result.rowCount,
    fields: result.fields.map((field) => ({
      name: field.name,
      dataTypeID: field.dataTypeID,
      tableID: field.tableID,
      columnID: field.columnID,
      dataTypeSize: field.dataTypeSize,
      dataTypeModifier: field.dataTypeModifier,
      format: 'text',
    })),
    rows: result.rows,
    rowAsArray: true,
  }
}

function beginStatement(req: IncomingMessage): string {
  const modes: string[] = []
  const isolation = headerValue(req, 'neon-batch-isolation-level')
  if (isolation !== undefined) {
    const level = ISOLATION_LEVELS[isolation]
    if (level === undefined) {
      throw new GatewayHttpError(400, 'invalid Neon-Batch-Isolation-Level header')
    }
    modes.push(`ISOLATION LEVEL ${level}`)
  }
  const readOnly = headerValue(req, 'neon-batch-read-only')
  if (readOnly !== undefined) {
    modes.push(parseBooleanHeader(readOnly, 'Neon-Batch-Read-Only') ? 'READ ONLY' : 'READ WRITE')
  }
  const deferrable = headerValue(req, 'neon-batch-deferrable')
  if (deferrable !== undefined) {
    modes.push(parseBooleanHeader(deferrable, 'Neon-Batch-Deferrable') ? 'DEFERRABLE' : 'NOT DEFERRABLE')
  }
  return modes.length === 0 ? 'BEGIN' : `BEGIN ${modes.join(', ')}`
}

function parseBooleanHeader(value: string, name: string): boolean {
  if (value === 'true') {
    return true
  }
  if (value === 'false') {
    return false
  }
  throw new GatewayHttpError(400, `invalid ${name} header`)
}

function parseSqlBody(text: string): ParsedBody {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return { kind: 'invalid', message: 'request body is not valid JSON' }
  }
  if (!isRecord(body)) {
    return { kind: 'invalid', message: 'request body must be a JSON object' }
  }
  if (Array.isArray(body.queries)) {
    const statements: SqlStatement[] = []
    for (const item of body.queries) {
      const statement = parseStatement(item)
      if (statement === undefined) {
        return { kind: 'invalid', message: 'each of queries must be {query, params}' }
      }
      statements.push(statement)
    }
    return { kind: 'batch', statements }
  }
  const statement = parseStatement(body)
  return statement === undefined
    ? { kind: 'invalid', message: 'request body must be {query, params} or {queries}' }
    : { kind: 'single', statement }
}

function parseStatement(value: unknown): SqlStatement | undefined {
  if (!isRecord(value) || typeof value.query !== 'string') {
    return undefined
  }
  const raw = value.params ?? []
  if (!Array.isArray(raw)) {
    return undefined
  }
  const params: SqlParam[] = []
  for (const param of raw) {
    if (param === null || typeof param === 'string') {
      params.push(param)
    } else if (typeof param === 'number' || typeof param === 'boolean') {
      params.push(String(param))
    } else {
      return undefined
    }
  }
  return { query: value.query, params }
}

function assertLoopbackConnectionString(connectionString: string): void {
  let url: URL
  try {
    url = new URL(connectionString)
  } catch {
    throw new GatewayHttpError(400, 'Neon-Connection-String is not a valid URL')
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new GatewayHttpError(400, 'Neon-Connection-String must be a postgres:// URL')
  }
  // pg also reads host/hostaddr from the query string; they must not point elsewhere.
  const hosts = [url.hostname, ...url.searchParams.getAll('host'), ...url.searchParams.getAll('hostaddr')]
  if (!hosts.every((name) => LOOPBACK_HOSTS.has(name.toLowerCase()))) {
    throw new GatewayHttpError(400, 'the local gateway only connects to loopback hosts')
  }
}

function parseAddress(address: string | null): { host: string; port: number } | undefined {
  if (address === null) {
    return undefined
  }
  const separator = address.lastIndexOf(':')
  if (separator <= 0) {
    return undefined
  }
  const rawHost = address.slice(0, separator)
  const port = Number(address.slice(separator + 1))
  if (!Number.isInteger(port) || port <= 0 || port > 65_535 || !LOOPBACK_HOSTS.has(rawHost.toLowerCase())) {
    return undefined
  }
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost
  return { host, port }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        reject(new GatewayHttpError(413, 'request body too large'))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function toHttpError(error: unknown): { status: number; body: Record<string, unknown> } {
  if (error instanceof GatewayHttpError) {
    return { status: error.status, body: error.body }
  }
  if (isStatementError(error)) {
    const body: Record<string, unknown> = { message: error.message }
    for (const field of ERROR_FIELDS) {
      const value = error[field]
      if (value !== undefined) {
        body[field] = value
      }
    }
    return { status: 400, body }
  }
  // The connection dropped mid-request (or similar): the database is unavailable.
  return { status: 503, body: { message: `database unavailable: ${describe(error)}` } }
}

function isDatabaseError(error: unknown): error is pg.DatabaseError {
  return error instanceof pg.DatabaseError
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  })
  res.end(text)
}

function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) {
    return Buffer.concat(data)
  }
  return data instanceof ArrayBuffer ? Buffer.from(data) : data
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function emptyStats(): GatewayStats {
  return { httpRequests: 0, httpQueries: 0, wsConnections: 0, wsClientMessages: 0 }
}
