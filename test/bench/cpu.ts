import { readdirSync, readFileSync } from 'node:fs'

/**
 * Where the machine's CPU goes while a scenario runs, per request. On the bench machine the
 * runtime, Postgres, the gateway and the load generator share the same cores, so a path's req/s
 * against the `SELECT 1` floor is bounded by how much CPU each request costs all of them, not only
 * the Worker. Read from /proc (Linux); elsewhere `readCpu` answers undefined and nothing is shown.
 */

/** CPU milliseconds by process group (or per request, once divided). */
export interface CpuShares {
  /** workerd processes (the Worker, its outbound fetch, its HTTP server). */
  runtime: number
  /** Postgres: backends and background workers (WAL writer, autovacuum, checkpointer). */
  postgres: number
  /** The bench process itself: the local gateway (its HTTP server and `pg` client). */
  gateway: number
  /** The forked load generator (autocannon). */
  load: number
  /** Everything else the machine was busy with, the kernel included. */
  other: number
}

export interface CpuReading {
  /** CPU time so far (ms) of every process of a named group, by pid. */
  processes: Map<number, { group: NamedGroup; cpuMs: number }>
  /** Busy CPU time of the whole machine (all cores), ms. */
  busyMs: number
  /** Wall clock (performance.now()) when read, ms. */
  atMs: number
}

type NamedGroup = Exclude<keyof CpuShares, 'other'>

/** What a scenario cost over all its measured runs. */
export interface CpuPerRequest {
  /** CPU ms per request by group. */
  perRequest: CpuShares
  /** Sum of the groups, ms per request. */
  totalMs: number
  /** How busy the machine was meanwhile: busy CPU time ÷ (cores × wall time), 0–1. */
  utilisation: number
  requests: number
}

// Linux reports /proc times in clock ticks of 1/USER_HZ s, which is 100 on every mainstream
// architecture (the kernel's exported value, independent of CONFIG_HZ).
const MS_PER_TICK = 10
const GROUPS: readonly (keyof CpuShares)[] = ['runtime', 'postgres', 'gateway', 'load', 'other']

function emptyShares(): CpuShares {
  return { runtime: 0, postgres: 0, gateway: 0, load: 0, other: 0 }
}

/** utime + stime of one /proc/<pid>/stat line, in ms, and the process name. */
export function parseProcStat(line: string): { comm: string; cpuMs: number } | undefined {
  // comm is in parentheses and may itself contain spaces or parentheses: take the last ')'.
  const open = line.indexOf('(')
  const close = line.lastIndexOf(')')
  if (open < 0 || close < open) {
    return undefined
  }
  const fields = line
    .slice(close + 2)
    .trim()
    .split(/\s+/)
  // After comm: state(0) ppid … utime is field 14 of the line, index 11 here; stime index 12.
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    return undefined
  }
  return { comm: line.slice(open + 1, close), cpuMs: (utime + stime) * MS_PER_TICK }
}

/** Busy time of all cores from /proc/stat's first line (user … steal, without idle and iowait), ms. */
export function parseMachineBusy(procStat: string): number | undefined {
  const first = procStat.split('\n', 1)[0] ?? ''
  const [label, ...rest] = first.trim().split(/\s+/)
  if (label !== 'cpu') {
    return undefined
  }
  const [user, nice, system, , , irq, softirq, steal] = rest.map(Number)
  const busy = [user, nice, system, irq, softirq, steal].reduce<number>((sum, n) => sum + (n ?? 0), 0)
  return Number.isFinite(busy) ? busy * MS_PER_TICK : undefined
}

function groupOf(
  pid: number,
  comm: string,
  pids: { gateway: number; load: number | undefined },
): NamedGroup | undefined {
  if (pid === pids.gateway) {
    return 'gateway'
  }
  if (pid === pids.load) {
    return 'load'
  }
  if (comm === 'workerd') {
    return 'runtime'
  }
  if (comm === 'postgres') {
    return 'postgres'
  }
  return undefined
}

