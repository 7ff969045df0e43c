import { type ChildProcess, fork, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, freemem, loadavg, platform, release, tmpdir, totalmem } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import { type Gateway, type SqlStatement, startGateway } from '../../db/local/gateway'
import { migrateDatabase } from '../../db/migrate'
import { freePort } from '../setup/free-port'
import { describeCpu, readCpu } from './cpu'
import { type FloodResult, runFlood } from './flood'
import {
  interleavedLatency,
  interleavedThroughput,
  type LatencyPlan,
  type LatencyProbe,
  loadSpecFor,
  median,
  type ThroughputPlan,
} from './interleaved'
import type { LoadResult, LoadSpec } from './load'
import { runPurgeBench } from './purge'
import type {
  BenchReport,
  FloorRatioReport,
  HotProbe,
  LatencyReport,
  PurgeRecord,
  Round,
  ScaleReport,
  ScenarioRecord,
} from './report'
import { renderReport } from './report'
import { type RoundTripReport, readGatewayCounts, sampleRoundTrips } from './round-trips'
import { REPO_ROOT, type RunningWorker, type RuntimeName, runCommand, startRuntime } from './runtimes'
import { explainStatements, FULL_SCALE, type ScaleCounts, seedScale } from './scale'
import {
  floorScenarios,
  type OidcPeer,
  type OurRuntimeSeed,
  oidcProviderScenarios,
  ourScenarios,
  type RequestShape,
  type Scenario,
  workersOAuthProviderScenarios,
} from './scenarios'
import {
  approvedDeviceCode,
  authorizeAndExchange,
  authorizeCode,
  clearLoopbackSignInFailures,
  clientCredentialsToken,
  exchangeCode,
  type OurSeed,
  type Outcome,
  pollDeviceCode,
  seedOurs,
  signIn,
  withClient,
} from './seed'

/**
 * `npm run bench [-- --quick] [-- --json <file>] [-- --db-rtt <ms>] [-- --scale [--scale-usage-rows N]]
 * [-- --flood N]`: every hot path side by side with its floor and with the peers, all measured in
 * this run against the Postgres at BENCH_DATABASE_URL. `--scale` seeds 100k users, 100k keys, 1M
 * tokens and 10M usage rows by SQL (on workerd) and shows the hot paths before and after, with the
 * EXPLAIN of each hot statement; `--flood` sends that many made-up well-formed keys twice.
 * Load comes from a forked process (autocannon), on loopback only, bounded in time.
 */

const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test'
const CONCURRENCY = [1, 10, 50]
const PURGE_ROWS = 1_000_000
const RUNTIMES: RuntimeName[] = ['wrangler-dev', 'workerd']
const BENCH_CONFIG = 'test/bench/wrangler.bench.toml'
const PEER_CONFIG = 'test/bench/peers/workers-oauth-provider/wrangler.toml'
const TSX_BIN = join(REPO_ROOT, 'node_modules/.bin/tsx')

interface Options {
  /** Print the table of an earlier run's --json file instead of running. */
  render: string | undefined
  quick: boolean
  jsonPath: string | undefined
  only: Set<string> | undefined
  runtimes: RuntimeName[]
  purge: boolean
  /** Simulated database round trip in ms, added by the gateway (`--db-rtt`), e.g. Neon's 1-5 ms from a nearby region. */
  dbRttMs: number
  /** Row counts to seed for the data-scale mode, or undefined without `--scale`. */
  scale: ScaleCounts | undefined
  /** Made-up keys in the flood (0: no flood). */
  floodKeys: number
}

interface Timing {
  roundSeconds: number
  warmupSeconds: number
  roundTripSamples: number
  /** p50 at c=1 of every hot path and its references, in interleaved rounds. */
  latency: LatencyPlan
  /** The workerd × SELECT 1 floor ratios, in interleaved rounds. */
  floorRatio: ThroughputPlan
}

function readOptions(): Options {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      only: { type: 'string' },
      runtime: { type: 'string' },
      'no-purge': { type: 'boolean', default: false },
      render: { type: 'string' },
      'db-rtt': { type: 'string' },
      scale: { type: 'boolean', default: false },
      'scale-usage-rows': { type: 'string' },
      flood: { type: 'string' },
    },
    allowPositionals: false,
  })
  const runtimes = values.runtime === undefined ? RUNTIMES : (values.runtime.split(',') as RuntimeName[])
  for (const runtime of runtimes) {
    if (!RUNTIMES.includes(runtime)) {
      throw new Error(`--runtime takes ${RUNTIMES.join(', ')}`)
    }
  }
  const dbRttMs = Number(values['db-rtt'] ?? 0)
  if (!Number.isInteger(dbRttMs) || dbRttMs < 0) {
    throw new Error('--db-rtt takes a whole number of milliseconds')
  }
  const wholeNumber = (name: string, raw: string | undefined, fallback: number): number => {
    const value = Number(raw ?? fallback)
    if (!Number.isInteger(value) || value < 0) {
      throw new Error(`--${name} takes a whole number`)
    }
    return value
  }
  const usageRows = wholeNumber('scale-usage-rows', values['scale-usage-rows'], FULL_SCALE.usageRows)
  return {
    dbRttMs,
    scale: values.scale ? { ...FULL_SCALE, usageRows } : undefined,
    floodKeys: wholeNumber('flood', values.flood, 10_000),
    render: values.render,
    quick: values.quick,
    jsonPath: values.json,
    only: values.only === undefined ? undefined : new Set(values.only.split(',')),
    runtimes,
    purge: !values['no-purge'],
  }
}

/** The forked load generator: one LoadSpec at a time over IPC. */
class LoadProcess {
  readonly #child: ChildProcess
  #next = 0
  readonly #pending = new Map<number, { resolve(r: LoadResult): void; reject(e: Error): void }>()

