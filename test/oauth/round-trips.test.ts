import { describe, expect, it } from 'vitest'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  deviceDecide,
  devicePoll,
  deviceStart,
  exchangeCode,
  ISSUER,
  obtainCode,
  postForm,
  publicDeviceClient,
  refresh,
  seedUser,
  TOKEN_EXCHANGE_GRANT,
  type TokenSet,
  tokenExchange,
  webClient,
} from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

// Budgets are in all (issue 16): client authentication, the grant and its audit row share one statement.
describe('round trips to Postgres per request', () => {
  it('token endpoint: client_credentials, authorization_code and refresh_token are 1 in all', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    await clientCredentialsToken(machine) // warm the key cache
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(machine))
    expect(cc.status, await describeResponse(cc)).toBe(200)
    await expectRoundTrips(cc, { httpRequests: 1 })

    const client = await webClient()
    const user = await seedUser()
    const code = await exchangeCode(client, await obtainCode(client, user))
    expect(code.status).toBe(200)
    await expectRoundTrips(code, { httpRequests: 1 })
    const tokens = (await code.json()) as TokenSet
    const rotated = await refresh(client, tokens.refresh_token ?? '')
    expect(rotated.status).toBe(200)
    await expectRoundTrips(rotated, { httpRequests: 1 })

    const intro = await postForm('/oauth/introspect', { token: tokens.access_token }, basicAuth(client))
    expect(await intro.json()).toMatchObject({ active: true })
    await expectRoundTrips(intro, { httpRequests: 1 })

    const jwks = await call('/.well-known/jwks.json')
    await expectRoundTrips(jwks, { httpRequests: 0 })
  })

  it('device_code and token exchange are 1 in all too, pending polls included', async () => {
    const device = await publicDeviceClient()
    const started = await deviceStart(device.client_id)
    const pending = await devicePoll(device.client_id, started.device_code)
    expect(await pending.json()).toMatchObject({ error: 'authorization_pending' })
    await expectRoundTrips(pending, { httpRequests: 1 })
    const user = await seedUser()
    const approved = await deviceDecide(user, started.user_code, 'approve')
    expect(approved.status, await describeResponse(approved)).toBe(200)
    const polled = await devicePoll(device.client_id, started.device_code)
    expect(polled.status, await describeResponse(polled)).toBe(200)
    expect(await polled.json()).toMatchObject({
      refresh_token: expect.any(String),
      id_token: expect.any(String),
    })
    await expectRoundTrips(polled, { httpRequests: 1 })

    // RFC 8693: the subject token's signature is checked in the Worker, its state in the statement.
    const app = await webClient()
    const tokens = (await (await exchangeCode(app, await obtainCode(app, user))).json()) as TokenSet
    const exchanger = await adminClient({ grant_types: [TOKEN_EXCHANGE_GRANT], scope: 'openid' })
    for (let i = 0; i < 2; i++) {
      const exchanged = await tokenExchange(exchanger, { subject_token: tokens.access_token })
      expect(exchanged.status, await describeResponse(exchanged)).toBe(200)
      await expectRoundTrips(exchanged, { httpRequests: 1 })
    }
  })

  it('userinfo: 1 (the token state rides in the statement that reads the user)', async () => {
    const client = await webClient()
    const user = await seedUser()
    const tokens = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const bearer = { headers: { authorization: `Bearer ${tokens.access_token}` } }
    const info = await call('/oauth/userinfo', bearer)
    expect(info.status, await describeResponse(info)).toBe(200)
    expect(await info.json()).toMatchObject({ sub: user.id, email: user.email })
    await expectRoundTrips(info, { httpRequests: 1 })

    // Same single statement, so revocation must still be seen.
    const revoked = await postForm('/oauth/revoke', { token: tokens.access_token }, basicAuth(client))
    expect(revoked.status).toBe(200)
    const after = await call('/oauth/userinfo', bearer)
    expect(after.status).toBe(401)
    expect(after.headers.get('www-authenticate')).toContain('invalid_token')
    await expectRoundTrips(after, { httpRequests: 1 })
  })

  it('introspection with a service key: 1 in all (the key and the token state share one batch)', async () => {
    const issued = await postJson('/admin/service-keys', { service_name: 'gateway' }, adminHeaders())
    expect(issued.status, await describeResponse(issued)).toBe(201)
    const { key, id } = (await issued.json()) as { key: string; id: string }
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const token = await clientCredentialsToken(machine)
    const asService = { authorization: `Bearer ${key}` }
    const active = await postForm('/oauth/introspect', { token }, asService)
    expect(await active.json()).toMatchObject({ active: true, client_id: machine.client_id })
    await expectRoundTrips(active, { httpRequests: 1 })
    const opaque = await postForm('/oauth/introspect', { token: 'not-a-jwt' }, asService)
    expect(await opaque.json()).toEqual({ active: false })
    await expectRoundTrips(opaque, { httpRequests: 1 })
    // A key that stopped being valid refuses, though the token verified first.
    const revoked = await call(`/admin/service-keys/${id}`, {
      method: 'DELETE',
      headers: adminHeaders(),
    })
    expect(revoked.status).toBe(200)
    const refused = await postForm('/oauth/introspect', { token }, asService)
    expect(refused.status).toBe(401)
    await expectRoundTrips(refused, { httpRequests: 1 })
  })

  it('userinfo with a DPoP-bound token: 1 (the proof’s jti is spent in the batch that reads the user)', async () => {
    const client = await webClient()
    const key = await dpopKey()
    const code = await exchangeCode(
      client,
      await obtainCode(client, await seedUser()),
      {},
      { dpop: await dpopProof(key, { htu: `${ISSUER}/oauth/token` }) },
    )
    expect(code.status, await describeResponse(code)).toBe(200)
    const { access_token: token } = (await code.json()) as TokenSet
    const htu = `${ISSUER}/oauth/userinfo`
    const proof = await dpopProof(key, { htu, htm: 'GET', accessToken: token })
    const headers = { authorization: `DPoP ${token}`, dpop: proof }
    const info = await call('/oauth/userinfo', { headers })
    expect(info.status, await describeResponse(info)).toBe(200)
    await expectRoundTrips(info, { httpRequests: 1 })
    const replay = await call('/oauth/userinfo', { headers })
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toContain('invalid_dpop_proof')
    await expectRoundTrips(replay, { httpRequests: 1 })
  })
})