/** CPU time so far by group; undefined where /proc is not there. */
export function readCpu(pids: { gateway: number; load: number | undefined }): CpuReading | undefined {
  let busyMs: number | undefined
  let entries: string[]
  try {
    busyMs = parseMachineBusy(readFileSync('/proc/stat', 'utf8'))
    entries = readdirSync('/proc')
  } catch {
    return undefined
  }
  if (busyMs === undefined) {
    return undefined
  }
  const processes: CpuReading['processes'] = new Map()
  for (const entry of entries) {
    const pid = Number(entry)
    if (!Number.isInteger(pid)) {
      continue
    }
    let stat: ReturnType<typeof parseProcStat>
    try {
      stat = parseProcStat(readFileSync(`/proc/${entry}/stat`, 'utf8'))
    } catch {
      continue // exited meanwhile
    }
    const group = stat === undefined ? undefined : groupOf(pid, stat.comm, pids)
    if (stat !== undefined && group !== undefined) {
      processes.set(pid, { group, cpuMs: stat.cpuMs })
    }
  }
  return { processes, busyMs, atMs: performance.now() }
}

/**
 * CPU spent between two readings by group. Per process, so a process that started meanwhile
 * counts all its time and one that exited counts nothing (not minus its whole life); "other" is
 * the machine's busy time that no named process accounts for, the kernel's included.
 */
export function spentBetween(before: CpuReading, after: CpuReading): CpuShares {
  const spent = emptyShares()
  let named = 0
  for (const [pid, now] of after.processes) {
    const was = before.processes.get(pid)
    const ms = Math.max(0, now.cpuMs - (was?.group === now.group ? was.cpuMs : 0))
    spent[now.group] += ms
    named += ms
  }
  spent.other = Math.max(0, after.busyMs - before.busyMs - named)
  return spent
}

/** Sums what several runs of one scenario cost, then answers it per request. */
export class CpuLedger {
  readonly #spent = emptyShares()
  #busyMs = 0
  #wallMs = 0
  #requests = 0

  add(before: CpuReading, after: CpuReading, requests: number): void {
    const spent = spentBetween(before, after)
    for (const group of GROUPS) {
      this.#spent[group] += spent[group]
    }
    this.#busyMs += after.busyMs - before.busyMs
    this.#wallMs += after.atMs - before.atMs
    this.#requests += requests
  }

  perRequest(cores: number): CpuPerRequest | undefined {
    if (this.#requests === 0 || this.#wallMs <= 0) {
      return undefined
    }
    const perRequest = emptyShares()
    for (const group of GROUPS) {
      perRequest[group] = this.#spent[group] / this.#requests
    }
    return {
      perRequest,
      totalMs: GROUPS.reduce((sum, group) => sum + perRequest[group], 0),
      utilisation: Math.min(1, this.#busyMs / (cores * this.#wallMs)),
      requests: this.#requests,
    }
  }
}

/**
 * The most a scenario's ratio to the floor could be if the Worker cost no more per request than
 * the floor's own route: its CPU per request with workerd's share replaced by the floor's, and
 * every core of the machine busy (req/s ≤ cores ÷ CPU per request), over the floor's measured
 * peak req/s. What the rest of the machine spends per request (Postgres, the gateway, the load
 * generator) then bounds the ratio, whatever any change inside the Worker does.
 */
export function ratioCeiling(
  floor: { cpu: CpuPerRequest; peakRps: number },
  scenario: CpuPerRequest,
  cores: number,
): { maxRps: number; ratio: number } {
  const perRequestMs = scenario.totalMs - scenario.perRequest.runtime + floor.cpu.perRequest.runtime
  const maxRps = perRequestMs > 0 ? (cores * 1000) / perRequestMs : 0
  return { maxRps, ratio: floor.peakRps > 0 ? Math.min(1, maxRps / floor.peakRps) : 0 }
}

const LABELS: Record<keyof CpuShares, string> = {
  runtime: 'workerd',
  postgres: 'Postgres',
  gateway: 'gateway',
  load: 'load generator',
  other: 'other',
}

/** "workerd 4.0 + Postgres 1.9 + … = 7.1 ms CPU per request, machine 97% busy". */
export function describeCpu(cpu: CpuPerRequest): string {
  const parts = GROUPS.map((group) => `${LABELS[group]} ${cpu.perRequest[group].toFixed(2)}`)
  return `${parts.join(' + ')} = ${cpu.totalMs.toFixed(2)} ms CPU per request, machine ${Math.round(cpu.utilisation * 100)}% busy`
}