  constructor() {
    this.#child = fork(join(import.meta.dirname, 'load.ts'), [], {
      execArgv: ['--import', 'tsx'],
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.#child.on('message', (message: { id: number; result?: LoadResult; error?: string }) => {
      const waiter = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      if (message.result !== undefined) {
        waiter?.resolve(message.result)
      } else {
        waiter?.reject(new Error(message.error ?? 'load generator failed'))
      }
    })
    this.#child.on('exit', (code) => {
      for (const waiter of this.#pending.values()) {
        waiter.reject(new Error(`load generator exited with code ${code}`))
      }
      this.#pending.clear()
    })
  }

  run(spec: LoadSpec): Promise<LoadResult> {
    const id = this.#next++
    return new Promise((resolveRun, reject) => {
      this.#pending.set(id, { resolve: resolveRun, reject })
      this.#child.send({ id, spec })
    })
  }

  /** Its process id, so the CPU it spends can be told apart from the rest. */
  get pid(): number | undefined {
    return this.#child.pid
  }

  close(): void {
    this.#child.kill('SIGTERM')
  }
}

function firstBody(shape: RequestShape): string | undefined {
  if (shape.chain !== undefined) {
    return `${shape.chain.prefix}&${shape.chain.field}=${encodeURIComponent(shape.chain.initial[0] ?? '')}`
  }
  return shape.bodies?.[0] ?? shape.body
}

async function sendOnce(base: string, shape: RequestShape, body: string | undefined): Promise<Response> {
  return fetch(`${base}${shape.path}`, {
    method: shape.method,
    headers: shape.headers,
    ...(body === undefined ? {} : { body }),
    signal: AbortSignal.timeout(30_000),
  })
}

/** One request checked against what the scenario measures, so a broken endpoint prints n/a. */
async function probe(base: string, scenario: Scenario, shape: RequestShape): Promise<Outcome<void>> {
  const res = await sendOnce(base, shape, firstBody(shape))
  const text = await res.text()
  if (scenario.accepts(res.status, text)) {
    return { ok: true, value: undefined }
  }
  if (res.status === 404 || res.status === 405) {
    return { ok: false, reason: 'not implemented' }
  }
  return { ok: false, reason: `probe answered ${res.status}: ${text.replace(/\s+/g, ' ').slice(0, 140)}` }
}

interface MeasureContext {
  base: string
  runtime: string
  gateway: Gateway
  load: LoadProcess
  timing: Timing
  /** What Postgres took per tagged call, as the gateway saw it. */
  databaseTimes: DatabaseTimes
}

async function measure(ctx: MeasureContext, scenario: Scenario): Promise<ScenarioRecord> {
  const record: ScenarioRecord = {
    id: scenario.id,
    title: scenario.title,
    kind: scenario.kind,
    runtime: ctx.runtime,
    status: 'measured',
    rounds: [],
  }
  const na = (reason: string): ScenarioRecord => ({ ...record, status: 'n/a', reason })
  try {
    const probeShape = await scenario.shape(1)
    if (!probeShape.ok) {
      return na(probeShape.reason)
    }
    const probed = await probe(ctx.base, scenario, probeShape.value)
    if (!probed.ok) {
      return na(probed.reason)
    }
    if (scenario.countRoundTrips) {
      record.roundTrips = await countRoundTrips(ctx, scenario)
    }
    const warm = await scenario.shape(10)
    if (warm.ok) {
      await ctx.load.run(loadSpecFor(ctx.base, warm.value, 10, ctx.timing.warmupSeconds))
    }
    for (const connections of CONCURRENCY) {
      const shape = await scenario.shape(connections)
      if (!shape.ok) {
        return na(shape.reason)
      }
      // A round must outlast the slowest answer, or nothing completes (argon2id at c=50).
      const seconds = Math.max(ctx.timing.roundSeconds, scenario.minRoundSeconds?.(connections) ?? 0)
      const result = await ctx.load.run(loadSpecFor(ctx.base, shape.value, connections, seconds))
      record.rounds.push(toRound(connections, result))
      process.stderr.write(
        `  ${ctx.runtime.padEnd(12)} ${scenario.id.padEnd(16)} c=${String(connections).padEnd(3)} ${result.rps.toFixed(0).padStart(6)} req/s  p99 ${result.p99Ms} ms${result.non2xx + result.errors > 0 ? `  (${result.non2xx + result.errors} failed)` : ''}\n`,
      )
    }
    return record
  } catch (error) {
    return na(`bench error: ${error instanceof Error ? error.message : String(error)}`)
  }
}

function toRound(connections: number, result: LoadResult): Round {
  return {
    connections,
    rps: result.rps,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    requests: result.requests,
    ok: result.ok,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    statusCodes: result.statusCodes,
  }
}

type Sender = (extraHeaders?: Record<string, string>) => Promise<Response>

// Sends the scenario's request one at a time; a rotating-token chain follows its own answers.
function senderFor(base: string, shape: RequestShape): Sender {
  const chain = shape.chain
  let chainToken = chain?.initial[0]
  return async (extraHeaders = {}) => {
    const body =
      chain === undefined
        ? firstBody(shape)
        : `${chain.prefix}&${chain.field}=${encodeURIComponent(chainToken ?? '')}`
    const res = await sendOnce(base, { ...shape, headers: { ...shape.headers, ...extraHeaders } }, body)
    const text = await res.text()
    if (chain !== undefined) {
      try {
        const next = (JSON.parse(text) as Record<string, unknown>)[chain.field]
        chainToken = typeof next === 'string' ? next : chainToken
      } catch {
        // keeps the token; the next request fails and is counted as such
      }
    }
    return new Response(text, { status: res.status, headers: res.headers })
  }
}

