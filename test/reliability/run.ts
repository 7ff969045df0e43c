import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createLocalJWKSet, jwtVerify } from 'jose'
import pg from 'pg'
import { freePort } from '../setup/free-port'
import { freshTestDatabase } from '../setup/fresh-database'
import { waitForSuiteGate } from '../setup/suite-gate'

/**
 * Fault injection (issue 18): `wrangler dev` on its own database, the local gateway as a child
 * process, load from a few concurrent clients, and four faults in turn: (a) backends terminated
 * repeatedly, (b) new connections refused for 10 s, (c) the gateway frozen (SIGSTOP) for 10 s,
 * (d) the gateway killed and restarted. Then a restart with a different MASTER_KEY.
 *
 * Asserts: only 2xx/4xx/503 (never 500 or a hang); no request longer than DB_TIMEOUT_MS + 1 s;
 * recovery within 2 s of each fault's end with nobody stepping in; the JWKS never goes dark;
 * every VALID verify has its usage row and quota charge (charges equal usage rows, per key);
 * every key and client reported created exists with its audit event; every access token
 * reported verifies against the JWKS. Prints the figures. Needs TEST_DATABASE_URL (a real
 * Postgres); uses the database `<that name>_faults` next to it.
 */
const ROOT = resolve(import.meta.dirname, '..', '..')
const DB_TIMEOUT_MS = 2_000
const LATENCY_LIMIT_MS = DB_TIMEOUT_MS + 1_000
const RECOVERY_LIMIT_MS = 2_000
const FAULT_MS = 10_000
const TERMINATE_MS = 4_000
const CLIENTS = 6
const ADMIN_TOKEN = randomBytes(32).toString('base64url')

type Op = 'verify' | 'create_key' | 'token' | 'jwks' | 'healthz'
interface Sample {
  phase: string
  op: Op
  status: number
  ms: number
}

const failures: string[] = []
function check(condition: boolean, message: string): void {
  if (!condition) {
    failures.push(message)
    console.error(`  FAIL ${message}`)
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) {
      return value
    }
    await sleep(100)
  }
  throw new Error(`${what} did not happen within ${timeoutMs} ms`)
}

// ---------------------------------------------------------------- processes

class GatewayProcess {
  child: ChildProcess | undefined
  port = 0

  async start(port = 0): Promise<void> {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'db/local/gateway-cli.ts', '--port', String(port)],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    this.child = child
    const line = await new Promise<string>((resolveLine, reject) => {
      let buffer = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        buffer += chunk.toString()
        const newline = buffer.indexOf('\n')
        if (newline !== -1) {
          resolveLine(buffer.slice(0, newline))
        }
      })
      child.once('exit', (code) => reject(new Error(`gateway exited with ${code} before listening`)))
    })
    this.port = (JSON.parse(line) as { port: number }).port
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  signal(signal: NodeJS.Signals): void {
    this.child?.kill(signal)
  }

  async kill(): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      return
    }
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
  }
}

async function startWorker(options: {
  workDir: string
  databaseUrl: string
  gatewayUrl: string
  masterKey: string
}): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const envFile = join(options.workDir, `faults-${port}.env`)
  writeFileSync(envFile, `MASTER_KEY=${options.masterKey}\nADMIN_TOKEN=${ADMIN_TOKEN}\n`)
  const child = spawn(
    resolve(ROOT, 'node_modules', '.bin', 'wrangler'),
    [
      'dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      String(await freePort()),
      '--log-level',
      'error',
      '--env-file',
      envFile,
      '--var',
      `ISSUER:${url}`,
      '--var',
      `DATABASE_URL:${options.databaseUrl}`,
      '--var',
      `DB_GATEWAY_URL:${options.gatewayUrl}`,
      '--var',
      `DB_TIMEOUT_MS:${DB_TIMEOUT_MS}`,
      '--persist-to',
      join(options.workDir, `wrangler-${port}`),
      '--test-scheduled',
    ],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    },
  )
  // Every 503 during a fault logs an error line: keep only the tail, shown if startup fails.
  let stderrTail = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString()).slice(-4_000)
  })
  await pollUntil('wrangler dev answering', 90_000, async () => {
    if (child.exitCode !== null) {
      throw new Error(`wrangler dev exited with ${child.exitCode}: ${stderrTail}`)
    }
    // Not /healthz: it reads the key ring, and the first burst must find no keys at all.
    const res = await fetch(`${url}/openapi.json`)
    await res.body?.cancel()
    return res.status === 200 ? true : undefined
  }).catch((error: unknown) => {
    child.kill('SIGKILL')
    throw new Error(
      `${error instanceof Error ? error.message : String(error)}; wrangler said:\n${stderrTail}`,
    )
  })
  return {
    url,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // Up to 5 s to exit, then SIGKILL; the timer is cleared once it has exited, or it alone
        // would hold the suite's process open for those 5 s after its last check.
        let timer: NodeJS.Timeout | undefined
        await new Promise<void>((done) => {
          child.once('exit', () => done())
          timer = setTimeout(done, 5_000)
          child.kill('SIGTERM')
        })
        clearTimeout(timer)
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL')
        }
      }
    },
  }
}

