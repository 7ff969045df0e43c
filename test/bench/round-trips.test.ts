import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { call, describeResponse } from '../helpers/worker'
import { averageCounts, readGatewayCounts, sampleRoundTrips, subtractCounts } from './round-trips'

// The bench's own counting (test/bench/round-trips.ts) on known requests: what it reports per
// request must be what the gateway saw under each request's id.
describe('bench round-trip counter', () => {
  it('counts one SQL-over-HTTP round trip per /healthz request (one SELECT)', async () => {
    const probe = await call('/healthz')
    expect(probe.status, await describeResponse(probe)).toBe(200)
    const report = await sampleRoundTrips({
      gatewayUrl: env.DB_GATEWAY_URL,
      send: () => call('/healthz'),
      samples: 3,
      source: 'tagged',
      settleMs: 0,
    })
    expect(report).toEqual({
      httpRequests: 1,
      httpQueries: 1,
      wsConnections: 0,
      wsClientMessages: 0,
      samples: 3,
      tagged: 3,
    })
  })

  it('counts nothing for a request that never reaches the database', async () => {
    const report = await sampleRoundTrips({
      gatewayUrl: env.DB_GATEWAY_URL,
      send: () => call('/openapi.json'),
      samples: 2,
      source: 'tagged',
      settleMs: 0,
    })
    expect(report.httpRequests).toBe(0)
    expect(report.httpQueries).toBe(0)
    expect(report.tagged).toBe(0)
  })

  it('reads the same per-request counts the gateway keeps under x-request-id', async () => {
    const res = await call('/healthz')
    const requestId = res.headers.get('x-request-id')
    expect(requestId).not.toBeNull()
    const counts = await readGatewayCounts(env.DB_GATEWAY_URL, requestId ?? '')
    expect(counts.httpRequests).toBe(1)
    expect(counts.httpQueries).toBe(1)
  })

  it('averages deltas of totals per request and never divides by zero', () => {
    const before = { httpRequests: 10, httpQueries: 12, wsConnections: 1, wsClientMessages: 5 }
    const after = { httpRequests: 16, httpQueries: 24, wsConnections: 4, wsClientMessages: 20 }
    expect(averageCounts(subtractCounts(after, before), 3)).toEqual({
      httpRequests: 2,
      httpQueries: 4,
      wsConnections: 1,
      wsClientMessages: 5,
    })
    expect(averageCounts(subtractCounts(after, before), 0).httpRequests).toBe(0)
  })
})
