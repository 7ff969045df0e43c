import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { type Browser, chromium } from 'playwright-core'
import { launchLocalDatabase } from '../../db/local/launch'
import { migrateDatabase } from '../../db/migrate'
import { assertDisposableTestDatabase } from '../setup/database-guard'
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET, startFakeFederation } from '../setup/fake-federation'
import { freePort } from '../setup/free-port'
import { commitWithoutFlush, freshTestDatabase } from '../setup/fresh-database'
import { waitForSuiteGate } from '../setup/suite-gate'
import { TEST_ARGON2 } from '../setup/test-argon2'
import type { BrowserContext, BrowserTest } from './context'

/**
 * Headless-browser tests: a browser cannot reach the in-workerd test Worker, so this brings up
 * the local database, `wrangler dev` on a free port and Debian's headless chromium, then runs every
 * `test/browser/*.browser.ts` (or the files named on the command line).
 *
 * One rule for a missing Chromium: skipped with a message (exit 0), unless REQUIRE_BROWSER=1
 * (CI), which makes it a failure. With TEST_DATABASE_URL set (CI) the tests run against that
 * real Postgres (same loopback/test-name guard as the vitest setup), else the embedded one;
 * REQUIRE_REAL_POSTGRES=1 refuses the embedded fallback.
 */
const ROOT = resolve(import.meta.dirname, '..', '..')
// Debian's chromium-headless-shell when installed (the old headless mode, as Playwright itself
// uses for headless runs): the same engine without the browser's windows and their UI renderer,
// at about half the CPU of the full browser for these tests (38 → 19 core-seconds) and a third
// less wall time. Else Debian's chromium. CHROMIUM_PATH overrides both.
const CHROMIUM =
  process.env.CHROMIUM_PATH ??
  ['/usr/bin/chromium-headless-shell', '/usr/bin/chromium'].find((path) => existsSync(path)) ??
  '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
]

async function waitHealthy(url: string, wrangler: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (wrangler.exitCode !== null) {
      throw new Error(`wrangler dev exited with code ${wrangler.exitCode}`)
    }
    try {
      const res = await fetch(`${url}/healthz`)
      if (res.status === 200) {
        return
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 300))
  }
  throw new Error(`wrangler dev did not become healthy within ${timeoutMs} ms`)
}

/**
 * Every page stays on loopback: a request anywhere else (a test client's
 * https://app.example.com/callback) is answered here and never leaves the machine, and the
 * page settles on that answer instead of a network-error page that would race the test's next
 * navigation.
 */
function keepTrafficOnLoopback(browser: Browser): Browser {
  const newContext = browser.newContext.bind(browser)
  browser.newContext = async (options) => {
    const context = await newContext(options)
    await context.route(
      (url) => !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname),
      (route) =>
        route.fulfill({
          status: 200,
          contentType: 'text/html; charset=utf-8',
          body: '<!doctype html><title>Captured</title><p>Off-loopback request captured by the test harness.</p>',
        }),
    )
    return context
  }
  return browser
}

