import { env } from 'cloudflare:test'
import { type GatewayCounts, readGatewayCounts } from '../bench/round-trips'
import { consistently, eventually } from './poll'

export type RoundTrips = GatewayCounts

/** Database round trips the gateway has counted so far for one Worker request (by its x-request-id). */
export async function roundTrips(res: Response): Promise<RoundTrips> {
  const requestId = res.headers.get('x-request-id')
  if (requestId === null) {
    throw new Error('response has no x-request-id')
  }
  return readGatewayCounts(env.DB_GATEWAY_URL ?? '', requestId)
}

/**
 * The round trips of a request once at least `httpRequests` have landed (waitUntil work
 * arrives after the response). Throws on timeout, so a deferred write that never happens
 * fails the test; callers then assert the exact figure, so one too many fails as well.
 */
export function roundTripsOnceAtLeast(res: Response, httpRequests: number, timeoutMs = 10_000) {
  return eventually(
    () => roundTrips(res),
    (r) => r.httpRequests >= httpRequests,
    timeoutMs,
    `${httpRequests} round trips for ${res.headers.get('x-request-id')}`,
  )
}

/**
 * Asserts a request's round trips are exactly `expected` once the figure is reached and stay
 * there for a short window (a late waitUntil write would push it past).
 */
export async function expectRoundTrips(
  res: Response,
  expected: Partial<RoundTrips> & { httpRequests: number },
): Promise<RoundTrips> {
  await roundTripsOnceAtLeast(res, expected.httpRequests)
  return consistently(
    () => roundTrips(res),
    (r) => Object.entries(expected).every(([k, v]) => r[k as keyof RoundTrips] === v),
    300,
    `round trips ${JSON.stringify(expected)} for ${res.headers.get('x-request-id')}`,
  )
}