// Sequential requests: what the gateway saw under each request's id (and Pool totals).
async function countRoundTrips(
  ctx: MeasureContext,
  scenario: Scenario,
): Promise<RoundTripReport | undefined> {
  const shape = await scenario.shape(1)
  if (!shape.ok) {
    return undefined
  }
  const send = senderFor(ctx.base, shape.value)
  // Background writes of earlier load (waitUntil) finish first: Pool totals stay this scenario's.
  await new Promise((resolveWait) => setTimeout(resolveWait, 250))
  const counted = await sampleRoundTrips({
    gatewayUrl: ctx.gateway.url,
    samples: ctx.timing.roundTripSamples,
    source: 'tagged+ws',
    settleMs: 50,
    send: () => send(),
  })
  if (counted.httpRequests === 0) {
    return { ...counted, criticalHttp: 0 }
  }
  return { ...counted, criticalHttp: await criticalRoundTrips(send, ctx.timing.roundTripSamples) }
}

const CRITICAL_PROBE_DELAY_MS = 60

async function latencies(send: Sender, samples: number, headers?: Record<string, string>): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < samples; i++) {
    const started = performance.now()
    await send(headers)
    out.push(performance.now() - started)
  }
  return out
}

/**
 * SQL-over-HTTP round trips on the critical path: the bench Worker holds each answer back
 * CRITICAL_PROBE_DELAY_MS when asked (test/bench/worker.ts), so the median latency grows by
 * that much per round trip the response waited for, and not at all for `waitUntil` writes.
 */
async function criticalRoundTrips(send: Sender, samples: number): Promise<number> {
  const plain = median(await latencies(send, samples))
  const delayed = median(
    await latencies(send, samples, { 'x-bench-db-delay-ms': String(CRITICAL_PROBE_DELAY_MS) }),
  )
  return Math.max(0, Math.round((delayed - plain) / CRITICAL_PROBE_DELAY_MS))
}

const HOT_PROBE_SAMPLES = 21
const HOT_IDS = [
  'verify-valid',
  'verify-unknown',
  'token-cc',
  'token-refresh',
  'token-exchange',
  'introspect',
  'userinfo',
  'usage-read',
]

/** The statements the gateway saw per Worker request id (the newest few thousand requests). */
class StatementLog {
  readonly #byRequest = new Map<string, SqlStatement[]>()

  record(requestId: string | undefined, statements: readonly SqlStatement[]): void {
    if (requestId === undefined) {
      return
    }
    this.#byRequest.set(requestId, [...(this.#byRequest.get(requestId) ?? []), ...statements])
    if (this.#byRequest.size > 2_000) {
      const oldest = this.#byRequest.keys().next()
      if (oldest.done !== true) {
        this.#byRequest.delete(oldest.value)
      }
    }
  }

  get(requestId: string | null): SqlStatement[] {
    return requestId === null ? [] : (this.#byRequest.get(requestId) ?? [])
  }
}

/** How long Postgres took for each tagged SQL-over-HTTP call (the newest few thousand requests). */
class DatabaseTimes {
  readonly #byRequest = new Map<string, number>()

  record(requestId: string | undefined, ms: number): void {
    if (requestId === undefined) {
      return
    }
    this.#byRequest.set(requestId, (this.#byRequest.get(requestId) ?? 0) + ms)
    if (this.#byRequest.size > 5_000) {
      const oldest = this.#byRequest.keys().next()
      if (oldest.done !== true) {
        this.#byRequest.delete(oldest.value)
      }
    }
  }

  get(requestId: string): number | undefined {
    return this.#byRequest.get(requestId)
  }