function selectTests(filters: string[]): string[] {
  const all = readdirSync(import.meta.dirname)
    .filter((f) => f.endsWith('.browser.ts'))
    .sort()
  if (filters.length === 0) {
    return all
  }
  return all.filter((f) => filters.some((filter) => f.includes(filter.replace(/^.*\//, ''))))
}

async function main(): Promise<number> {
  const tests = selectTests(process.argv.slice(2))
  if (tests.length === 0) {
    console.log('browser: no *.browser.ts tests found')
    return 0
  }
  if (!existsSync(CHROMIUM)) {
    const required = process.env.REQUIRE_BROWSER === '1'
    console.error(
      `browser: ${CHROMIUM} not found; install Debian's chromium-headless-shell or chromium (apt-get install chromium-headless-shell) or set CHROMIUM_PATH` +
        (required ? ' (REQUIRE_BROWSER=1: failing)' : '; browser tests skipped'),
    )
    return required ? 1 : 0
  }
  const realUrl = process.env.TEST_DATABASE_URL?.trim() || undefined
  if (realUrl !== undefined) {
    assertDisposableTestDatabase(realUrl)
  } else if (process.env.REQUIRE_REAL_POSTGRES === '1') {
    console.error('browser: REQUIRE_REAL_POSTGRES=1 but TEST_DATABASE_URL is not set')
    return 1
  }
  const workDir = mkdtempSync(join(tmpdir(), 'portcullis-browser-'))
  // A database of its own: the vitest run before it leaves signing keys sealed under another
  // MASTER_KEY in the suite's database, which /healthz rightly reports as undecryptable.
  const browserUrl = realUrl === undefined ? undefined : await freshTestDatabase(realUrl, 'browser')
  if (browserUrl !== undefined) {
    await commitWithoutFlush(browserUrl)
  }
  const database = await launchLocalDatabase({ databaseUrl: browserUrl, dataDir: join(workDir, 'pg') })
  let wrangler: ChildProcess | undefined
  // A fake GitHub on loopback, for federated-login.browser.ts.
  const github = await startFakeFederation()
  try {
    await migrateDatabase(database.databaseUrl)
    const port = await freePort()
    // The Worker listens on 127.0.0.1, but pages are opened (and ISSUER set) as localhost: an IP
    // address is never a WebAuthn RP ID, and localhost is (a secure context over http, too), so
    // the passkey test can run; the other tests do not mind which loopback name they use.
    const baseUrl = `http://localhost:${port}`
    const adminToken = randomBytes(32).toString('base64url')
    const envFile = join(workDir, 'browser.env')
    // An explicit env file keeps a developer's .dev.vars out of the test run.
    writeFileSync(
      envFile,
      `MASTER_KEY=k1:${randomBytes(32).toString('base64url')}\nADMIN_TOKEN=${adminToken}\n`,
    )
    wrangler = spawn(
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
        'warn',
        '--env-file',
        envFile,
        '--var',
        `ISSUER:${baseUrl}`,
        '--var',
        `DATABASE_URL:${database.databaseUrl}`,
        '--var',
        `DB_GATEWAY_URL:${database.gateway.url}`,
        '--var',
        `GITHUB_CLIENT_ID:${FAKE_CLIENT_ID}`,
        '--var',
        `GITHUB_CLIENT_SECRET:${FAKE_CLIENT_SECRET}`,
        '--var',
        `GITHUB_BASE_URL:${github.url}/github`,
        '--var',
        `GITHUB_API_URL:${github.url}/github-api`,
        // Pages are under test here, not the hash: the suite's cheap argon2id. At production
        // cost every sign-in waited its turn for the isolate's one argon2 core.
        ...Object.entries(TEST_ARGON2).flatMap(([name, value]) => ['--var', `${name}:${value}`]),
        '--persist-to',
        join(workDir, 'wrangler'),
      ],
      {
        cwd: ROOT,
        stdio: ['ignore', 'inherit', 'inherit'],
        env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
      },
    )
    await waitHealthy(baseUrl, wrangler, 60_000)
    await waitForSuiteGate('browser')
    const browser = keepTrafficOnLoopback(
      await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
    )
    const ctx: BrowserContext = { baseUrl, databaseUrl: database.databaseUrl, browser, adminToken }
    let failed = 0
    try {
      for (const file of tests) {
        const started = Date.now()
        try {
          const mod = (await import(pathToFileURL(join(import.meta.dirname, file)).href)) as {
            run?: BrowserTest
          }
          if (typeof mod.run !== 'function') {
            throw new Error('exports no run(ctx) function')
          }
          await mod.run(ctx)
          console.log(`browser: ✓ ${file} (${Date.now() - started} ms)`)
        } catch (error) {
          failed++
          console.error(
            `browser: ✗ ${file}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
          )
        }
      }
    } finally {
      await browser.close()
    }
    console.log(`browser: ${tests.length - failed} passed, ${failed} failed`)
    return failed === 0 ? 0 : 1
  } finally {
    wrangler?.kill('SIGINT')
    await github.close()
    await database.close().catch(() => {})
    rmSync(workDir, { recursive: true, force: true })
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`browser: harness failed: ${error instanceof Error ? error.message : String(error)}`)
    process.exit(1)
  },
)
