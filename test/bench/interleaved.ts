import type { LoadResult, LoadSpec } from './load'
import type { RequestShape, Scenario } from './scenarios'

/**
 * Measurements taken in interleaved rounds. On a shared 2-core machine the load of other
 * processes changes from one minute to the next, so a scenario measured a minute after its
 * reference can look 2–3× better or worse than it is. Here every round measures the scenarios
 * and their references back to back (the order rotating from round to round), a figure is the
 * median over the rounds, and each round's own figure is kept so the spread shows.
 */

/** One sequential request: untimed preparation first (e.g. issuing the code an exchange spends). */
export interface LatencyProbe {
  id: string
  /** Does the untimed work for the next request and answers the timed part. */
  prepare(): Promise<() => Promise<{ status: number; text: string }>>
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
): Promise<LatencyFigure[]> {
  for (const probe of probes) {
    for (let i = 0; i < plan.warmup; i++) {
      const send = await probe.prepare()
      await send()
    }
  }
  const times = new Map<string, number[][]>(probes.map((probe) => [probe.id, []]))
  const ok = new Map<string, number>(probes.map((probe) => [probe.id, 0]))
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
      }
      times.get(probe.id)?.push(roundTimes)
    }
    log(`  latency round ${round + 1}/${plan.rounds} done`)
  }
  return probes.map((probe) => {
    const rounds = times.get(probe.id) ?? []
    const roundMedians = rounds.map((one) => median(one))
    return {
      id: probe.id,
      roundMedians,
      p50Ms: median(roundMedians),
      minMs: Math.min(...rounds.flat()),
      samples: rounds.flat().length,
      ok: ok.get(probe.id) ?? 0,
    }
  })
}

export interface ThroughputFigure {
  id: string
  /** Peak req/s over the plan's concurrency levels, per round. */
  roundPeaks: number[]
  /** Each round's peak divided by the floor's peak of the same round. */
  roundRatios: number[]
  /** Median of the round ratios: what the verdicts use. */
  ratio: number
  failed: number
}

export interface ThroughputPlan {
  rounds: number
  seconds: number
  connections: number[]
  /** Seconds of load per scenario before the first round (discarded). */
  warmupSeconds: number
}

/**
 * Peak req/s of each scenario against the floor's, in interleaved rounds: every round runs the
 * floor and each scenario at each concurrency level (order rotating), and the ratio is taken
 * within the round, so a swing in the machine's load moves both sides of it.
 */
export async function interleavedThroughput(
  floor: Scenario,
  scenarios: readonly Scenario[],
  plan: ThroughputPlan,
  run: (shape: RequestShape, connections: number, seconds: number) => Promise<LoadResult>,
  log: (message: string) => void,
): Promise<{ floor: ThroughputFigure; scenarios: ThroughputFigure[] }> {
  const all = [floor, ...scenarios]
  const peaks = new Map<string, number[]>(all.map((scenario) => [scenario.id, []]))
  const failed = new Map<string, number>(all.map((scenario) => [scenario.id, 0]))
  const warmConnections = plan.connections[0] ?? 1
  for (const scenario of all) {
    const shape = await scenario.shape(warmConnections)
    if (shape.ok) {
      await run(shape.value, warmConnections, plan.warmupSeconds)
    }
  }
  for (let round = 0; round < plan.rounds; round++) {
    for (const scenario of rotate(all, round)) {
      let peak = 0
      for (const connections of plan.connections) {
        const shape = await scenario.shape(connections)
        if (!shape.ok) {
          continue
        }
        const result = await run(shape.value, connections, plan.seconds)
        peak = Math.max(peak, result.rps)
        failed.set(
          scenario.id,
          (failed.get(scenario.id) ?? 0) + result.non2xx + result.errors + result.timeouts,
        )
      }
      peaks.get(scenario.id)?.push(peak)
    }
    log(`  floor-ratio round ${round + 1}/${plan.rounds} done`)
  }
  const floorPeaks = peaks.get(floor.id) ?? []
  const figure = (id: string): ThroughputFigure => {
    const roundPeaks = peaks.get(id) ?? []
    const roundRatios = roundPeaks.map((peak, index) => {
      const reference = floorPeaks[index] ?? 0
      return reference > 0 ? peak / reference : 0
    })
    return { id, roundPeaks, roundRatios, ratio: median(roundRatios), failed: failed.get(id) ?? 0 }
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
