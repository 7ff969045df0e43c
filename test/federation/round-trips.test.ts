import { describe, expect, it } from 'vitest'
import { uniqueEmail } from '../helpers/accounts'
import { expectRoundTrips, roundTripsOnceAtLeast } from '../helpers/round-trips'
import { beginFlow, createStoredProvider, FED, finish, githubUser, oidcUser } from './flow'

// Database round trips of the federated flow (the gateway counts them per request id). The
// upstream calls (token, /user, userinfo…) are not database round trips and are not counted.

const VARS = { ...FED, OUTBOUND_ALLOW_LOOPBACK: 'true' }

describe('federated sign-in: database round trips', () => {
  it('start: one (the flow row); a stored provider: two (its row, then the flow row)', async () => {
    const configured = await beginFlow('github', githubUser(uniqueEmail()))
    await expectRoundTrips(configured.start, { httpRequests: 1 })
    const slug = await storedProvider()
    const stored = await beginFlow(slug, oidcUser(uniqueEmail()), { vars: VARS })
    await expectRoundTrips(stored.start, { httpRequests: 2 })
  })

  it('callback: a stored provider costs no more than a configured one (its row is read in the consume batch)', async () => {
    // The same OpenID fake behind a deployment provider (acme) and a stored one.
    const slug = await storedProvider()
    const configured = await finish(await beginFlow('acme', oidcUser(uniqueEmail()), { vars: VARS }), VARS)
    const stored = await finish(await beginFlow(slug, oidcUser(uniqueEmail()), { vars: VARS }), VARS)
    expect([configured.status, stored.status]).toEqual([303, 303])
    const figure = await roundTripsOnceAtLeast(configured, 3)
    // consume; identity + email + allowlist read; the write batch (plus what sign-in policy reads).
    expect(figure.httpRequests).toBeGreaterThanOrEqual(3)
    await expectRoundTrips(stored, { httpRequests: figure.httpRequests })
  })

  it('a refused callback: the consume, and the failed-login audit row off the critical path', async () => {
    const flow = await beginFlow('github', githubUser(uniqueEmail()), { providerError: 'access_denied' })
    const res = await finish(flow)
    expect(res.status).toBe(400)
    await expectRoundTrips(res, { httpRequests: 2 })
  })
})

async function storedProvider(): Promise<string> {
  return (await createStoredProvider(VARS)).slug
}