// ---------------------------------------------------------------- the database

/** Runs SQL as the suite's operator, over a connection of its own (never through the gateway). */
async function operator<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end().catch(() => {})
  }
}

function databaseName(databaseUrl: string): string {
  return new URL(databaseUrl).pathname.slice(1)
}

async function terminateBackends(operatorUrl: string, name: string): Promise<number> {
  return operator(operatorUrl, async (c) => {
    const res = await c.query(
      'select count(*) filter (where pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()',
      [name],
    )
    return (res.rows[0] as { n: number }).n
  })
}

// ---------------------------------------------------------------- load

interface Fixture {
  ownerId: string
  keys: string[]
  clientId: string
  clientSecret: string
}

interface Ledger {
  valid: Map<string, number>
  createdKeys: string[]
  tokens: string[]
}

async function request(
  url: string,
  init: RequestInit & { timeoutMs?: number } = {},
): Promise<{ status: number; ms: number; body: unknown }> {
  const started = Date.now()
  try {
    const res = await fetch(url, {
      ...init,
      signal: AbortSignal.timeout(init.timeoutMs ?? LATENCY_LIMIT_MS + 10_000),
    })
    const text = await res.text()
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      body = text
    }
    return { status: res.status, ms: Date.now() - started, body }
  } catch {
    // Aborted by our own guard or refused: the Worker did not answer at all.
    return { status: 0, ms: Date.now() - started, body: undefined }
  }
}

const adminJson = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
  body: JSON.stringify(body),
})

