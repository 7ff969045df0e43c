import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { convertV4MiniflareOptions, Log, LogLevel, Miniflare } from 'miniflare'
import { freePort } from '../setup/free-port'

/** Where the bench runs a Worker: wrangler's dev server, or workerd with no dev proxy in front. */
export type RuntimeName = 'wrangler-dev' | 'workerd'

export interface RunningWorker {
  runtime: RuntimeName
  /** http://127.0.0.1:PORT */
  url: string
  /** What the table prints: the runtime and, for wrangler dev, the log level. */
  label: string
  close(): Promise<void>
}

export interface WorkerLaunch {
  /** The wrangler config (its `main` is bundled). */
  configPath: string
  /** Bindings on top of the config's [vars] (secrets, gateway URL). Keyed by name. */
  bindings: Record<string, string>
  /** KV namespaces the Worker needs (binding names), for Miniflare. */
  kvNamespaces?: string[]
  /** Bindings whose value is the Worker's own URL (e.g. ISSUER), set once the port is known. */
  selfUrlBindings?: string[]
}

export const REPO_ROOT = resolve(import.meta.dirname, '../..')
const WRANGLER_BIN = join(REPO_ROOT, 'node_modules/.bin/wrangler')
const READY_TIMEOUT_MS = 60_000
const WRANGLER_LOG_LEVEL = 'warn'

export interface CommandResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to completion (no shell), capturing its output. */
export function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? REPO_ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once('error', reject)
    child.once('close', (code) => resolveRun({ code, stdout, stderr }))
  })
}

const QUIET_WRANGLER_ENV = { WRANGLER_SEND_METRICS: 'false', CI: 'true', NO_COLOR: '1' }

/** `wrangler deploy --dry-run --outdir`: the exact bundle a deploy would upload. */
export async function bundleWorker(configPath: string, outdir: string): Promise<string[]> {
  const result = await runCommand(
    WRANGLER_BIN,
    ['deploy', '--dry-run', '--outdir', outdir, '-c', configPath],
    { env: QUIET_WRANGLER_ENV },
  )
  if (result.code !== 0) {
    throw new Error(`wrangler deploy --dry-run failed for ${configPath}:\n${result.stderr}${result.stdout}`)
  }
  const { readdir } = await import('node:fs/promises')
  return (await readdir(outdir)).filter((name) => !name.endsWith('.map') && name !== 'README.md')
}

function moduleType(name: string): 'ESModule' | 'CompiledWasm' | 'Text' | 'Data' {
  if (name.endsWith('.js') || name.endsWith('.mjs')) {
    return 'ESModule'
  }
  if (name.endsWith('.wasm')) {
    return 'CompiledWasm'
  }
  return name.endsWith('.txt') || name.endsWith('.html') ? 'Text' : 'Data'
}

async function waitUntilServing(url: string, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  let lastError = ''
  while (Date.now() < deadline) {
    if (child !== undefined && child.exitCode !== null) {
      throw new Error(`the Worker process exited with code ${child.exitCode} before serving`)
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) })
      await res.body?.cancel()
      if (res.status < 500) {
        return
      }
      lastError = `HTTP ${res.status}`
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error)
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`the Worker at ${url} did not answer within ${READY_TIMEOUT_MS} ms (${lastError})`)
}

function killGroup(child: ChildProcess): Promise<void> {
  return new Promise((resolveKill) => {
    if (child.exitCode !== null || child.pid === undefined) {
      resolveKill()
      return
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL')
      } catch {
        // already gone
      }
    }, 5_000)
    child.once('exit', () => {
      clearTimeout(timer)
      resolveKill()
    })
    try {
      // The child leads its own process group (detached): this stops wrangler and its workerd.
      process.kill(-child.pid, 'SIGTERM')
    } catch {
      clearTimeout(timer)
      resolveKill()
    }
  })
}

/**
 * `wrangler dev --log-level warn` on a free loopback port: what a developer runs, dev proxy
 * included. Bindings go in through `--env-file` (a private temporary file, removed on close).
 */
