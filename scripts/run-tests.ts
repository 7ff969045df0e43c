import { spawn } from 'node:child_process'
import { resolve } from 'node:path'

/**
 * `npm test`: the four suites, overlapped where they do not compete for the same thing.
 *
 * - vitest (inside workerd, several workers) keeps both cores busy, so the suites with
 *   wall-clock assertions (the fault suite's latency and recovery limits) and the browser wait
 *   for it to finish.
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
  /** Suites that must have finished first. */
  after: string[]
}

const ROOT = resolve(import.meta.dirname, '..')

// Each suite is its own npm script (one list of files, and the way to run it alone).
const SUITES: Suite[] = [
  { name: 'vitest', script: 'test:unit', after: [] },
  { name: 'node', script: 'test:node', after: [] },
  { name: 'browser', script: 'test:browser', after: ['vitest'] },
  { name: 'faults', script: 'test:reliability', after: ['vitest'] },
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

function run(suite: Suite): Promise<Outcome> {
  const startedAt = Date.now()
  running++
  return new Promise((done) => {
    const child = spawn('npm', ['run', '--silent', suite.script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
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
  const outcomes = new Map<string, Promise<Outcome>>()
  const schedule = (suite: Suite): Promise<Outcome> => {
    let outcome = outcomes.get(suite.name)
    if (outcome === undefined) {
      const before = suite.after.map((name) => {
        const dependency = SUITES.find((s) => s.name === name)
        if (dependency === undefined) {
          throw new Error(`suite ${suite.name} waits for unknown suite ${name}`)
        }
        return schedule(dependency)
      })
      outcome = Promise.all(before).then(() => run(suite))
      outcomes.set(suite.name, outcome)
    }
    return outcome
  }
  const results = await Promise.all(SUITES.map(schedule))
  process.stdout.write('\nnpm test: suite     time      from       to   result\n')
  for (const r of results) {
    process.stdout.write(
      `npm test: ${r.name.padEnd(8)} ${seconds(r.endedAt - r.startedAt).padStart(7)} ${seconds(r.startedAt - started).padStart(8)} ${seconds(r.endedAt - started).padStart(8)}   ${r.code === 0 ? 'pass' : `FAIL (exit ${r.code})`}\n`,
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
