import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { launchLocalDatabase } from '../../db/local/launch'
import { migrateDatabase } from '../../db/migrate'
import { REPO_ROOT, startWorkerd } from '../bench/runtimes'

/**
 * Issue 18 item 6, measured: 60 concurrent logins against the Worker on workerd (the bench's
 * Miniflare runner, production argon2id parameters from wrangler.toml), sampling the workerd
 * process's resident memory every few milliseconds and its kernel high-water mark (VmHWM, reset
 * just before the burst). Passes when the burst adds less than a Workers isolate's 128 MB and
 * every answer is 200 or 503 with Retry-After.
 *
 *   npx tsx test/memory/logins.ts [--config path/to/wrangler.toml]
 *
 * workerd's RSS also holds the runtime itself, so the figure that stands for the isolate is the
 * growth over the RSS measured after the Worker's first request (script loaded, heap warm).
 */
const LOGINS = 60
const ISOLATE_LIMIT_BYTES = 128 * 1024 * 1024
const SAMPLE_EVERY_MS = 5
const MASTER_KEY = 'k1:bWVtb3J5LXRlc3QtbWFzdGVyLWtleS0wMDAwMDAwMDA'
const ADMIN_TOKEN = 'memory-test-admin-token-0123456789abcdefghij'
const PASSWORD = 'Correct-Horse-Battery-9'

function argValue(name: string): string | undefined {
  const index = process.argv.indexOf(name)
  return index === -1 ? undefined : process.argv[index + 1]
}

function rssBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)
  return Number(match?.[1] ?? 0) * 1024
}

function workerdPid(): number {
  const candidates: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) {
      continue
    }
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
      if (ppid === process.pid && cmd.includes('workerd')) {
        candidates.push(Number(entry))
      }
    } catch {
      // gone
    }
  }
  const [pid] = candidates
  if (pid === undefined || candidates.length > 1) {
    throw new Error(`expected one workerd child, found ${candidates.length}`)
  }
  return pid
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

async function main(): Promise<void> {
  const configPath = resolve(argValue('--config') ?? join(REPO_ROOT, 'wrangler.toml'))
  const dataDir = await mkdtemp(join(tmpdir(), 'portcullis-memory-'))
  const database = await launchLocalDatabase({ dataDir })
  let worker: Awaited<ReturnType<typeof startWorkerd>> | undefined
  try {
    await migrateDatabase(database.databaseUrl)
    worker = await startWorkerd(
      {
        configPath,
        bindings: {
          DATABASE_URL: database.databaseUrl,
          DB_GATEWAY_URL: database.gateway.url,
          MASTER_KEY,
          ADMIN_TOKEN,
          // The burst comes from one address: per-IP limits would answer 429 before any hash.
          TRUSTED_IP_HEADER: 'none',
          DB_TIMEOUT_MS: '30000',
        },
        selfUrlBindings: ['ISSUER'],
      },
      '/healthz',
    )
    const pid = workerdPid()
    const { url } = worker
    const rssAfterFirstRequest = rssBytes(pid, 'VmRSS')

    const emails = Array.from({ length: LOGINS }, (_, i) => `memory-${Date.now()}-${i}@example.test`)
    for (const email of emails) {
      const res = await fetch(`${url}/auth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: PASSWORD }),
      })
      if (res.status !== 201) {
        throw new Error(`register ${email}: ${res.status} ${await res.text()}`)
      }
    }
    const rssBeforeBurst = rssBytes(pid, 'VmRSS')
    writeFileSync(`/proc/${pid}/clear_refs`, '5')

    let peak = rssBeforeBurst
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, rssBytes(pid, 'VmRSS'))
        await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS))
      }
    })()
    const started = Date.now()
    const responses = await Promise.all(
      emails.map((email) =>
        fetch(`${url}/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email, password: PASSWORD }),
        }),
      ),
    )
    const elapsedMs = Date.now() - started
    sampling = false
    await sampler
    const highWater = rssBytes(pid, 'VmHWM')
    peak = Math.max(peak, highWater)

    const statuses = new Map<string, number>()
    for (const res of responses) {
      const retryAfter = res.headers.get('retry-after')
      const key = res.status === 503 ? `503 (Retry-After ${retryAfter ?? 'missing'})` : String(res.status)
      statuses.set(key, (statuses.get(key) ?? 0) + 1)
      await res.body?.cancel()
    }
    const growth = peak - rssAfterFirstRequest
    console.log(
      [
        `60 concurrent logins on workerd (${configPath.replace(`${REPO_ROOT}/`, '')}), ${elapsedMs} ms`,
        `  workerd RSS after the first request: ${mib(rssAfterFirstRequest)}`,
        `  before the burst (60 users registered): ${mib(rssBeforeBurst)}`,
        `  peak during the burst (samples every ${SAMPLE_EVERY_MS} ms, and VmHWM): ${mib(peak)}`,
        `  growth over the first request: ${mib(growth)} (a Workers isolate has ${mib(ISOLATE_LIMIT_BYTES)})`,
        `  answers: ${[...statuses].map(([k, n]) => `${n}× ${k}`).join(', ')}`,
      ].join('\n'),
    )
    const unexpected = [...statuses.keys()].filter(
      (k) => k !== '200' && k !== '503 (Retry-After 1)' && !/^503 \(Retry-After \d+\)$/.test(k),
    )
    if (growth >= ISOLATE_LIMIT_BYTES || unexpected.length > 0 || !statuses.has('200')) {
      throw new Error(
        `memory test failed: growth ${mib(growth)}, unexpected answers ${unexpected.join(', ')}`,
      )
    }
    console.log('  PASS')
  } finally {
    await worker?.close()
    await database.close()
    await rm(dataDir, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error))
  process.exit(1)
})