export async function startWranglerDev(launch: WorkerLaunch, readyPath: string): Promise<RunningWorker> {
  const port = await freePort()
  const inspectorPort = await freePort()
  const persistTo = await mkdtemp(join(tmpdir(), 'portcullis-bench-wrangler-'))
  const url = `http://127.0.0.1:${port}`
  const bindings = { ...launch.bindings }
  for (const name of launch.selfUrlBindings ?? []) {
    bindings[name] = url
  }
  // Secrets go through a private env file, not the command line (where `ps` would show them).
  const envFile = join(persistTo, 'bench.env')
  await writeFile(
    envFile,
    Object.entries(bindings)
      .map(([name, value]) => `${name}=${value}\n`)
      .join(''),
    {
      mode: 0o600,
    },
  )
  const child = spawn(
    WRANGLER_BIN,
    [
      'dev',
      '-c',
      launch.configPath,
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      String(inspectorPort),
      '--persist-to',
      persistTo,
      '--log-level',
      WRANGLER_LOG_LEVEL,
      '--show-interactive-dev-session=false',
      '--env-file',
      envFile,
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...QUIET_WRANGLER_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  )
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  try {
    await waitUntilServing(`${url}${readyPath}`, child)
  } catch (error) {
    await killGroup(child)
    await rm(persistTo, { recursive: true, force: true })
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${output}`)
  }
  return {
    runtime: 'wrangler-dev',
    url,
    label: `wrangler dev --log-level ${WRANGLER_LOG_LEVEL}`,
    async close() {
      await killGroup(child)
      await rm(persistTo, { recursive: true, force: true })
    },
  }
}

interface WranglerToml {
  compatibilityDate: string
  compatibilityFlags: string[]
  vars: Record<string, string>
}

// Enough TOML for our own configs: top-level keys and the [vars] table of string values.
async function readWranglerToml(configPath: string): Promise<WranglerToml> {
  const text = await readFile(resolve(REPO_ROOT, configPath), 'utf8')
  const vars: Record<string, string> = {}
  let section = ''
  let compatibilityDate = ''
  let compatibilityFlags: string[] = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) {
      continue
    }
    const header = /^\[+([^\]]+)\]+$/.exec(line)
    if (header) {
      section = header[1] ?? ''
      continue
    }
    const pair = /^([A-Za-z0-9_]+)\s*=\s*(.+)$/.exec(line)
    if (!pair) {
      continue
    }
    const key = pair[1] ?? ''
    const value = JSON.parse(pair[2] ?? '""') as unknown
    if (section === 'vars' && typeof value === 'string') {
      vars[key] = value
    } else if (section === '' && key === 'compatibility_date' && typeof value === 'string') {
      compatibilityDate = value
    } else if (section === '' && key === 'compatibility_flags' && Array.isArray(value)) {
      compatibilityFlags = value.filter((flag): flag is string => typeof flag === 'string')
    }
  }
  return { compatibilityDate, compatibilityFlags, vars }
}

/**
 * The same bundle on workerd through Miniflare's API: no dev proxy between the load generator
 * and the runtime, so the ceiling is workerd's own.
 */
export async function startWorkerd(launch: WorkerLaunch, readyPath: string): Promise<RunningWorker> {
  const outdir = await mkdtemp(join(tmpdir(), 'portcullis-bench-bundle-'))
  const files = await bundleWorker(launch.configPath, outdir)
  const main = files.find((name) => name.endsWith('.js'))
  if (main === undefined) {
    throw new Error(`wrangler produced no JavaScript bundle for ${launch.configPath}`)
  }
  const toml = await readWranglerToml(launch.configPath)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const bindings: Record<string, string> = { ...toml.vars, ...launch.bindings }
  for (const name of launch.selfUrlBindings ?? []) {
    bindings[name] = url
  }
  // Miniflare 5 takes nested options; convertV4MiniflareOptions maps the documented flat shape.
  const options = convertV4MiniflareOptions({
    host: '127.0.0.1',
    port,
    // Every file the bundler emitted, listed explicitly (wasm side modules included): the main
    // module first, as workerd takes the first module as the entry.
    modules: [main, ...files.filter((name) => name !== main)].map((name) => ({
      type: moduleType(name),
      path: join(outdir, name),
    })),
    modulesRoot: outdir,
    compatibilityDate: toml.compatibilityDate,
    compatibilityFlags: toml.compatibilityFlags,
    bindings,
    kvNamespaces: launch.kvNamespaces ?? [],
    kvPersist: false,
    log: new Log(LogLevel.WARN),
    // Loopback only: no fetch of the real `request.cf` object from Cloudflare.
    cf: false,
    // The Worker's own console output at warn and above, like `wrangler dev --log-level warn`.
    handleStructuredLogs: ({ level, message }) => {
      if (level === 'warn' || level === 'error') {
        process.stderr.write(`${message}\n`)
      }
    },
  })
  const mf = new Miniflare(options)
  try {
    await mf.ready
    await waitUntilServing(`${url}${readyPath}`)
  } catch (error) {
    await mf.dispose().catch(() => {})
    await rm(outdir, { recursive: true, force: true })
    throw error
  }
  return {
    runtime: 'workerd',
    url,
    label: 'workerd (Miniflare API, no dev proxy)',
    async close() {
      await mf.dispose()
      await rm(outdir, { recursive: true, force: true })
    },
  }
}

export function startRuntime(
  runtime: RuntimeName,
  launch: WorkerLaunch,
  readyPath: string,
): Promise<RunningWorker> {
  return runtime === 'wrangler-dev' ? startWranglerDev(launch, readyPath) : startWorkerd(launch, readyPath)
}
