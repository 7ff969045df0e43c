import { CpuLedger, type CpuPerRequest, type CpuReading } from './cpu'
import type { LoadResult, LoadSpec } from './load'
import type { RequestShape, Scenario } from './scenarios'

/**
 * Measurements taken in interleaved rounds. On a shared 2-core machine the load of other
 * processes changes from one minute to the next, so a scenario measured a minute after its
 * reference can look 2–3× better or worse than it is. Here every round measures the scenarios
 * and their references back to back (the order rotating from round to round), a figure is the
 * median over the rounds, and each round's own figure is kept so the spread shows.
 */

export interface ProbeAnswer {
  status: number
  text: string
  /** The id the Worker tagged its database calls with (its `x-request-id`), when it says. */
  requestId?: string | null
}

/** One sequential request: untimed preparation first (e.g. issuing the code an exchange spends). */
export interface LatencyProbe {
  id: string
  /** Does the untimed work for the next request and answers the timed part. */
  prepare(): Promise<() => Promise<ProbeAnswer>>
  accepts(status: number, body: string): boolean
}

export interface LatencyFigure {
  id: string
  /** Median latency of each round, in order of the rounds (ms). */
  roundMedians: number[]
  /** The median of the round medians (ms): what the verdicts use. */
  p50Ms: number
  /** Fastest request seen in any round (ms): the path's cost with no queueing at all. */
  minMs: number
  /**
   * Time Postgres took per request as the gateway saw it (checkout, statements, commit; not the
   * added round trip), median of the round medians; absent when the path makes no tagged call.
   */
  dbMs?: number
  samples: number
  ok: number
}

export interface LatencyPlan {
  rounds: number
  /** Sequential requests per probe per round. */
  perRound: number
  /** Untimed requests per probe before the first round (JIT, caches, keep-alive connections). */
  warmup: number
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) {
    return 0
  }
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = items.length === 0 ? 0 : by % items.length
  return [...items.slice(shift), ...items.slice(0, shift)]
}

/** p50 at concurrency 1 for every probe, measured in interleaved rounds of sequential requests. */
export async function interleavedLatency(
  probes: readonly LatencyProbe[],
  plan: LatencyPlan,
  log: (message: string) => void,
  databaseTime: (requestId: string) => number | undefined = () => undefined,
): Promise<LatencyFigure[]> {
  for (const probe of probes) {
    for (let i = 0; i < plan.warmup; i++) {
      const send = await probe.prepare()
      await send()
    }
  }
  const times = new Map<string, number[][]>(probes.map((probe) => [probe.id, []]))
  const ok = new Map<string, number>(probes.map((probe) => [probe.id, 0]))
  const answered: { probe: string; round: number; requestId: string }[] = []
  for (let round = 0; round < plan.rounds; round++) {
    for (const probe of rotate(probes, round)) {
      const roundTimes: number[] = []
      for (let i = 0; i < plan.perRound; i++) {
        const send = await probe.prepare()
        const started = performance.now()
        const res = await send()
        roundTimes.push(performance.now() - started)
        if (probe.accepts(res.status, res.text)) {
          ok.set(probe.id, (ok.get(probe.id) ?? 0) + 1)
        }
        if (typeof res.requestId === 'string' && res.requestId !== '') {
          answered.push({ probe: probe.id, round, requestId: res.requestId })
        }
      }
      times.get(probe.id)?.push(roundTimes)
    }
    log(`  latency round ${round + 1}/${plan.rounds} done`)
  }
  // Database time per round: the gateway has reported every call by now (answers follow it).
  const dbByRound = new Map<string, number[][]>()
  for (const { probe, round, requestId } of answered) {
    const ms = databaseTime(requestId)
    if (ms === undefined) {
      continue
    }
    const rounds = dbByRound.get(probe) ?? []
    dbByRound.set(probe, rounds)
    rounds[round] = [...(rounds[round] ?? []), ms]
  }
  return probes.map((probe) => {
    const rounds = times.get(probe.id) ?? []
    const roundMedians = rounds.map((one) => median(one))
    const db = (dbByRound.get(probe.id) ?? []).filter((one) => one !== undefined).map((one) => median(one))
    return {
      id: probe.id,
      roundMedians,
      p50Ms: median(roundMedians),
      minMs: Math.min(...rounds.flat()),
      samples: rounds.flat().length,
      ok: ok.get(probe.id) ?? 0,
      ...(db.length === 0 ? {} : { dbMs: median(db) }),
    }
  })
}

