import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { createDb } from '../../db/client'
import { parseConfig } from '../../functions/config'
import { KEY_CACHE_TTL_SECONDS, keyRing, resetKeyCache } from '../../functions/tokens/keys'

function setup() {
  const config = parseConfig(env)
  const db = createDb({
    databaseUrl: config.databaseUrl,
    gatewayUrl: config.dbGatewayUrl,
    waitUntil: () => {},
  })
  return { config, db }
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
})
