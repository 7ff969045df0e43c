import { describe, expect, it } from 'vitest'
import {
  adminClient,
  DEVICE_GRANT,
  deviceDecide,
  devicePoll,
  deviceStart,
  type SeededUser,
  seedUser,
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
    const client = await adminClient({
      grant_types: [DEVICE_GRANT, 'refresh_token'],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    })
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
})
