import autocannon from 'autocannon'

/**
 * The load generator, run as its own process (forked by run.ts) so it never shares a CPU
 * queue with the gateway or the driver: receives one LoadSpec over IPC, answers a LoadResult.
 */

export interface LoadSpec {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  /** One body per connection (connection i uses bodies[i % length]): spreads rows or keys. */
  bodies?: string[]
  /**
   * A rotating-token chain per connection: the body is `prefix` + `&<field>=<token>`, and each
   * answer's JSON `<field>` replaces the connection's token (refresh-token rotation).
   */
  chain?: { field: string; prefix: string; initial: string[] }
  connections: number
  durationSeconds: number
}

export interface LoadResult {
  requests: number
  rps: number
  p50Ms: number
  p99Ms: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  durationSeconds: number
}

interface ConnectionContext {
  token?: string
}

// autocannon resets a connection's context each time it wraps around its request list (here:
// after every request), so state that must outlive one request lives in these closures.
function buildRequests(spec: LoadSpec): autocannon.Request[] | undefined {
  if (spec.chain !== undefined) {
    const chain = spec.chain
    // Chain heads not in flight. Each connection has one request in flight, and its answer puts
    // the rotated token back before that connection builds its next request; a failed
    // rotation drops its chain (the old token is spent), and later requests show the failure.
    const idle = [...chain.initial]
    return [
      {
        method: spec.method,
        setupRequest: (req, context: ConnectionContext) => {
          context.token = idle.shift()
          return { ...req, body: `${chain.prefix}&${chain.field}=${encodeURIComponent(context.token ?? '')}` }
        },
        onResponse: (status, body, context: ConnectionContext) => {
          let next: unknown
          if (status === 200) {
            try {
              next = (JSON.parse(body) as Record<string, unknown>)[chain.field]
            } catch {
              next = undefined
            }
          }
          if (typeof next === 'string') {
            idle.push(next)
          }
          context.token = undefined
        },
      } as autocannon.Request,
    ]
  }
  if (spec.bodies !== undefined && spec.bodies.length > 0) {
    const bodies = spec.bodies
    let next = 0
    return [
      {
        method: spec.method,
        setupRequest: (req) => ({ ...req, body: bodies[next++ % bodies.length] }),
      } as autocannon.Request,
    ]
  }
  return undefined
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const requests = buildRequests(spec)
  const result = await autocannon({
    url: spec.url,
    method: spec.method,
    headers: spec.headers,
    ...(spec.body === undefined ? {} : { body: spec.body }),
    ...(requests === undefined ? {} : { requests }),
    connections: spec.connections,
    pipelining: 1,
    duration: spec.durationSeconds,
    timeout: 10,
  })
  const elapsedSeconds = Math.max((result.finish.getTime() - result.start.getTime()) / 1000, 0.001)
  const statusCodes: Record<string, number> = {}
  const stats = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats
  for (const [code, entry] of Object.entries(stats ?? {})) {
    statusCodes[code] = entry.count
  }
  const total = result.requests.total
  return {
    requests: total,
    rps: total / elapsedSeconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    durationSeconds: elapsedSeconds,
  }
}

interface LoadMessage {
  id: number
  spec: LoadSpec
}

if (process.send !== undefined) {
  process.on('message', (message: LoadMessage) => {
    runLoad(message.spec).then(
      (result) => process.send?.({ id: message.id, result }),
      (error: unknown) =>
        process.send?.({ id: message.id, error: error instanceof Error ? error.message : String(error) }),
    )
  })
}