  /** `{ dbMs }`: the median over the requests the gateway timed, or nothing if it timed none. */
  medianOf(requestIds: readonly (string | null)[]): { dbMs?: number } {
    const times = requestIds
      .map((id) => (id === null ? undefined : this.#byRequest.get(id)))
      .filter((ms): ms is number => ms !== undefined)
    return times.length === 0 ? {} : { dbMs: median(times) }
  }
}

interface ProbeOutcome {
  probe: HotProbe
  /** What the last request sent to the database. */
  statements: SqlStatement[]
}

/** Sequential requests on one hot path: the median latency and the last request's statements. */
async function hotProbe(
  base: string,
  scenario: Scenario,
  statements: StatementLog,
  databaseTimes: DatabaseTimes,
): Promise<ProbeOutcome | undefined> {
  const shape = await scenario.shape(1)
  if (!shape.ok) {
    return undefined
  }
  const send = senderFor(base, shape.value)
  const times: number[] = []
  let ok = 0
  let lastId: string | null = null
  const ids: (string | null)[] = []
  for (let i = 0; i < HOT_PROBE_SAMPLES; i++) {
    const started = performance.now()
    const res = await send()
    times.push(performance.now() - started)
    if (scenario.accepts(res.status, await res.text())) {
      ok++
    }
    lastId = res.headers.get('x-request-id')
    ids.push(lastId)
  }
  await new Promise((resolveWait) => setTimeout(resolveWait, 100))
  return {
    probe: {
      id: scenario.id,
      samples: HOT_PROBE_SAMPLES,
      ok,
      p50Ms: median(times),
      ...databaseTimes.medianOf(ids),
    },
    statements: statements.get(lastId),
  }
}

type Redeem = () => Promise<{ status: number; text: string; headers: Headers }>

/**
 * A grant whose credential is spent by its one use, which keeps it out of the load generator:
 * each credential is issued first (not timed), then redeemed alone.
 */
interface SingleUseGrant {
  id: string
  title: string
  /** Issues one credential and answers the request that spends it; or why the grant cannot run. */
  issue: Outcome<() => Promise<Outcome<Redeem>>>
  accepts(status: number, body: string): boolean
}

/** authorization_code (PKCE) and device_code (an approved code, polled once). */
function singleUseGrants(base: string, seed: OurSeed, runtime: OurRuntimeSeed): SingleUseGrant[] {
  const cookie = runtime.cookie
  function issuing(
    client: Outcome<{ clientId: string }>,
    issue: (clientId: string, cookie: string) => Promise<Outcome<Redeem>>,
  ): Outcome<() => Promise<Outcome<Redeem>>> {
    if (!client.ok) {
      return client
    }
    if (!cookie.ok) {
      return cookie
    }
    return { ok: true, value: () => issue(client.value.clientId, cookie.value) }
  }
  return [
    {
      id: 'token-code',
      title: 'token: authorization_code (PKCE), c=1, one code per exchange',
      issue: issuing(seed.browserClient, async (clientId, session) => {
        const grant = await authorizeCode(base, clientId, session)
        return grant.ok ? { ok: true, value: () => exchangeCode(base, clientId, grant.value) } : grant
      }),
      accepts: (status, body) => status === 200 && body.includes('refresh_token'),
    },
    {
      id: 'token-device',
      title: 'token: device_code (RFC 8628), c=1, one approved code per poll',
      issue: issuing(seed.deviceClient, async (clientId, session) => {
        const deviceCode = await approvedDeviceCode(base, clientId, session)
        return deviceCode.ok
          ? { ok: true, value: () => pollDeviceCode(base, clientId, deviceCode.value) }
          : deviceCode
      }),
      accepts: (status, body) => status === 200 && body.includes('refresh_token'),
    },
  ]
}

/** One single-use grant, redeemed `samples` times at c=1, its round trips counted by request id. */
async function measureSingleUse(
  ctx: MeasureContext,
  grant: SingleUseGrant,
  statements: StatementLog,
): Promise<{ record: ScenarioRecord; probe?: ProbeOutcome }> {
  const record: ScenarioRecord = {
    id: grant.id,
    title: grant.title,
    kind: 'ours',
    runtime: ctx.runtime,
    status: 'measured',
    rounds: [],
  }
  if (!grant.issue.ok) {
    return { record: { ...record, status: 'n/a', reason: grant.issue.reason } }
  }
  const samples = Math.max(HOT_PROBE_SAMPLES, ctx.timing.roundTripSamples)
  const times: number[] = []
  let ok = 0
  let lastId: string | null = null
  const ids: (string | null)[] = []
  let counted = { httpRequests: 0, httpQueries: 0, wsConnections: 0, wsClientMessages: 0 }
  const statusCodes: Record<string, number> = {}
  for (let i = 0; i < samples; i++) {
    const redeem = await grant.issue.value()
    if (!redeem.ok) {
      return { record: { ...record, status: 'n/a', reason: redeem.reason } }
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 50))
    const started = performance.now()
    const res = await redeem.value()
    times.push(performance.now() - started)
    // Counted by the redeeming request's own id, after its waitUntil work has landed, as every
    // other scenario is: the gateway's totals also held the issuing requests' late writes and
    // the key ring's background refresh (its own scope), which are not this request's.
    await new Promise((resolveWait) => setTimeout(resolveWait, 50))
    const requestId = res.headers.get('x-request-id')
    if (requestId === null) {
      throw new Error(`${grant.id} answered without an x-request-id`)
    }
    const delta = await readGatewayCounts(ctx.gateway.url, requestId)
    counted = {
      httpRequests: counted.httpRequests + delta.httpRequests,
      httpQueries: counted.httpQueries + delta.httpQueries,
      wsConnections: counted.wsConnections + delta.wsConnections,
      wsClientMessages: counted.wsClientMessages + delta.wsClientMessages,
    }
    statusCodes[String(res.status)] = (statusCodes[String(res.status)] ?? 0) + 1
    if (grant.accepts(res.status, res.text)) {
      ok++
    }
    lastId = requestId
    ids.push(lastId)
  }
  const sorted = [...times].sort((a, b) => a - b)
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0
  const total = times.reduce((sum, t) => sum + t, 0)
  record.rounds.push({
    connections: 1,
    rps: total > 0 ? (samples * 1000) / total : 0,
    p50Ms: median(times),
    p99Ms: p99,
    requests: samples,
    ok,
    non2xx: samples - ok,
    errors: 0,
    statusCodes,
  })
  record.roundTrips = {
    httpRequests: counted.httpRequests / samples,
    httpQueries: counted.httpQueries / samples,
    wsConnections: counted.wsConnections / samples,
    wsClientMessages: counted.wsClientMessages / samples,
    samples,
    tagged: samples,
  }
  process.stderr.write(
    `  ${ctx.runtime.padEnd(12)} ${grant.id.padEnd(16)} c=1   p50 ${median(times).toFixed(1)} ms  ${ok}/${samples} ok\n`,
  )
  return {
    record,
    probe: {
      probe: { id: grant.id, samples, ok, p50Ms: median(times), ...ctx.databaseTimes.medianOf(ids) },
      statements: statements.get(lastId),
    },
  }
}

async function hotProbes(
  ctx: MeasureContext,
  scenarios: Scenario[],
  seed: OurSeed,
  runtime: OurRuntimeSeed,
  statements: StatementLog,
): Promise<ProbeOutcome[]> {
  const out: ProbeOutcome[] = []
  for (const id of HOT_IDS) {
    const scenario = scenarios.find((s) => s.id === id)
    const probed =
      scenario === undefined ? undefined : await hotProbe(ctx.base, scenario, statements, ctx.databaseTimes)
    if (probed !== undefined) {
      out.push(probed)
    }
  }
  for (const grant of singleUseGrants(ctx.base, seed, runtime)) {
    const measured = await measureSingleUse(ctx, grant, statements)
    if (measured.probe !== undefined) {
      out.push(measured.probe)
    }
  }
  return out
}

// The load generator's hot paths the issue's --db-rtt target names (the single-use grants are added apart).
const LATENCY_IDS = ['verify-valid', 'token-cc', 'token-refresh', 'token-exchange', 'introspect', 'userinfo']

function scenarioProbe(base: string, scenario: Scenario, shape: RequestShape): LatencyProbe {
  const send = senderFor(base, shape)
  return {
    id: scenario.id,
    prepare: async () => async () => {
      const res = await send()
      return { status: res.status, text: await res.text(), requestId: res.headers.get('x-request-id') }
    },
    accepts: scenario.accepts,
  }
}

/**
 * The references a latency is read against, measured in the same rounds as the hot paths:
 * the gateway alone from Node (the added delay, Node's HTTP server and Postgres, no Worker),
 * the runtime's empty route (client to runtime and back), discovery (the app, no database),
 * `select 1` posted by the bare platform fetch, `select 1` through the driver, and one durable
 * commit through the driver (the floor of a writing statement).
 */
function referenceProbes(base: string, gatewayUrl: string, databaseUrl: string): LatencyProbe[] {
  const get = (id: string, path: string): LatencyProbe => ({
    id,
    prepare: async () => async () => {
      const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(30_000) })
      return { status: res.status, text: await res.text(), requestId: res.headers.get('x-request-id') }
    },
    accepts: (status) => status === 200,
  })
  const body = JSON.stringify({ query: 'select 1 as one', params: [] })
  return [
    {
      id: 'gateway-direct',
      prepare: async () => async () => {
        const requestId = `bench-direct-${randomBytes(8).toString('hex')}`
        const res = await fetch(`${gatewayUrl}/sql`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'neon-connection-string': databaseUrl,
            'x-portcullis-request-id': requestId,
          },
          body,
          signal: AbortSignal.timeout(30_000),
        })
        return { status: res.status, text: await res.text(), requestId }
      },
      accepts: (status) => status === 200,
    },
    get('noop', '/__bench/noop'),
    get('discovery', '/.well-known/openid-configuration'),
    get('select1-raw', '/__bench/select1-raw'),
    get('select1-http', '/__bench/select1-http'),
    get('commit1-http', '/__bench/commit1-http'),
  ]
}

