import { randomBytes } from 'node:crypto'
import { checksumOf, SECRET_LENGTH } from '../../functions/apikeys/key-format'
import { readGatewayCounts } from './round-trips'

/**
 * A flood of made-up, well-formed keys (valid checksum, no row): each distinct key may cost
 * Postgres one lookup per isolate, and a second pass over the same keys none (the negative
 * cache). Counted by the gateway, not assumed.
 */

export interface FloodResult {
  keys: number
  /** SQL-over-HTTP round trips the gateway saw under the flood requests' ids, per pass. */
  firstPassLookups: number
  secondPassLookups: number
  /** Flood requests that caused more than one round trip (both passes). */
  requestsOverOne: number
  /** Round trips during the passes under no flood request's id (background work of the isolate). */
  untagged: number
  firstPassSeconds: number
  secondPassSeconds: number
  /** Answers other than 200 NOT_FOUND. */
  unexpected: number
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

export function madeUpKey(): string {
  let secret = ''
  for (const byte of randomBytes(SECRET_LENGTH * 2)) {
    if (byte < 248 && secret.length < SECRET_LENGTH) {
      secret += BASE62.charAt(byte % 62)
    }
  }
  const body = `pk_test_${secret}`
  return `${body}${checksumOf(body)}`
}

export async function runFlood(options: {
  base: string
  gatewayUrl: string
  authorization: string
  keys: number
  parallel: number
}): Promise<FloodResult> {
  const keys = Array.from({ length: options.keys }, madeUpKey)
  let unexpected = 0
  let requestsOverOne = 0
  let untagged = 0
  async function pass(): Promise<{ lookups: number; seconds: number }> {
    const requestIds: string[] = []
    const before = await readGatewayCounts(options.gatewayUrl)
    const started = performance.now()
    let next = 0
    async function lane(): Promise<void> {
      while (next < keys.length) {
        const key = keys[next++]
        const res = await fetch(`${options.base}/api-keys/verify`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: options.authorization },
          body: JSON.stringify({ key, endpoint: '/flood' }),
          signal: AbortSignal.timeout(30_000),
        })
        const text = await res.text()
        const requestId = res.headers.get('x-request-id')
        if (requestId !== null) {
          requestIds.push(requestId)
        }
        if (res.status !== 200 || !text.includes('NOT_FOUND')) {
          unexpected++
        }
      }
    }
    await Promise.all(Array.from({ length: options.parallel }, lane))
    const seconds = (performance.now() - started) / 1000
    // Work left to waitUntil lands in the totals before they are read.
    await new Promise((resolveWait) => setTimeout(resolveWait, 300))
    const after = await readGatewayCounts(options.gatewayUrl)
    let lookups = 0
    for (const requestId of requestIds) {
      const counts = await readGatewayCounts(options.gatewayUrl, requestId)
      lookups += counts.httpRequests
      if (counts.httpRequests > 1) {
        requestsOverOne++
      }
    }
    untagged += after.httpRequests - before.httpRequests - lookups
    return { lookups, seconds }
  }
  const first = await pass()
  const second = await pass()
  return {
    keys: keys.length,
    firstPassLookups: first.lookups,
    secondPassLookups: second.lookups,
    firstPassSeconds: first.seconds,
    secondPassSeconds: second.seconds,
    requestsOverOne,
    untagged,
    unexpected,
  }
}