async function runOp(base: string, op: Op, fixture: Fixture, ledger: Ledger, n: number) {
  switch (op) {
    case 'verify': {
      const key = fixture.keys[n % fixture.keys.length] ?? ''
      const r = await request(`${base}/api-keys/verify`, adminJson({ key, endpoint: '/faults' }))
      const body = r.body as { valid?: boolean; key_id?: string } | undefined
      if (r.status === 200 && body?.valid === true && body.key_id !== undefined) {
        ledger.valid.set(body.key_id, (ledger.valid.get(body.key_id) ?? 0) + 1)
      }
      return r
    }
    case 'create_key': {
      const r = await request(
        `${base}/api-keys`,
        adminJson({ name: `fault-${n}`, owner_id: fixture.ownerId }),
      )
      const body = r.body as { id?: string } | undefined
      if (r.status === 201 && body?.id !== undefined) {
        ledger.createdKeys.push(body.id)
      }
      return r
    }
    case 'token': {
      const r = await request(`${base}/oauth/token`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`${fixture.clientId}:${fixture.clientSecret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: 'grant_type=client_credentials&scope=apikeys%3Averify',
      })
      const body = r.body as { access_token?: string } | undefined
      if (r.status === 200 && body?.access_token !== undefined) {
        ledger.tokens.push(body.access_token)
      }
      return r
    }
    case 'jwks':
      return request(`${base}/.well-known/jwks.json`)
    case 'healthz':
      return request(`${base}/healthz`)
  }
}

const MIX: Op[] = [
  'verify',
  'verify',
  'verify',
  'verify',
  'token',
  'token',
  'create_key',
  'jwks',
  'healthz',
  'verify',
]

class Load {
  samples: Sample[] = []
  phase = 'baseline'
  #running = false
  #loops: Promise<void>[] = []

  constructor(
    readonly base: string,
    readonly fixture: Fixture,
    readonly ledger: Ledger,
  ) {}

  start(): void {
    this.#running = true
    for (let client = 0; client < CLIENTS; client++) {
      this.#loops.push(
        (async () => {
          let n = client
          while (this.#running) {
            const op = MIX[n % MIX.length] ?? 'verify'
            const phase = this.phase
            const r = await runOp(this.base, op, this.fixture, this.ledger, n)
            this.samples.push({ phase, op, status: r.status, ms: r.ms })
            n += CLIENTS
            if (r.status === 503) {
              await sleep(50)
            }
          }
        })(),
      )
    }
  }

  async stop(): Promise<void> {
    this.#running = false
    await Promise.all(this.#loops)
  }
}

/** Milliseconds from `since` until a verify and /healthz both succeed. */
async function recoveryMs(base: string, fixture: Fixture, since: number): Promise<number> {
  const key = fixture.keys[0] ?? ''
  await pollUntil('recovery', 30_000, async () => {
    const [verify, health] = await Promise.all([
      request(`${base}/api-keys/verify`, adminJson({ key, endpoint: '/probe' })),
      request(`${base}/healthz`),
    ])
    return verify.status === 200 && health.status === 200 ? true : undefined
  })
  return Date.now() - since
}

// ---------------------------------------------------------------- main

async function seed(base: string, databaseUrl: string): Promise<Fixture> {
  const ownerId = await operator(databaseUrl, async (c) => {
    const res = await c.query(
      `insert into users (email, password_hash, status) values ($1, 'x', 'active') returning id`,
      [`faults-${Date.now()}@example.test`],
    )
    return (res.rows[0] as { id: string }).id
  })
  const keys: string[] = []
  for (let i = 0; i < 4; i++) {
    const r = await request(`${base}/api-keys`, adminJson({ name: `seed-${i}`, owner_id: ownerId }))
    const key = (r.body as { key?: string }).key
    if (r.status !== 201 || key === undefined) {
      throw new Error(`seeding a key answered ${r.status}: ${JSON.stringify(r.body)}`)
    }
    keys.push(key)
  }
  const client = await request(
    `${base}/admin/clients`,
    adminJson({
      client_name: 'faults',
      grant_types: ['client_credentials'],
      scope: 'apikeys:verify',
      token_endpoint_auth_method: 'client_secret_basic',
    }),
  )
  const created = client.body as {
    client_id?: string
    client_secret?: string
    client?: { client_id?: string }
  }
  const clientId = created.client_id ?? created.client?.client_id
  const clientSecret = created.client_secret
  if (clientId === undefined || clientSecret === undefined) {
    throw new Error(`creating a client answered ${client.status}: ${JSON.stringify(client.body)}`)
  }
  return { ownerId, keys, clientId, clientSecret }
}

interface FaultFigures {
  name: string
  statuses: Record<string, number>
  maxMs: number
  recoveryMs: number
}

function summarise(load: Load, phase: string): { statuses: Record<string, number>; maxMs: number } {
  const statuses: Record<string, number> = {}
  let maxMs = 0
  for (const s of load.samples.filter((x) => x.phase === phase)) {
    statuses[s.status] = (statuses[s.status] ?? 0) + 1
    maxMs = Math.max(maxMs, s.ms)
  }
  return { statuses, maxMs }
}

async function main(): Promise<number> {
  const baseUrl = process.env.TEST_DATABASE_URL?.trim()
  if (!baseUrl) {
    if (process.env.REQUIRE_REAL_POSTGRES === '1') {
      console.error('reliability: REQUIRE_REAL_POSTGRES=1 but TEST_DATABASE_URL is not set')
      return 1
    }
    console.log('reliability: TEST_DATABASE_URL is not set; the fault suite needs a real Postgres (skipped)')
    return 0
  }
  const workDir = mkdtempSync(join(tmpdir(), 'portcullis-faults-'))
  const gateway = new GatewayProcess()
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined
  let otherKeyWorker: Awaited<ReturnType<typeof startWorker>> | undefined
  const started = Date.now()
  try {
    const databaseUrl = await freshTestDatabase(baseUrl, 'faults')
    const name = databaseName(databaseUrl)
    // A port below the ephemeral range: the gateway is killed and restarted on the same one.
    await gateway.start(await freePort())
    const masterKey = `k1:${randomBytes(32).toString('base64url')}`
    worker = await startWorker({ workDir, databaseUrl, gatewayUrl: gateway.url, masterKey })
    const base = worker.url
    // The same deployment restarted with another MASTER_KEY, checked at the end. Started now,
    // idle until then (nothing reads the key ring before its first request), so its start-up
    // is off the measured part.
    otherKeyWorker = await startWorker({
      workDir,
      databaseUrl,
      gatewayUrl: gateway.url,
      masterKey: `k1:${randomBytes(32).toString('base64url')}`,
    })
    // Under npm test, vitest fills both cores until here: what follows waits for it to finish.
    await waitForSuiteGate('reliability')
    const gateAt = Date.now()
    const mark = (what: string) =>
      console.log(`reliability: +${((Date.now() - gateAt) / 1000).toFixed(1)} s ${what}`)
    // A deployment's first keys: a cold burst creates exactly one per algorithm (guarded in the
    // database), not one per request that found none.
    const burst = await Promise.all(Array.from({ length: 8 }, () => request(`${base}/.well-known/jwks.json`)))
    check(
      burst.every((r) => r.status === 200),
      `cold JWKS burst: ${burst.map((r) => r.status).join(',')}`,
    )
    const firstKeys = await operator(databaseUrl, (c) =>
      c.query<{ alg: string; n: number }>(
        `select alg, count(*)::int as n from signing_keys where status = 'active' group by alg order by alg`,
      ),
    )
    check(
      JSON.stringify(firstKeys.rows) ===
        JSON.stringify([
          { alg: 'ES256', n: 1 },
          { alg: 'RS256', n: 1 },
        ]),
      `first keys created once per algorithm: ${JSON.stringify(firstKeys.rows)}`,
    )
    const fixture = await seed(base, databaseUrl)
    mark('seeded')
    const ledger: Ledger = { valid: new Map(), createdKeys: [], tokens: [] }
    // Warm the key ring, then load.
    await request(`${base}/.well-known/jwks.json`)
    const load = new Load(base, fixture, ledger)
    load.start()
    await sleep(1_500)

    const figures: FaultFigures[] = []
    const fault = async (label: string, inject: () => Promise<void>, heal: () => Promise<void>) => {
      load.phase = label
      await inject()
      await heal()
      const healedAt = Date.now()
      load.phase = `${label}:recovery`
      const recovered = await recoveryMs(base, fixture, healedAt)
      load.phase = `${label}:after`
      await sleep(1_000)
      const { statuses, maxMs } = summarise(load, label)
      figures.push({ name: label, statuses, maxMs, recoveryMs: recovered })
      mark(label)
      check(
        recovered <= RECOVERY_LIMIT_MS,
        `${label}: recovered in ${recovered} ms (limit ${RECOVERY_LIMIT_MS})`,
      )
    }

    await fault(
      'a_terminate_backends',
      async () => {
        const until = Date.now() + TERMINATE_MS
        while (Date.now() < until) {
          await terminateBackends(databaseUrl, name)
          await sleep(300)
        }
      },
      async () => {},
    )
    await fault(
      'b_refuse_connections',
      async () => {
        await operator(baseUrl, (c) => c.query(`alter database "${name}" allow_connections false`))
        await terminateBackends(baseUrl, name)
        await sleep(FAULT_MS)
      },
      async () => {
        await operator(baseUrl, (c) => c.query(`alter database "${name}" allow_connections true`))
      },
    )
    await fault(
      'c_freeze_gateway',
      async () => {
        gateway.signal('SIGSTOP')
        await sleep(FAULT_MS)
      },
      async () => {
        gateway.signal('SIGCONT')
      },
    )
    await fault(
      'd_kill_gateway',
      async () => {
        await gateway.kill()
        await sleep(1_000)
      },
      async () => {
        await gateway.start(gateway.port)
      },
    )
    await load.stop()
    mark('load stopped')

    // ------------------------------------------------------------ invariants
    const bad = load.samples.filter((s) => !(s.status === 503 || (s.status >= 200 && s.status < 500)))
    check(bad.length === 0, `only 2xx/4xx/503: ${JSON.stringify(bad.slice(0, 5))}`)
    const slow = load.samples.filter((s) => s.ms > LATENCY_LIMIT_MS)
    check(slow.length === 0, `no request over ${LATENCY_LIMIT_MS} ms: ${JSON.stringify(slow.slice(0, 5))}`)
    const darkJwks = load.samples.filter((s) => s.op === 'jwks' && s.status !== 200)
    check(darkJwks.length === 0, `JWKS answered through every fault: ${JSON.stringify(darkJwks.slice(0, 5))}`)

    const rows = await operator(databaseUrl, async (c) => {
      const usage = await c.query(
        `select key_id::text as key_id, count(*)::int as n from api_key_usage where code = 'VALID' group by key_id`,
      )
      const charged = await c.query(
        'select key_id::text as key_id, sum(used)::int as n from api_key_quota_counters group by key_id',
      )
      const keys = await c.query('select id::text as id from api_keys where id = any($1::uuid[])', [
        ledger.createdKeys,
      ])
      const audited = await c.query(
        `select metadata->>'key_id' as key_id from audit_events where type = 'api_key_created' and metadata->>'key_id' = any($1::text[])`,
        [ledger.createdKeys],
      )
      const orphanAudit = await c.query(
        `select count(*)::int as n from audit_events a where a.type = 'api_key_created'
           and not exists (select 1 from api_keys k where k.id::text = a.metadata->>'key_id')`,
      )
      const tokenEvents = await c.query(
        `select count(*)::int as n from audit_events where type = 'token_issued' and client_id = $1`,
        [fixture.clientId],
      )
      return {
        tokenEvents: (tokenEvents.rows[0] as { n: number }).n,
        usage: new Map(usage.rows.map((r: { key_id: string; n: number }) => [r.key_id, r.n])),
        charged: new Map(charged.rows.map((r: { key_id: string; n: number }) => [r.key_id, r.n])),
        keys: new Set(keys.rows.map((r: { id: string }) => r.id)),
        audited: new Set(audited.rows.map((r: { key_id: string }) => r.key_id)),
        orphanAudit: (orphanAudit.rows[0] as { n: number }).n,
      }
    })
    let validChecked = 0
    for (const [keyId, count] of ledger.valid) {
      validChecked += count
      const usage = rows.usage.get(keyId) ?? 0
      check(usage >= count, `key ${keyId}: ${count} VALID answers but ${usage} usage rows`)
    }
    for (const [keyId, used] of rows.charged) {
      const usage = rows.usage.get(keyId) ?? 0
      check(used === usage, `key ${keyId}: quota charged ${used} times but ${usage} VALID usage rows`)
    }
    const missingKeys = ledger.createdKeys.filter((id) => !rows.keys.has(id))
    check(missingKeys.length === 0, `every key reported created exists: missing ${missingKeys.join(', ')}`)
    const unaudited = ledger.createdKeys.filter((id) => !rows.audited.has(id))
    check(
      unaudited.length === 0,
      `every key reported created has its audit event: missing ${unaudited.length}`,
    )
    check(
      rows.tokenEvents >= ledger.tokens.length,
      `every token reported issued has its token_issued event: ${rows.tokenEvents} events, ${ledger.tokens.length} tokens`,
    )
    check(rows.orphanAudit === 0, `no api_key_created event without its key: ${rows.orphanAudit}`)

    const jwks = (await request(`${base}/.well-known/jwks.json`)).body as Parameters<
      typeof createLocalJWKSet
    >[0]
    const keySet = createLocalJWKSet(jwks)
    let tokensVerified = 0
    for (const token of ledger.tokens) {
      try {
        await jwtVerify(token, keySet, { issuer: base })
        tokensVerified++
      } catch (error) {
        check(false, `token reported issued does not verify: ${String(error)}`)
      }
    }

    mark('invariants checked')
    // ------------------------------------------------------------ rotation is the cron's
    // Age the ES256 key past the rotation interval: requests keep reading it; the cron rotates.
    await operator(databaseUrl, (c) =>
      c.query(`update signing_keys set activates_at = now() - interval '100 days' where alg = 'ES256'`),
    )
    const cron = await request(`${base}/__scheduled?cron=${encodeURIComponent('*/15 * * * *')}`)
    check(cron.status === 200, `scheduled run answered ${cron.status}`)
    const rotated = await operator(databaseUrl, (c) =>
      c.query<{ status: string; n: number }>(
        `select status, count(*)::int as n from signing_keys where alg = 'ES256' group by status order by status`,
      ),
    )
    check(
      JSON.stringify(rotated.rows) ===
        JSON.stringify([
          { status: 'active', n: 1 },
          { status: 'retiring', n: 1 },
        ]),
      `the cron rotated the aged ES256 key: ${JSON.stringify(rotated.rows)}`,
    )

    // ------------------------------------------------------------ a changed MASTER_KEY
    mark('cron rotation checked')
    await worker.stop()
    mark('first worker stopped')
    const restarted = otherKeyWorker
    const health = await request(`${restarted.url}/healthz`)
    const healthText = JSON.stringify(health.body)
    const report = health.body as { reasons?: string[]; signing_keys?: { undecryptable?: string[] } }
    const publishedKids = await operator(databaseUrl, async (c) =>
      (await c.query<{ kid: string }>(`select kid from signing_keys where status <> 'retired'`)).rows.map(
        (r) => r.kid,
      ),
    )
    check(health.status === 503, `changed MASTER_KEY: /healthz ${health.status}, expected 503`)
    check(
      report.reasons?.includes('signing_key_undecryptable') === true,
      `changed MASTER_KEY: /healthz reasons ${healthText}`,
    )
    const named = report.signing_keys?.undecryptable ?? []
    check(
      named.length > 0 && named.every((kid) => publishedKids.includes(kid)),
      `changed MASTER_KEY: /healthz names the key ids (${named.join(', ')})`,
    )
    // A private JWK's members or its column name; not the word "private" alone (a migration is
    // called 0009_private_key_jwt).
    const leaked = /"(d|p|q|dp|dq|qi)"\s*:|private_?jwk/i.exec(healthText)
    check(
      leaked === null,
      `changed MASTER_KEY: no key material in /healthz${leaked === null ? '' : ` (found ${leaked[0]} in ${healthText.slice(0, 400)})`}`,
    )
    const token = await runOp(
      restarted.url,
      'token',
      fixture,
      { valid: new Map(), createdKeys: [], tokens: [] },
      0,
    )
    check(
      token.status === 503 && (token.body as { error?: string }).error === 'temporarily_unavailable',
      `changed MASTER_KEY: token request ${token.status} ${JSON.stringify(token.body)}, expected 503`,
    )

    mark('master key change checked')
    console.log(
      JSON.stringify(
        {
          faults: figures,
          requests: load.samples.length,
          validVerifiesChecked: validChecked,
          keysCreatedChecked: ledger.createdKeys.length,
          tokensVerified,
          tokenEventsChecked: rows.tokenEvents,
          masterKeyChange: { healthz: health.status, reasons: report.reasons, token: token.status },
        },
        null,
        2,
      ),
    )
  } finally {
    await worker?.stop()
    await otherKeyWorker?.stop()
    await gateway.kill()
    rmSync(workDir, { recursive: true, force: true })
  }
  console.log(`reliability: ${Date.now() - started} ms`)
  return failures.length === 0 ? 0 : 1
}

process.exitCode = await main()
