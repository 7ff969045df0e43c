import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import pg from 'pg'
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../db/local/embedded'
import { migrateDatabase } from '../db/migrate'
import { formatConfigReport, readDevVars, reportConfig, wranglerVars } from './config-report'

/**
 * `npm start`: the embedded Postgres (data under .data/) or DATABASE_URL, the local gateway the
 * Neon driver talks to (its own process), migrations, dev secrets in .dev.vars, the config
 * check, and `wrangler dev` on 127.0.0.1:$PORT (8787). ISSUER follows PORT unless set.
 *
 * Every part is supervised: when one dies (the gateway, wrangler, the embedded database in this
 * process) the others are stopped and the message names the part and why. Ctrl-C stops
 * everything; the next start finds the data again. DATABASE_URL and the secrets reach wrangler
 * through a private env file, never the command line, so `ps` does not show them.
 */
const ROOT = resolve(import.meta.dirname, '..')
// Where .data/ and .dev.vars live: the checkout, unless PORTCULLIS_STATE_DIR says (tests).
const STATE_DIR = resolve(process.env.PORTCULLIS_STATE_DIR?.trim() || ROOT)
const DATA_DIR = resolve(STATE_DIR, '.data', 'pg')
const DEV_VARS = resolve(STATE_DIR, '.dev.vars')
const BIN = resolve(ROOT, 'node_modules', '.bin')
const LOOPBACK = /^(127\.0\.0\.1|localhost|\[::1\]|::1)$/
const EMBEDDED_GATEWAY_CONNECTIONS = 10
const READY_TIMEOUT_MS = 120_000
const STOP_GRACE_MS = 5_000
// Wrangler's own chatter that a developer does not need on every start: the bindings table, the
// banner, the hotkey help. Everything else (request lines, the Worker's logs, warnings) passes.
const WRANGLER_NOISE = [
  /^\s*$/,
  /^\s*[⛅⎔╭╰│▲]/u,
  /^\s*-{3,}/,
  /^\s*(env\.|Binding\s|Your Worker has access|Using vars defined|Using secrets defined)/,
  /^\s*(\[wrangler:info\] )?(Ready on|⎔|\[b\]|\[d\]|\[e\]|\[c\]|\[x\]|Starting local server|No bindings found)/,
  /wrangler \d+\.\d+/,
  // The cron hint: the banner says how to run the purge by hand.
  /Scheduled Workers are not automatically triggered|To manually trigger a scheduled event|\/cdn-cgi\/local\/scheduled|cron-triggers\/#test-cron/,
]
// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour codes are control characters
const ANSI = /\u001b\[[0-9;]*m/g

class StartError extends Error {
  override name = this.constructor.name
}

interface Part {
  name: string
  stop(): Promise<void>
}

const parts: Part[] = []
let stopping = false

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

/** Stops every part started so far, newest first, then exits. Safe to call more than once. */
async function shutdown(code: number, reason?: string): Promise<never> {
  if (!stopping) {
    stopping = true
    if (reason !== undefined) {
      process.stderr.write(`\n  npm start: ${reason}\n  Stopping everything it started.\n`)
    }
    for (const part of [...parts].reverse()) {
      await part.stop().catch(() => {})
    }
  }
  process.exit(code)
}

/** True while any process of the group led by `pgid` is alive (the leader may be gone). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * SIGTERM to the child's whole process group (wrangler and its workerd; tsx and its esbuild),
 * even when the leader already died, then SIGKILL for whatever is left after a grace period.
 */
async function stopChild(child: ChildProcess): Promise<void> {
  const pgid = child.pid
  if (pgid === undefined || !groupAlive(pgid)) {
    return
  }
  try {
    process.kill(-pgid, 'SIGTERM')
  } catch {
    return
  }
  const deadline = Date.now() + STOP_GRACE_MS
  while (groupAlive(pgid) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100))
  }
  if (groupAlive(pgid)) {
    try {
      process.kill(-pgid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
}

/** Spawns a part in its own process group and stops everything if it dies on its own. */
function supervise(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const recent: string[] = []
  const remember = (line: string) => {
    recent.push(line)
    if (recent.length > 5) {
      recent.shift()
    }
  }
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', remember)
  child.once('error', (error) => void shutdown(1, `${name} could not start: ${error.message}`))
  child.once('exit', (code, signal) => {
    if (stopping) {
      return
    }
    // 128 + n: tsx and npm report a child killed by signal n as that exit code.
    const how =
      signal !== null
        ? `was killed by ${signal}`
        : code !== null && code > 128
          ? `was killed (exit code ${code}, signal ${code - 128})`
          : `exited with code ${code}`
    const last = recent.filter((l) => l.trim() !== '').slice(-3)
    void shutdown(1, `${name} ${how}${last.length > 0 ? `:\n    ${last.join('\n    ')}` : ''}`)
  })
  parts.push({ name, stop: () => stopChild(child) })
  return child
}

/** `.data/pg` with files in it: a database whose signing keys are sealed under a MASTER_KEY. */
function embeddedDataExists(): boolean {
  return existsSync(DATA_DIR) && readdirSync(DATA_DIR).length > 0
}

/** Signing keys in the database: they were encrypted under a MASTER_KEY we would not have. */
async function hasSigningKeys(databaseUrl: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 })
  await client.connect()
  try {
    const result = await client.query<{ present: boolean }>(
      `select to_regclass('public.signing_keys') is not null
         and exists (select 1 from signing_keys) as present`,
    )
    return result.rows[0]?.present === true
  } catch {
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

function refuseToMintSecrets(where: string): never {
  throw new StartError(
    [
      `.dev.vars is missing, but ${where} already holds data sealed with the MASTER_KEY that was in it.`,
      '    New secrets would lock that data out (every token request would fail), so none were written.',
      '    To recover: put the old .dev.vars back (MASTER_KEY and ADMIN_TOKEN).',
      `    To start over instead: ${where === '.data/' ? 'rm -rf .data' : 'drop that database'}, then npm start (all local data is lost).`,
    ].join('\n'),
  )
}

function writeDevVars(): string {
  const adminToken = randomBytes(32).toString('base64url')
  writeFileSync(
    DEV_VARS,
    [
      '# Generated by `npm start` for local development only. Never commit this file.',
      `MASTER_KEY=k1:${randomBytes(32).toString('base64url')}`,
      `ADMIN_TOKEN=${adminToken}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
  return adminToken
}

async function assertReachable(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 })
  try {
    await client.connect()
    await client.query('select 1')
  } catch (error) {
    throw new StartError(
      `cannot reach DATABASE_URL's Postgres: ${error instanceof Error ? error.message : String(error)}`,
    )
  } finally {
    await client.end().catch(() => {})
  }
}

/** The gateway in a process of its own, so its failure is visible and stops the rest. */
async function startGatewayProcess(embedded: boolean): Promise<string> {
  const child = supervise(
    'the local database gateway (db/local/gateway-cli.ts)',
    resolve(BIN, 'tsx'),
    [
      resolve(ROOT, 'db', 'local', 'gateway-cli.ts'),
      '--port',
      '0',
      ...(embedded ? ['--max-connections', String(EMBEDDED_GATEWAY_CONNECTIONS)] : []),
    ],
    process.env,
  )
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  for await (const line of lines) {
    try {
      const parsed = JSON.parse(line) as { url?: unknown }
      if (typeof parsed.url === 'string') {
        lines.on('line', (rest) => say(`  [gateway] ${rest}`))
        return parsed.url
      }
    } catch {
      say(`  [gateway] ${line}`)
    }
  }
  throw new StartError('the local database gateway exited before it listened')
}

async function waitUntilServing(url: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  while (Date.now() < deadline && !stopping) {
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(3_000) })
      await res.body?.cancel()
      return
    } catch {
      await new Promise((r) => setTimeout(r, 300))
    }
  }
  throw new StartError(`wrangler dev did not answer on ${url} within ${READY_TIMEOUT_MS / 1000} s`)
}