/** p50 at c=1 of the references and the hot paths, interleaved (see interleaved.ts). */
async function measureLatency(
  ctx: MeasureContext,
  databaseUrl: string,
  scenarios: Scenario[],
  seed: OurSeed,
  runtime: OurRuntimeSeed,
  log: (message: string) => void,
): Promise<LatencyReport> {
  const probes = referenceProbes(ctx.base, ctx.gateway.url, databaseUrl)
  const skipped: Record<string, string> = {}
  for (const id of LATENCY_IDS) {
    const scenario = scenarios.find((s) => s.id === id)
    const shape = scenario === undefined ? undefined : await scenario.shape(1)
    if (scenario === undefined || shape === undefined || !shape.ok) {
      skipped[id] = shape !== undefined && !shape.ok ? shape.reason : 'no such scenario'
      continue
    }
    probes.push(scenarioProbe(ctx.base, scenario, shape.value))
  }
  for (const grant of singleUseGrants(ctx.base, seed, runtime)) {
    const issue = grant.issue
    if (!issue.ok) {
      skipped[grant.id] = issue.reason
      continue
    }
    probes.push({
      id: grant.id,
      // The credential is issued untimed; only its redemption is timed.
      prepare: async () => {
        const redeem = await issue.value()
        return async () => {
          if (!redeem.ok) {
            return { status: 0, text: redeem.reason }
          }
          const res = await redeem.value()
          return { ...res, requestId: res.headers.get('x-request-id') }
        }
      },
      accepts: grant.accepts,
    })
  }
  log(
    `latency at c=1 on ${ctx.runtime}: ${ctx.timing.latency.rounds} interleaved rounds of ${ctx.timing.latency.perRound} sequential requests per path`,
  )
  const figures = await interleavedLatency(probes, ctx.timing.latency, log, (id) => ctx.databaseTimes.get(id))
  for (const figure of figures) {
    process.stderr.write(
      `  ${ctx.runtime.padEnd(12)} ${figure.id.padEnd(16)} c=1   p50 ${figure.p50Ms.toFixed(1)} ms${figure.dbMs === undefined ? '' : `, DB ${figure.dbMs.toFixed(1)} ms`} (rounds ${figure.roundMedians.map((m) => m.toFixed(1)).join(' ')})  ${figure.ok}/${figure.samples} ok\n`,
    )
  }
  return { runtime: ctx.runtime, plan: ctx.timing.latency, figures, skipped }
}

const FLOOR_RATIO_IDS = ['verify-valid', 'token-cc', 'token-refresh']

/** Peak req/s of verify, client_credentials and refresh × the SELECT 1 floor, interleaved rounds. */
async function measureFloorRatios(
  ctx: MeasureContext,
  scenarios: Scenario[],
  log: (message: string) => void,
): Promise<FloorRatioReport | undefined> {
  const floor = floorScenarios().find((s) => s.id === 'select1-http')
  const measured = FLOOR_RATIO_IDS.map((id) => scenarios.find((s) => s.id === id)).filter(
    (s): s is Scenario => s !== undefined,
  )
  if (floor === undefined) {
    return undefined
  }
  const plan = ctx.timing.floorRatio
  log(
    `× the SELECT 1 floor on ${ctx.runtime}: ${plan.rounds} interleaved rounds, ${plan.seconds} s per scenario and concurrency (${plan.connections.join('/')})`,
  )
  const figures = await interleavedThroughput(
    floor,
    measured,
    plan,
    (shape, connections, seconds) => ctx.load.run(loadSpecFor(ctx.base, shape, connections, seconds)),
    log,
    // The same core count as the report's machine line, which the ceiling divides by.
    { read: () => readCpu({ gateway: process.pid, load: ctx.load.pid }), cores: cpus().length },
  )
  for (const figure of figures.scenarios) {
    process.stderr.write(
      `  ${ctx.runtime.padEnd(12)} ${figure.id.padEnd(16)} ${figure.ratio.toFixed(2)}× the floor (rounds ${figure.roundRatios.map((r) => r.toFixed(2)).join(' ')})\n`,
    )
  }
  for (const figure of [figures.floor, ...figures.scenarios]) {
    if (figure.cpu !== undefined) {
      process.stderr.write(`  ${ctx.runtime.padEnd(12)} ${figure.id.padEnd(16)} ${describeCpu(figure.cpu)}\n`)
    }
  }
  return { runtime: ctx.runtime, plan, ...figures }
}

