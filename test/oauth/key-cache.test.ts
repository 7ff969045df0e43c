import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { createDb, withRequestScope } from '../../db/client'
import { parseConfig } from '../../functions/config'
import {
  KEY_CACHE_TTL_SECONDS,
  KEY_REFRESH_AHEAD_SECONDS,
  KEY_RING_REFRESH_SCOPE,
  keyRing,
  resetKeyCache,
} from '../../functions/tokens/keys'
import { readGatewayCounts } from '../bench/round-trips'

/** A request's database handle; `deferred` holds what it handed to waitUntil. */
function setup(gatewayUrl?: string) {
  const config = parseConfig(env)
  const deferred: Promise<unknown>[] = []
  const db = createDb({
    databaseUrl: config.databaseUrl,
    gatewayUrl: gatewayUrl ?? config.dbGatewayUrl,
    waitUntil: (work) => deferred.push(work),
  })
  return { config, db, deferred }
}

const seconds = (from: Date, s: number) => new Date(from.getTime() + s * 1000)

/** SQL-over-HTTP round trips the local gateway has counted under one request id. */
async function gatewayCalls(requestId: string): Promise<number> {
  return (await readGatewayCounts(env.DB_GATEWAY_URL ?? '', requestId)).httpRequests
}

describe('per-isolate signing-key cache', () => {
  it('lets concurrent requests on a cold isolate each load the key set (no shared in-flight load)', async () => {
    const { config, db } = setup()
    resetKeyCache()
    const sets = await Promise.all(Array.from({ length: 10 }, () => keyRing(db, config)))
    for (const keys of sets) {
      expect(keys.map((k) => k.alg)).toEqual(expect.arrayContaining(['ES256', 'RS256']))
    }
  })

  it('serves the stale set to everyone else while one request refreshes it', async () => {
    const { config, db } = setup()
    resetKeyCache()
    const t0 = new Date()
    const warm = await keyRing(db, config, t0)
    expect(await keyRing(db, config, t0)).toBe(warm)
    const stale = new Date(t0.getTime() + (KEY_CACHE_TTL_SECONDS + 1) * 1000)
    const refreshing = keyRing(db, config, stale)
    // Answered at once from what is known, not by waiting on the refresh another request began.
    expect(await keyRing(db, config, stale)).toBe(warm)
    const refreshed = await refreshing
    expect(refreshed).not.toBe(warm)
    expect(await keyRing(db, config, stale)).toBe(refreshed)
  })

  it('a busy isolate re-reads the set in the background from KEY_REFRESH_AHEAD_SECONDS: no request waits for it', async () => {
    const { config, db, deferred } = setup()
    resetKeyCache()
    const t0 = new Date()
    const warm = await keyRing(db, config, t0)
    // Younger than the refresh-ahead age: nothing is read.
    expect(await keyRing(db, config, seconds(t0, KEY_REFRESH_AHEAD_SECONDS - 1))).toBe(warm)
    expect(deferred).toHaveLength(0)
    // Older: the request gets the cached set at once and one background read starts; a request
    // meanwhile starts no second one.
    const ahead = seconds(t0, KEY_REFRESH_AHEAD_SECONDS + 1)
    expect(await keyRing(db, config, ahead)).toBe(warm)
    expect(await keyRing(db, config, ahead)).toBe(warm)
    expect(deferred).toHaveLength(1)
    await Promise.all(deferred)
    const refreshed = await keyRing(db, config, ahead)
    expect(refreshed).not.toBe(warm)
    expect(refreshed.map((k) => k.kid).sort()).toEqual(warm.map((k) => k.kid).sort())
    // The new copy is young again: the next request reads nothing.
    expect(await keyRing(db, config, seconds(ahead, 1))).toBe(refreshed)
    expect(deferred).toHaveLength(1)
  })

  it("counts the background read as the isolate's upkeep, not as a round trip of the request that started it", async () => {
    const { config, db, deferred } = setup()
    resetKeyCache()
    const t0 = new Date()
    await keyRing(db, config, t0)
    const requestId = `key-ring-${crypto.randomUUID()}`
    const upkeepBefore = await gatewayCalls(KEY_RING_REFRESH_SCOPE)
    await withRequestScope(requestId, () => keyRing(db, config, seconds(t0, KEY_REFRESH_AHEAD_SECONDS + 1)))
    expect(deferred).toHaveLength(1)
    await Promise.all(deferred)
    expect(await gatewayCalls(requestId)).toBe(0)
    // Other files' isolates may refresh their rings meanwhile: at least this one read.
    expect(await gatewayCalls(KEY_RING_REFRESH_SCOPE)).toBeGreaterThanOrEqual(upkeepBefore + 1)
  })

  it('a failed background read keeps the copy, rejects nothing, and is not retried at once', async () => {
    const { config, db } = setup()
    resetKeyCache()
    const t0 = new Date()
    const warm = await keyRing(db, config, t0)
    // The same isolate, its database unreachable (nothing listens on port 9 of loopback).
    const away = setup('http://127.0.0.1:9')
    const ahead = seconds(t0, KEY_REFRESH_AHEAD_SECONDS + 1)
    expect(await keyRing(away.db, config, ahead)).toBe(warm)
    expect(away.deferred).toHaveLength(1)
    await expect(Promise.all(away.deferred)).resolves.toBeDefined()
    // Within a few seconds of the failure, neither a fresh-enough nor a stale copy retries.
    expect(await keyRing(away.db, config, seconds(ahead, 1))).toBe(warm)
    expect(await keyRing(away.db, config, seconds(t0, KEY_CACHE_TTL_SECONDS + 1))).toBe(warm)
    expect(away.deferred).toHaveLength(1)
    resetKeyCache()
  })
})