function banner(issuer: string, url: string, adminToken: string | undefined): void {
  const lines = [
    '',
    `  Portcullis is running on ${url}${issuer === url ? '' : ` (issuer ${issuer})`}`,
    '',
    `    Sign in       ${issuer}/login`,
    `    Discovery     ${issuer}/.well-known/openid-configuration`,
    `    OpenAPI       ${issuer}/openapi.json`,
    `    Health        ${issuer}/healthz`,
    `    Purge (cron)  curl ${url}/cdn-cgi/local/scheduled`,
    adminToken === undefined
      ? '    Admin token   ADMIN_TOKEN in .dev.vars (send it as "Authorization: Bearer …")'
      : `    Admin token   ${adminToken}  (shown once; also in .dev.vars)`,
    '',
    '  Ctrl-C stops everything (wrangler, the gateway and the database).',
    '',
  ]
  say(lines.join('\n'))
}

async function main(): Promise<void> {
  const major = Number(process.versions.node.split('.')[0])
  if (major < 22) {
    throw new StartError(
      `Node ${process.versions.node} is too old: Portcullis needs Node >= 22 (run through npm so the bundled Node 22 is used)`,
    )
  }
  const port = Number(process.env.PORT ?? 8787)
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new StartError(`PORT must be a TCP port number, not ${JSON.stringify(process.env.PORT)}`)
  }
  const url = `http://127.0.0.1:${port}`
  const configured = process.env.DATABASE_URL?.trim() || undefined
  let remote = false
  if (configured !== undefined) {
    if (!URL.canParse(configured)) {
      throw new StartError('DATABASE_URL is not a postgres:// URL')
    }
    remote = !LOOPBACK.test(new URL(configured).hostname)
  }
  const devVarsExisted = existsSync(DEV_VARS)
  if (!devVarsExisted && configured === undefined && embeddedDataExists()) {
    refuseToMintSecrets('.data/')
  }

  process.on('SIGINT', () => void shutdown(0))
  process.on('SIGTERM', () => void shutdown(0))
  // Anything thrown outside a child is this process's part: the embedded database or migrations.
  process.on(
    'uncaughtException',
    (error) =>
      void shutdown(1, `npm start itself (the embedded database, migrations) failed: ${error.message}`),
  )
  process.on(
    'unhandledRejection',
    (error) =>
      void shutdown(
        1,
        `npm start itself (the embedded database, migrations) failed: ${error instanceof Error ? error.message : String(error)}`,
      ),
  )

  let databaseUrl: string
  let gatewayUrl: string | undefined
  if (remote && configured !== undefined) {
    databaseUrl = configured
    say('  Database      DATABASE_URL (not a local host: reached directly, no gateway)')
  } else {
    if (configured === undefined) {
      mkdirSync(DATA_DIR, { recursive: true })
      const embedded: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir: DATA_DIR, port: 0 })
      parts.push({ name: 'the embedded database', stop: () => embedded.close() })
      databaseUrl = embedded.connectionString
    } else {
      databaseUrl = configured
      await assertReachable(databaseUrl)
    }
    gatewayUrl = await startGatewayProcess(configured === undefined)
    say(
      configured === undefined
        ? '  Database      embedded Postgres, data in .data/pg'
        : '  Database      DATABASE_URL on this machine, through the local gateway',
    )
  }
  if (!devVarsExisted && configured !== undefined && (await hasSigningKeys(databaseUrl))) {
    refuseToMintSecrets('the database at DATABASE_URL')
  }
  await migrateDatabase(databaseUrl)
  say('  Migrations    applied')
  const adminToken = devVarsExisted ? undefined : writeDevVars()
  if (adminToken !== undefined) {
    say('  Secrets       wrote .dev.vars with fresh development secrets')
  }

  // What the Worker will see: wrangler.toml's [vars], then .dev.vars, then what this run sets.
  const devVars = readDevVars(DEV_VARS)
  const issuer = (process.env.ISSUER?.trim() || devVars.ISSUER?.trim() || url).replace(/\/+$/, '')
  const runVars: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    ISSUER: issuer,
    ...(gatewayUrl === undefined ? {} : { DB_GATEWAY_URL: gatewayUrl }),
  }
  const report = reportConfig({ ...wranglerVars(resolve(ROOT, 'wrangler.toml')), ...devVars, ...runVars })
  if (report.problems.length > 0) {
    throw new StartError(formatConfigReport(report, 'the configuration'))
  }
  for (const warning of report.warnings) {
    say(`  Note          ${warning.variable}: ${warning.message}`)
  }

  // A private directory for the env file wrangler reads (mode 0600, removed on exit).
  const privateDir = mkdtempSync(join(tmpdir(), 'portcullis-start-'))
  parts.push({
    name: 'the private env file',
    stop: async () => rmSync(privateDir, { recursive: true, force: true }),
  })
  const envFile = join(privateDir, 'run.env')
  writeFileSync(
    envFile,
    Object.entries(runVars)
      .map(([name, value]) => `${name}=${JSON.stringify(value)}\n`)
      .join(''),
    { mode: 0o600 },
  )

  const wrangler = supervise(
    'wrangler dev',
    resolve(BIN, 'wrangler'),
    [
      'dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--show-interactive-dev-session=false',
      // .dev.vars first, then this run's values over it (wrangler reads only the files named).
      ...(existsSync(DEV_VARS) ? ['--env-file', DEV_VARS] : []),
      '--env-file',
      envFile,
      ...process.argv.slice(2),
    ],
    {
      ...process.env,
      WRANGLER_SEND_METRICS: 'false',
      // No fetch of the request.cf object from workers.cloudflare.com: offline starts stay quiet.
      CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      WRANGLER_HIDE_BANNER: 'true',
      // Not inherited: the Worker's database URL is in the private env file.
      DATABASE_URL: '',
    },
  )
  const show = (line: string) => {
    const plain = line.replace(ANSI, '')
    if (!WRANGLER_NOISE.some((pattern) => pattern.test(plain))) {
      say(`  ${plain}`)
    }
  }
  createInterface({ input: wrangler.stdout as NodeJS.ReadableStream }).on('line', show)
  createInterface({ input: wrangler.stderr as NodeJS.ReadableStream }).on('line', show)
  await waitUntilServing(url)
  banner(issuer, url, adminToken)
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error)
  void shutdown(1, error instanceof StartError ? message : `failed: ${message}`)
})