async function runScale(
  ctx: MeasureContext,
  counts: ScaleCounts,
  databaseUrl: string,
  scenarios: Scenario[],
  seed: OurSeed,
  runtime: OurRuntimeSeed,
  statements: StatementLog,
  log: (message: string) => void,
): Promise<ScaleReport | undefined> {
  // One pass to warm the isolate (JIT, key ring, caller-token cache) so "before" is not "cold".
  log('scale: warming the hot paths')
  await hotProbes(ctx, scenarios, seed, runtime, statements)
  log('scale: hot paths before the seed')
  const before = await hotProbes(ctx, scenarios, seed, runtime, statements)
  log(
    `scale: seeding ${counts.users} users, ${counts.keys} keys, ${counts.tokens} tokens, ${counts.usageRows} usage rows by SQL`,
  )
  const seeded = await seedScale(databaseUrl, counts, log)
  log(
    `scale: hot paths after the seed (usage read: seeded key ${seeded.readKeyId}, ${seeded.readKeyRows.toLocaleString('en-US')} raw rows in its month)`,
  )
  // The same hot paths, except that the usage read now reads the seeded key with a tenth of the raw rows.
  const afterScenarios = ourScenarios(
    ctx.base,
    { ...seed, usageKeyId: { ok: true, value: seeded.readKeyId } },
    runtime,
  )
  const after = await hotProbes(ctx, afterScenarios, seed, runtime, statements)
  const explains = []
  for (const outcome of after) {
    explains.push({
      id: outcome.probe.id,
      statements: await explainStatements(databaseUrl, outcome.statements),
    })
  }
  return {
    runtime: ctx.runtime,
    counts,
    tableRows: seeded.tableRows,
    seedSeconds: seeded.seedSeconds,
    reused: seeded.reused,
    readKeyRows: seeded.readKeyRows,
    before: before.map((outcome) => outcome.probe),
    after: after.map((outcome) => outcome.probe),
    explains,
  }
}

async function runtimeSeed(
  base: string,
  seed: OurSeed,
  adminToken: string,
  databaseUrl: string,
): Promise<OurRuntimeSeed> {
  const accessToken = seed.machineClient.ok
    ? await clientCredentialsToken(base, seed.machineClient.value)
    : { ok: false as const, reason: seed.machineClient.reason }
  const verifierAuth: Outcome<string> = accessToken.ok
    ? { ok: true, value: `Bearer ${accessToken.value}` }
    : { ok: true, value: `Bearer ${adminToken}` }
  await clearLoopbackSignInFailures(databaseUrl)
  const cookie = seed.user.ok
    ? await signIn(base, seed.user.value.email)
    : { ok: false as const, reason: seed.user.reason }
  const userTokens =
    cookie.ok && seed.browserClient.ok
      ? await authorizeAndExchange(base, seed.browserClient.value.clientId, cookie.value)
      : {
          ok: false as const,
          reason: !cookie.ok ? cookie.reason : seed.browserClient.ok ? '' : seed.browserClient.reason,
        }
  return { accessToken, verifierAuth, cookie, userTokens, adminAuth: `Bearer ${adminToken}` }
}

/** Whether a peer (scenario ids starting with `prefix`) is in the run: always, unless `--only` leaves it out. */
function wantsPeer(options: Options, prefix: string): boolean {
  return options.only === undefined || [...options.only].some((id) => id.startsWith(prefix))
}

function selected(options: Options, scenarios: Scenario[]): Scenario[] {
  return options.only === undefined
    ? scenarios
    : scenarios.filter((s) => s.kind === 'floor' || options.only?.has(s.id) === true)
}

async function startOidcPeer(): Promise<{ peer: OidcPeer; stop(): Promise<void> }> {
  const port = await freePort()
  const child = spawn(TSX_BIN, [join(import.meta.dirname, 'peers/oidc-provider.ts'), String(port)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'production' },
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-2_000)
  })
  const peer = await new Promise<OidcPeer>((resolvePeer, reject) => {
    let stdout = ''
    const timer = setTimeout(() => reject(new Error(`oidc-provider did not start: ${stderr}`)), 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      const line = stdout.split('\n').find((l) => l.startsWith('READY '))
      if (line !== undefined) {
        clearTimeout(timer)
        resolvePeer(JSON.parse(line.slice('READY '.length)) as OidcPeer)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`oidc-provider exited with ${code}: ${stderr}`))
    })
  })
  return {
    peer,
    stop: () =>
      new Promise<void>((resolveStop) => {
        if (child.exitCode !== null) {
          resolveStop()
          return
        }
        child.once('exit', () => resolveStop())
        child.kill('SIGTERM')
      }),
  }
}

