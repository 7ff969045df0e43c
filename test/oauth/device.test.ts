import { sql } from 'drizzle-orm'
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb } from '../helpers/db'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  basicAuth,
  DEVICE_GRANT,
  deviceDecide,
  devicePoll,
  deviceStart,
  ISSUER,
  postForm,
  publicDeviceClient,
  type SeededUser,
  seedUser,
  setUserStatus,
  type TokenSet,
  verifyIdToken,
} from '../helpers/oauth'
import { call, describeResponse } from '../helpers/worker'

function fetchForm(user: SeededUser, form: Record<string, string>, csrfCookie: string): Promise<Response> {
  return call('/device', {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `${user.cookie}; portcullis_csrf=${csrfCookie}`,
    },
    body: new URLSearchParams(form).toString(),
  })
}

const start = (clientId: string) => deviceStart(clientId)
const poll = devicePoll
const decide = deviceDecide

describe('device authorization (RFC 8628)', () => {
  it('pending → slow_down → approved → tokens, then the code is spent', async () => {
    const client = await publicDeviceClient()
    const device = await start(client.client_id)
    expect(device.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/)
    expect(device.verification_uri).toMatch(/\/device$/)
    expect(await (await poll(client.client_id, device.device_code)).json()).toMatchObject({
      error: 'authorization_pending',
    })
    expect(await (await poll(client.client_id, device.device_code)).json()).toMatchObject({
      error: 'slow_down',
    })
    const user = await seedUser()
    const approved = await decide(user, device.user_code.toLowerCase(), 'approve')
    expect(approved.status, await describeResponse(approved)).toBe(200)
    const res = await poll(client.client_id, device.device_code)
    expect(res.status, await describeResponse(res)).toBe(200)
    const tokens = (await res.json()) as TokenSet
    expect(tokens.refresh_token).toBeTruthy()
    // A relying party's checks: signature (JWKS), iss, aud, exp, and the approving user as sub.
    const claims = await verifyIdToken(tokens.id_token, { clientId: client.client_id, subject: user.id })
    expect(claims.aud).toBe(client.client_id)
    expect(await (await poll(client.client_id, device.device_code)).json()).toMatchObject({
      error: 'invalid_grant',
    })
  })

  it('denied → access_denied; a signed-out visitor is sent to /login; bad CSRF is refused', async () => {
    const client = await adminClient({
      grant_types: [DEVICE_GRANT],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    })
    const device = await start(client.client_id)
    const signedOut = await call(`/device?user_code=${device.user_code}`, { redirect: 'manual' })
    expect(signedOut.status).toBe(302)
    expect(signedOut.headers.get('location')).toMatch(/^\/login\?return_to=/)
    const user = await seedUser()
    const forged = await fetchForm(
      user,
      { user_code: device.user_code, csrf_token: 'x', decision: 'approve' },
      'y',
    )
    expect(forged.status).toBe(403)
    expect((await decide(user, device.user_code, 'deny')).status).toBe(200)
    expect(await (await poll(client.client_id, device.device_code)).json()).toMatchObject({
      error: 'access_denied',
    })
  })

  it('binds a public client’s refresh token to its DPoP key; a confidential client polls with its secret', async () => {
    const publicClient = await publicDeviceClient()
    const user = await seedUser()
    const device = await start(publicClient.client_id)
    expect((await decide(user, device.user_code, 'approve')).status).toBe(200)
    const key = await dpopKey()
    const bound = await postForm(
      '/oauth/token',
      { grant_type: DEVICE_GRANT, device_code: device.device_code, client_id: publicClient.client_id },
      { dpop: await dpopProof(key, { htu: `${ISSUER}/oauth/token` }) },
    )
    expect(bound.status, await describeResponse(bound)).toBe(200)
    const tokens = (await bound.json()) as TokenSet & { token_type: string }
    expect(tokens.token_type).toBe('DPoP')
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: key.jkt })
    const [family] = await queryRows<{ dpop_jkt: string | null; n: number }>(
      testDb(),
      sql`select max(r.dpop_jkt) as dpop_jkt, count(*)::int as n from refresh_tokens r
          join oauth_clients c on c.id = r.client_id where c.client_id = ${publicClient.client_id}`,
    )
    expect(family).toEqual({ dpop_jkt: key.jkt, n: 1 })
    // Without the key, the refresh token is worth nothing.
    const stolen = await postForm('/oauth/token', {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token ?? '',
      client_id: publicClient.client_id,
    })
    expect(stolen.status).toBe(400)

    const confidential = await adminClient({
      grant_types: [DEVICE_GRANT],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid',
    })
    const started = await postForm(
      '/oauth/device_authorization',
      { scope: 'openid' },
      basicAuth(confidential),
    )
    expect(started.status, await describeResponse(started)).toBe(200)
    const second = (await started.json()) as { device_code: string; user_code: string }
    expect((await decide(user, second.user_code, 'approve')).status).toBe(200)
    const form = { grant_type: DEVICE_GRANT, device_code: second.device_code }
    const wrong = await postForm('/oauth/token', form, basicAuth({ ...confidential, client_secret: 'wrong' }))
    expect(wrong.status).toBe(401)
    expect(await wrong.json()).toMatchObject({ error: 'invalid_client' })
    const polled = await postForm('/oauth/token', form, basicAuth(confidential))
    expect(polled.status, await describeResponse(polled)).toBe(200)
    // No refresh_token grant registered: no refresh token.
    expect(((await polled.json()) as TokenSet).refresh_token).toBeUndefined()
  })

  it('an approved code of a user suspended since is consumed without tokens', async () => {
    const client = await publicDeviceClient()
    const user = await seedUser()
    const device = await start(client.client_id)
    expect((await decide(user, device.user_code, 'approve')).status).toBe(200)
    await setUserStatus(user.id, 'suspended')
    expect(await (await poll(client.client_id, device.device_code)).json()).toMatchObject({
      error: 'invalid_grant',
    })
    const [row] = await queryRows<{ status: string }>(
      testDb(),
      sql`select status from device_codes where client_id = (select id from oauth_clients where client_id = ${client.client_id})`,
    )
    expect(row?.status).toBe('consumed')
    // Nothing was issued for the suspended user: no refresh family, no token_issued.
    const [issued] = await queryRows<{ refresh: number; audited: number }>(
      testDb(),
      sql`select (select count(*)::int from refresh_tokens r join oauth_clients c on c.id = r.client_id
                  where c.client_id = ${client.client_id}) as refresh,
                 (select count(*)::int from audit_events
                  where type = 'token_issued' and client_id = ${client.client_id}) as audited`,
    )
    expect(issued).toEqual({ refresh: 0, audited: 0 })
  })
})
