import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

/**
 * `npm test`: the four suites, overlapped where they do not compete for the same thing.
 *
 * - vitest (inside workerd, several workers) keeps both cores busy, so the suites with
 *   wall-clock assertions (the fault suite's latency and recovery limits) and the browser do
 *   their set-up (a fresh database, migrations, wrangler) beside it and then wait at a gate:
 *   a file named in PORTCULLIS_SUITE_GATE, created when vitest is done
 *   (test/setup/suite-gate.ts).
 * - the `npm start` tests spend most of their time waiting on a first start (the embedded
 *   database's initdb, wrangler), so they run from the beginning, beside vitest.
 *
 * Each line is prefixed with its suite while more than one runs; the summary gives every
 * suite's time and the total, and the exit code is 1 if any suite failed (all of them run).
 * `npm run test:unit`, `test:browser`, `test:reliability` and `test:node` run one suite alone.
 */
interface Suite {
  name: string
  script: string
  /** Suites that must have finished before this one passes its gate. */
  gatedBy: string[]
}

const ROOT = resolve(import.meta.dirname, '..')

// Each suite is its own npm script (one list of files, and the way to run it alone).
const SUITES: Suite[] = [
  { name: 'vitest', script: 'test:unit', gatedBy: [] },
  { name: 'node', script: 'test:node', gatedBy: [] },
  { name: 'browser', script: 'test:browser', gatedBy: ['vitest'] },
  { name: 'faults', script: 'test:reliability', gatedBy: ['vitest'] },
]

interface Outcome {
  name: string
  code: number
  startedAt: number
  endedAt: number
}

const started = Date.now()
let running = 0

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`
}

/** Writes `chunk` line by line, each prefixed with the suite's name while others run too. */
function relay(name: string, out: NodeJS.WriteStream): (chunk: Buffer) => void {
  let pending = ''
  return (chunk) => {
    pending += chunk.toString()
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) {
      out.write(running > 1 ? `[${name}] ${line}\n` : `${line}\n`)
    }
  }
}

function run(suite: Suite, gate: string | undefined): Promise<Outcome> {
  const startedAt = Date.now()
  running++
  return new Promise((done) => {
    const child = spawn('npm', ['run', '--silent', suite.script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: gate === undefined ? process.env : { ...process.env, PORTCULLIS_SUITE_GATE: gate },
    })
    child.stdout.on('data', relay(suite.name, process.stdout))
    child.stderr.on('data', relay(suite.name, process.stderr))
    const finish = (code: number): void => {
      running--
      done({ name: suite.name, code, startedAt, endedAt: Date.now() })
    }
    child.once('error', (error) => {
      process.stderr.write(`[${suite.name}] could not start: ${error.message}\n`)
      finish(1)
    })
    child.once('close', (code, signal) => finish(code ?? (signal === null ? 1 : 128)))
  })
}

async function main(): Promise<number> {
  const gates = mkdtempSync(join(tmpdir(), 'portcullis-test-gates-'))
  const outcomes = new Map<string, Promise<Outcome>>()
  const gateOpened = new Map<string, number>()
  for (const suite of SUITES) {
    const gate = suite.gatedBy.length === 0 ? undefined : join(gates, suite.name)
    outcomes.set(suite.name, run(suite, gate))
  }
  for (const suite of SUITES.filter((s) => s.gatedBy.length > 0)) {
    const before = suite.gatedBy.map((name) => {
      const outcome = outcomes.get(name)
      if (outcome === undefined) {
        throw new Error(`suite ${suite.name} waits for unknown suite ${name}`)
      }
      return outcome
    })
    // Opened whether the suites before it passed or not: every suite runs to its end.
    void Promise.all(before).then(() => {
      writeFileSync(join(gates, suite.name), '')
      gateOpened.set(suite.name, Date.now())
    })
  }
  const results = await Promise.all(outcomes.values())
  rmSync(gates, { recursive: true, force: true })
  process.stdout.write('\nnpm test: suite     time      from      gate        to   result\n')
  for (const r of results) {
    const gate = gateOpened.get(r.name)
    process.stdout.write(
      `npm test: ${r.name.padEnd(8)} ${seconds(r.endedAt - r.startedAt).padStart(7)} ${seconds(r.startedAt - started).padStart(8)} ${(gate === undefined ? '-' : seconds(gate - started)).padStart(8)} ${seconds(r.endedAt - started).padStart(8)}   ${r.code === 0 ? 'pass' : `FAIL (exit ${r.code})`}\n`,
    )
  }
  const failed = results.filter((r) => r.code !== 0)
  process.stdout.write(
    `npm test: ${failed.length === 0 ? 'all passed' : `${failed.length} suite(s) failed`} in ${seconds(Date.now() - started)}\n`,
  )
  return failed.length === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`npm test: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