async function measureBundle(): Promise<BenchReport['bundle']> {
  const outdir = await mkdtemp(join(tmpdir(), 'portcullis-bench-deploy-'))
  try {
    const result = await runCommand(join(REPO_ROOT, 'node_modules/.bin/wrangler'), [
      'deploy',
      '--dry-run',
      '--outdir',
      outdir,
    ])
    if (result.code !== 0) {
      return { error: `wrangler deploy --dry-run failed: ${result.stderr.slice(-300)}` }
    }
    let bytes = 0
    let gzipBytes = 0
    let files = 0
    for (const name of await readdir(outdir)) {
      if (name.endsWith('.map') || name === 'README.md') {
        continue
      }
      const content = await readFile(join(outdir, name))
      files++
      bytes += content.length
      gzipBytes += gzipSync(content, { level: 9 }).length
    }
    return { files, bytes, gzipBytes }
  } finally {
    await rm(outdir, { recursive: true, force: true })
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string } }[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

async function measureStartup(): Promise<BenchReport['startup']> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-startup-'))
  const outfile = join(dir, 'startup.cpuprofile')
  try {
    const result = await runCommand(join(REPO_ROOT, 'node_modules/.bin/wrangler'), [
      'check',
      'startup',
      '--outfile',
      outfile,
    ])
    if (result.code !== 0) {
      return { error: `wrangler check startup failed: ${result.stderr.slice(-300)}` }
    }
    const profile = JSON.parse(await readFile(outfile, 'utf8')) as CpuProfile
    const idle = new Set(
      profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((node) => node.id),
    )
    let cpuMicros = 0
    profile.samples.forEach((nodeId, index) => {
      if (!idle.has(nodeId)) {
        cpuMicros += profile.timeDeltas[index] ?? 0
      }
    })
    return { profileMs: (profile.endTime - profile.startTime) / 1000, cpuMs: cpuMicros / 1000 }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** workerd, wrangler and Miniflare as installed, and the commit the Worker was bundled from. */
async function toolVersions(): Promise<{
  workerd: string
  wrangler: string
  miniflare: string
  commit: string
}> {
  const version = async (name: string): Promise<string> => {
    try {
      const manifest = JSON.parse(
        await readFile(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8'),
      ) as {
        version?: string
      }
      return manifest.version ?? '?'
    } catch {
      return '?'
    }
  }
  const head = await runCommand('git', ['rev-parse', '--short', 'HEAD'])
  // Other people's uncommitted edits under functions/ or db/ are bundled too: say so.
  const dirty = await runCommand('git', ['status', '--porcelain', '--', 'functions', 'db', 'test/bench'])
  const commit = head.code === 0 ? head.stdout.trim() : 'unknown'
  return {
    workerd: await version('workerd'),
    wrangler: await version('wrangler'),
    miniflare: await version('miniflare'),
    commit: dirty.stdout.trim() === '' ? commit : `${commit} + uncommitted edits in the working tree`,
  }
}

async function postgresVersion(databaseUrl: string): Promise<string> {
  return withClient(databaseUrl, async (client) => {
    const result = await client.query<{ server_version: string }>('show server_version')
    return `PostgreSQL ${result.rows[0]?.server_version ?? '?'}`
  })
}

// Signing keys persist in the database encrypted under MASTER_KEY, so every run against one
// database needs the same key. The default is a public, test-only key (the one the vitest
// suite uses), so the bench also runs on the `test` database after `npm test`.
const DEFAULT_BENCH_MASTER_KEY = 'k1:dGVzdC1tYXN0ZXIta2V5LTAwMDAwMDAwMDAwMDAwMDA'

async function main(): Promise<void> {
  const options = readOptions()
  if (options.render !== undefined) {
    const saved = JSON.parse(await readFile(resolve(process.cwd(), options.render), 'utf8')) as BenchReport
    process.stdout.write(`${renderReport(saved)}\n`)
    return
  }
  const timing: Timing = options.quick
    ? {
        roundSeconds: 1,
        warmupSeconds: 0.3,
        roundTripSamples: 5,
        latency: { rounds: 5, perRound: 9, warmup: 2 },
        floorRatio: { rounds: 5, seconds: 2, connections: [10, 50], warmupSeconds: 1 },
      }
    : {
        roundSeconds: 10,
        warmupSeconds: 2,
        roundTripSamples: 20,
        latency: { rounds: 7, perRound: 15, warmup: 3 },
        floorRatio: { rounds: 7, seconds: 3, connections: [10, 50], warmupSeconds: 2 },
      }
  const databaseUrl = process.env.BENCH_DATABASE_URL?.trim() || DEFAULT_DATABASE_URL
  const startedAt = new Date()
  const loadAverageBefore = loadavg().map((n) => Number(n.toFixed(2)))
  const log = (message: string) => process.stderr.write(`[bench] ${message}\n`)
  log(
    `database ${new URL(databaseUrl).pathname.slice(1)} on ${new URL(databaseUrl).host}; ${options.quick ? 'quick' : 'full'} run`,
  )
  await migrateDatabase(databaseUrl)
  const statements = new StatementLog()
  const databaseTimes = new DatabaseTimes()
  const gateway = await startGateway({
    rttMs: options.dbRttMs,
    onStatements: (requestId, sent) => statements.record(requestId, sent),
    onDatabaseTime: (requestId, ms) => databaseTimes.record(requestId, ms),
  })
  if (options.dbRttMs > 0) {
    log(`gateway adds ${options.dbRttMs} ms to every database round trip`)
  }
  const load = new LoadProcess()
  const adminToken = `bench-admin-${randomBytes(24).toString('hex')}`
  const bindings = {
    DATABASE_URL: databaseUrl,
    DB_GATEWAY_URL: gateway.url,
    MASTER_KEY: process.env.BENCH_MASTER_KEY?.trim() || DEFAULT_BENCH_MASTER_KEY,
    ADMIN_TOKEN: adminToken,
  }
  const scenarios: ScenarioRecord[] = []
  const purge: PurgeRecord[] = []
  const runtimes: Record<string, string> = {}
  let seed: OurSeed | undefined
  let scale: ScaleReport | undefined
  const latency: LatencyReport[] = []
  let floorRatios: FloorRatioReport | undefined
  let flood: (FloodResult & { runtime: string }) | undefined
  // Scale and flood run once, on workerd (the runtime closest to production) when it is in the run.
  const extrasRuntime = options.runtimes.includes('workerd') ? 'workerd' : options.runtimes[0]
  const cleanups: (() => Promise<void>)[] = []
  try {
    log('bundle size and startup time')
    const bundle = await measureBundle()
    const startup = await measureStartup()

    for (const runtime of options.runtimes) {
      log(`our Worker on ${runtime}`)
      const worker: RunningWorker = await startRuntime(
        runtime,
        { configPath: BENCH_CONFIG, bindings, selfUrlBindings: ['ISSUER'] },
        '/__bench/noop',
      )
      cleanups.push(() => worker.close())
      runtimes[runtime] = worker.label
      try {
        seed ??= await seedOurs(worker.url, adminToken, databaseUrl)
        const perRuntime = await runtimeSeed(worker.url, seed, adminToken, databaseUrl)
        const ctx: MeasureContext = { base: worker.url, runtime, gateway, load, timing, databaseTimes }
        const ours = ourScenarios(worker.url, seed, perRuntime)
        if (options.scale !== undefined && runtime === extrasRuntime) {
          scale = await runScale(ctx, options.scale, databaseUrl, ours, seed, perRuntime, statements, log)
        }
        latency.push(await measureLatency(ctx, databaseUrl, ours, seed, perRuntime, log))
        // A ratio of peak req/s is the issue's measure without added latency; with it, every
        // path is bound by the same RTT and the ratio says little, so that run skips it.
        if (runtime === 'workerd' && options.dbRttMs === 0) {
          floorRatios = await measureFloorRatios(ctx, selected(options, ours), log)
        }
        for (const scenario of selected(options, [...floorScenarios(), ...ours])) {
          scenarios.push(await measure(ctx, scenario))
        }
        for (const grant of singleUseGrants(worker.url, seed, perRuntime)) {
          if (options.only === undefined || options.only.has(grant.id)) {
            scenarios.push((await measureSingleUse(ctx, grant, statements)).record)
          }
        }
        if (options.floodKeys > 0 && runtime === extrasRuntime && perRuntime.verifierAuth.ok) {
          log(`flood of ${options.floodKeys} made-up well-formed keys, each sent twice, on ${runtime}`)
          flood = {
            runtime,
            ...(await runFlood({
              base: worker.url,
              gatewayUrl: gateway.url,
              authorization: perRuntime.verifierAuth.value,
              keys: options.floodKeys,
              parallel: 16,
            })),
          }
        }
        if (options.purge && (runtime === 'workerd' || !options.quick)) {
          log(`purge of ${PURGE_ROWS.toLocaleString('en-US')} expired rows on ${runtime}`)
          const result = await runPurgeBench(worker.url, adminToken, databaseUrl, PURGE_ROWS)
          purge.push(
            'na' in result
              ? { runtime, status: 'n/a', reason: result.na }
              : { runtime, status: 'measured', ...result },
          )
        }
      } finally {
        cleanups.pop()
        await worker.close()
      }

      if (!wantsPeer(options, 'wop-')) {
        continue
      }
      log(`peer workers-oauth-provider on ${runtime}`)
      const peerWorker = await startRuntime(
        runtime,
        { configPath: PEER_CONFIG, bindings: {}, kvNamespaces: ['OAUTH_KV'], selfUrlBindings: ['BASE_URL'] },
        '/ready',
      )
      cleanups.push(() => peerWorker.close())
      try {
        const ctx: MeasureContext = { base: peerWorker.url, runtime, gateway, load, timing, databaseTimes }
        for (const scenario of selected(options, workersOAuthProviderScenarios(peerWorker.url))) {
          scenarios.push(await measure(ctx, scenario))
        }
      } finally {
        cleanups.pop()
        await peerWorker.close()
      }
    }

    if (wantsPeer(options, 'oidc-')) {
      log('peer oidc-provider on Node')
      const oidc = await startOidcPeer()
      cleanups.push(() => oidc.stop())
      runtimes.node = `oidc-provider on Node ${process.versions.node} (in-memory adapter, NODE_ENV=production)`
      try {
        const ctx: MeasureContext = {
          base: oidc.peer.url,
          runtime: 'node',
          gateway,
          load,
          timing,
          databaseTimes,
        }
        for (const scenario of selected(options, oidcProviderScenarios(oidc.peer))) {
          scenarios.push(await measure(ctx, scenario))
        }
      } finally {
        cleanups.pop()
        await oidc.stop()
      }
    }

    const report: BenchReport = {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      mode: options.quick ? 'quick' : 'full',
      durationSecondsPerRound: timing.roundSeconds,
      concurrency: CONCURRENCY,
      machine: {
        cpus: cpus()[0]?.model ?? 'unknown CPU',
        cores: cpus().length,
        memoryGiB: Math.round(totalmem() / 1024 ** 3),
        os: `${platform()} ${release()}`,
        node: process.versions.node,
        postgres: await postgresVersion(databaseUrl),
        ...(await toolVersions()),
        loadAverageBefore: loadAverageBefore,
        loadAverageAfter: loadavg().map((n) => Number(n.toFixed(2))),
      },
      runtimes,
      bundle,
      startup,
      scenarios,
      purge,
      dbRttMs: options.dbRttMs,
      latency,
      ...(floorRatios === undefined ? {} : { floorRatios }),
      ...(flood === undefined ? {} : { flood }),
      ...(scale === undefined ? {} : { scale }),
    }
    process.stdout.write(`${renderReport(report)}\n`)
    if (options.jsonPath !== undefined) {
      const path = resolve(process.cwd(), options.jsonPath)
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, `${JSON.stringify(report, null, 2)}\n`)
      log(`figures written to ${path}`)
    }
    log(
      `done in ${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s (${(freemem() / 1024 ** 3).toFixed(1)} GiB free)`,
    )
  } finally {
    for (const cleanup of cleanups.reverse()) {
      await cleanup().catch(() => {})
    }
    load.close()
    await gateway.close()
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `[bench] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
})