export interface ThroughputFigure {
  id: string
  /** Peak req/s over the plan's concurrency levels, per round. */
  roundPeaks: number[]
  /** Each round's peak divided by the peak of the floor runs adjacent to it (none for the floor). */
  roundRatios: number[]
  /** Median of the round ratios: what the verdicts use. */
  ratio: number
  failed: number
  /** CPU per request by process group over the measured runs (Linux only). */
  cpu?: CpuPerRequest
}

export interface ThroughputPlan {
  rounds: number
  seconds: number
  connections: number[]
  /** Seconds of load per scenario before the first round (discarded). */
  warmupSeconds: number
}

/**
 * Peak req/s of each scenario against the floor's, in interleaved rounds. Within a round every
 * scenario (order rotating) is run at each concurrency level right after the floor at that
 * level, and its ratio is its peak over the peak of those adjacent floor runs: a swing in the
 * machine's load a few seconds long moves both sides of one ratio, not one side only.
 */
export async function interleavedThroughput(
  floor: Scenario,
  scenarios: readonly Scenario[],
  plan: ThroughputPlan,
  run: (shape: RequestShape, connections: number, seconds: number) => Promise<LoadResult>,
  log: (message: string) => void,
  cpu?: { read(): CpuReading | undefined; cores: number },
): Promise<{ floor: ThroughputFigure; scenarios: ThroughputFigure[] }> {
  const peaks = new Map<string, number[]>([floor, ...scenarios].map((scenario) => [scenario.id, []]))
  const ratios = new Map<string, number[]>(scenarios.map((scenario) => [scenario.id, []]))
  const failed = new Map<string, number>([floor, ...scenarios].map((scenario) => [scenario.id, 0]))
  const ledgers = new Map<string, CpuLedger>(
    [floor, ...scenarios].map((scenario) => [scenario.id, new CpuLedger()]),
  )
  const warmConnections = plan.connections[0] ?? 1
  const measure = async (
    scenario: Scenario,
    connections: number,
    seconds: number,
    warmup = false,
  ): Promise<number> => {
    const shape = await scenario.shape(connections)
    if (!shape.ok) {
      return 0
    }
    const before = warmup ? undefined : cpu?.read()
    const result = await run(shape.value, connections, seconds)
    const after = before === undefined ? undefined : cpu?.read()
    if (before !== undefined && after !== undefined) {
      ledgers.get(scenario.id)?.add(before, after, result.requests)
    }
    failed.set(scenario.id, (failed.get(scenario.id) ?? 0) + result.non2xx + result.errors + result.timeouts)
    return result.rps
  }
  for (const scenario of [floor, ...scenarios]) {
    await measure(scenario, warmConnections, plan.warmupSeconds, true)
  }
  for (const id of failed.keys()) {
    failed.set(id, 0)
  }
  for (let round = 0; round < plan.rounds; round++) {
    let floorPeak = 0
    for (const scenario of rotate(scenarios, round)) {
      let peak = 0
      let adjacentFloor = 0
      for (const connections of plan.connections) {
        const reference = await measure(floor, connections, plan.seconds)
        adjacentFloor = Math.max(adjacentFloor, reference)
        peak = Math.max(peak, await measure(scenario, connections, plan.seconds))
      }
      floorPeak = Math.max(floorPeak, adjacentFloor)
      peaks.get(scenario.id)?.push(peak)
      ratios.get(scenario.id)?.push(adjacentFloor > 0 ? peak / adjacentFloor : 0)
    }
    peaks.get(floor.id)?.push(floorPeak)
    log(`  floor-ratio round ${round + 1}/${plan.rounds} done`)
  }
  const figure = (id: string): ThroughputFigure => {
    const roundRatios = ratios.get(id) ?? []
    const spent = cpu === undefined ? undefined : ledgers.get(id)?.perRequest(cpu.cores)
    return {
      id,
      roundPeaks: peaks.get(id) ?? [],
      roundRatios,
      ratio: median(roundRatios),
      failed: failed.get(id) ?? 0,
      ...(spent === undefined ? {} : { cpu: spent }),
    }
  }
  return { floor: figure(floor.id), scenarios: scenarios.map((scenario) => figure(scenario.id)) }
}

/** What the load generator needs for one scenario's shape. */
export function loadSpecFor(
  base: string,
  shape: RequestShape,
  connections: number,
  seconds: number,
): LoadSpec {
  const { path, ...rest } = shape
  return { ...rest, url: `${base}${path}`, connections, durationSeconds: seconds }
}
