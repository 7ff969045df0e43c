/**
 * Database round trips per Worker request, read from the local gateway's counters
 * (db/local/gateway.ts). Fetch-only, so the bench driver (Node) and its test (workerd) share it.
 */

/** The gateway's counters: SQL-over-HTTP calls and statements, WebSocket connections and messages. */
export interface GatewayCounts {
  httpRequests: number
  httpQueries: number
  wsConnections: number
  wsClientMessages: number
}

/** Counts per Worker request, averaged over the sampled requests. */
export interface RoundTripReport extends GatewayCounts {
  samples: number
  /** Requests whose `x-request-id` the gateway had seen (HTTP driver traffic is tagged; Pool traffic is not). */
  tagged: number
  /** SQL-over-HTTP round trips the response waited for (the rest went through `waitUntil`), when measured. */
  criticalHttp?: number
}

const REQUEST_ID_HEADER = 'x-request-id'
const COUNT_KEYS = ['httpRequests', 'httpQueries', 'wsConnections', 'wsClientMessages'] as const

export function emptyCounts(): GatewayCounts {
  return { httpRequests: 0, httpQueries: 0, wsConnections: 0, wsClientMessages: 0 }
}

/** `GET <gateway>/__stats`: totals, or the counts tagged with one Worker request id. */
export async function readGatewayCounts(gatewayUrl: string, requestId?: string): Promise<GatewayCounts> {
  const url = new URL('/__stats', gatewayUrl)
  if (requestId !== undefined) {
    url.searchParams.set('request_id', requestId)
  }
  const res = await fetch(url)
  if (!res.ok) {
    throw new Error(`gateway stats answered HTTP ${res.status}`)
  }
  const body = (await res.json()) as Partial<Record<keyof GatewayCounts, unknown>>
  const counts = emptyCounts()
  for (const key of COUNT_KEYS) {
    const value = body[key]
    counts[key] = typeof value === 'number' ? value : 0
  }
  return counts
}

/** `after - before`, key by key. */
export function subtractCounts(after: GatewayCounts, before: GatewayCounts): GatewayCounts {
  const out = emptyCounts()
  for (const key of COUNT_KEYS) {
    out[key] = after[key] - before[key]
  }
  return out
}

/** Sum of counts divided by `requests` (0 requests gives zeros, not NaN). */
export function averageCounts(total: GatewayCounts, requests: number): GatewayCounts {
  const out = emptyCounts()
  for (const key of COUNT_KEYS) {
    out[key] = requests > 0 ? total[key] / requests : 0
  }
  return out
}

export interface SampleOptions {
  gatewayUrl: string
  /** Sends one request to the Worker. */
  send: () => Promise<Response>
  samples: number
  /**
   * Counting source. `tagged`: the counts the gateway recorded under each response's
   * `x-request-id` (exact even with other traffic on the gateway, `waitUntil` writes included;
   * HTTP driver only). `tagged+ws`: HTTP counts as `tagged`, plus WebSocket Pool counts from
   * the change in the gateway's totals (Pool traffic carries no request id; needs a gateway
   * that serves nothing else meanwhile).
   */
  source: 'tagged' | 'tagged+ws'
  /** Milliseconds to wait after each response for work the Worker left to `waitUntil`. */
  settleMs?: number
}

/**
 * Sends `samples` requests one after another and reports the database round trips each one
 * caused, counted by the gateway (not assumed from the code).
 */
export async function sampleRoundTrips(options: SampleOptions): Promise<RoundTripReport> {
  const settleMs = options.settleMs ?? 25
  const before = options.source === 'tagged+ws' ? await readGatewayCounts(options.gatewayUrl) : emptyCounts()
  const tagged = emptyCounts()
  let taggedRequests = 0
  const requestIds: string[] = []
  for (let i = 0; i < options.samples; i++) {
    const res = await options.send()
    await res.body?.cancel()
    const requestId = res.headers.get(REQUEST_ID_HEADER)
    if (requestId !== null) {
      requestIds.push(requestId)
    }
    if (settleMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, settleMs))
    }
  }
  for (const requestId of requestIds) {
    const counts = await readGatewayCounts(options.gatewayUrl, requestId)
    if (counts.httpRequests > 0 || counts.wsConnections > 0) {
      taggedRequests++
    }
    for (const key of COUNT_KEYS) {
      tagged[key] += counts[key]
    }
  }
  if (options.source === 'tagged+ws') {
    const totals = subtractCounts(await readGatewayCounts(options.gatewayUrl), before)
    tagged.wsConnections = totals.wsConnections
    tagged.wsClientMessages = totals.wsClientMessages
  }
  return { ...averageCounts(tagged, options.samples), samples: options.samples, tagged: taggedRequests }
}
