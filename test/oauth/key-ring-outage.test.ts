import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { createDb } from '../../db/client'
import { isDatabaseUnavailable } from '../../db/errors'
import { parseConfig } from '../../functions/config'
import {
  KEY_CACHE_TTL_SECONDS,
  keyRing,
  MAX_STALE_KEY_RING_SECONDS,
  publicJwks,
  resetKeyCache,
  signingKeyFor,
} from '../../functions/tokens/keys'

// issue 18 item 7: an outage longer than the cache TTL must not take the keys with it.
describe('the key ring while the database is away', () => {
  const config = parseConfig(env)
  // The driver's endpoint is isolate-wide: whichever createDb ran last decides where queries go.
  const live = () =>
    createDb({ databaseUrl: config.databaseUrl, gatewayUrl: config.dbGatewayUrl, waitUntil: () => {} })
  // The gateway is down: every database call fails as unavailable.
  const down = () =>
    createDb({ databaseUrl: config.databaseUrl, gatewayUrl: 'http://127.0.0.1:1', waitUntil: () => {} })

  it('serves the last good ring past its TTL (JWKS and signing), and fails once it is a day old', async () => {
    resetKeyCache()
    const t0 = new Date()
    const warm = await keyRing(live(), config, t0)
    const jwksBefore = await publicJwks(live(), config, t0)
    const dead = down()
    try {
      const later = new Date(t0.getTime() + (KEY_CACHE_TTL_SECONDS + 60) * 1000)
      expect(await keyRing(dead, config, later)).toBe(warm)
      expect((await publicJwks(dead, config, later)).keys.map((k) => k.kid)).toEqual(
        jwksBefore.keys.map((k) => k.kid),
      )
      const signer = await signingKeyFor(dead, config, 'ES256', later)
      expect(warm.map((k) => k.kid)).toContain(signer.kid)

      const tooOld = new Date(t0.getTime() + (MAX_STALE_KEY_RING_SECONDS + 1) * 1000)
      let failure: unknown
      await keyRing(dead, config, tooOld).catch((error: unknown) => {
        failure = error
      })
      expect(isDatabaseUnavailable(failure)).toBe(true)
    } finally {
      live()
      resetKeyCache()
    }
  })
})
