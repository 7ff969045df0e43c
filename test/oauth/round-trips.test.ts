import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  exchangeCode,
  obtainCode,
  postForm,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, describeResponse } from '../helpers/worker'

/** Postgres round trips the gateway counted for one request (by its x-request-id). */
async function roundTrips(res: Response): Promise<number> {
  // Audit rows go through waitUntil after the response; let them land so they are counted apart.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const id = res.headers.get('x-request-id') ?? ''
  const stats = (await (await fetch(`${env.DB_GATEWAY_URL}/__stats?request_id=${id}`)).json()) as {
    httpRequests: number
  }
  return stats.httpRequests
}

// Each budget counts the audit insert (waitUntil, off the critical path) as one.
describe('round trips to Postgres per request', () => {
  it('token endpoint: client_credentials 1 (+1 audit), authorization_code 2 (+1), refresh_token 2 (+1)', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    await clientCredentialsToken(machine) // warm the key cache
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(machine))
    expect(cc.status, await describeResponse(cc)).toBe(200)
    expect(await roundTrips(cc)).toBe(2)

    const client = await webClient()
    const user = await seedUser()
    const code = await exchangeCode(client, await obtainCode(client, user))
    expect(code.status).toBe(200)
    expect(await roundTrips(code)).toBe(3)
    const tokens = (await code.json()) as TokenSet
    const rotated = await refresh(client, tokens.refresh_token ?? '')
    expect(rotated.status).toBe(200)
    expect(await roundTrips(rotated)).toBe(3)

    const intro = await postForm('/oauth/introspect', { token: tokens.access_token }, basicAuth(client))
    expect(await intro.json()).toMatchObject({ active: true })
    expect(await roundTrips(intro)).toBe(1)

    const jwks = await call('/.well-known/jwks.json')
    expect(await roundTrips(jwks)).toBe(0)
  })

  it('userinfo: 1 (the token state rides in the statement that reads the user)', async () => {
    const client = await webClient()
    const user = await seedUser()
    const tokens = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const bearer = { headers: { authorization: `Bearer ${tokens.access_token}` } }
    const info = await call('/oauth/userinfo', bearer)
    expect(info.status, await describeResponse(info)).toBe(200)
    expect(await info.json()).toMatchObject({ sub: user.id, email: user.email })
    expect(await roundTrips(info)).toBe(1)

    // Same single statement, so revocation must still be seen.
    const revoked = await postForm('/oauth/revoke', { token: tokens.access_token }, basicAuth(client))
    expect(revoked.status).toBe(200)
    const after = await call('/oauth/userinfo', bearer)
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toContain('invalid_token')
    expect(await roundTrips(after)).toBe(1)
  })
})
