import { createLocalJWKSet, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import {
  approveConsent,
  authorize,
  codeRequest,
  exchangeCode,
  fetchJwks,
  ISSUER,
  obtainCode,
  pkce,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, describeResponse } from '../helpers/worker'

async function jwks() {
  return createLocalJWKSet(await fetchJwks())
}

describe('authorization code flow', () => {
  it('sends a signed-out user to /login with the request as return_to', async () => {
    const client = await webClient()
    const p = await pkce()
    const res = await authorize(codeRequest(client, p))
    expect(res.status).toBe(302)
    const location = res.headers.get('location') ?? ''
    expect(location).toMatch(/^\/login\?return_to=/)
    expect(decodeURIComponent(location.split('return_to=')[1] ?? '')).toMatch(/^\/oauth\/authorize\?/)
  })

  it('consent → code (with state and iss) → tokens, id_token and userinfo; consent is remembered', async () => {
    const client = await webClient()
    const user = await seedUser()
    const p = await pkce()
    const params = codeRequest(client, p, {
      scope: 'openid email offline_access',
      state: 'xyz',
      nonce: 'n-123',
    })
    const page = await authorize(params, user.cookie)
    expect(page.status, await describeResponse(page)).toBe(200)
    expect(page.headers.get('x-frame-options')).toBe('DENY')
    const html = await page.clone().text()
    expect(html).toContain('action="/oauth/consent"')
    expect(html).toContain('value="approve"')
    const location = await approveConsent(page, user)
    const url = new URL(location ?? '')
    expect(url.origin + url.pathname).toBe('https://app.example.com/callback')
    expect(url.searchParams.get('state')).toBe('xyz')
    expect(url.searchParams.get('iss')).toBe(ISSUER)
    const code = url.searchParams.get('code') ?? ''
    const res = await exchangeCode(client, { code, pkce: p, redirectUri: client.redirect_uris[0] ?? '' })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const tokens = (await res.json()) as TokenSet
    expect(tokens.refresh_token).toBeTruthy()
    const keys = await jwks()
    const id = await jwtVerify(tokens.id_token ?? '', keys, {
      issuer: ISSUER,
      audience: client.client_id,
      algorithms: ['RS256'],
    })
    expect(id.payload).toMatchObject({ sub: user.id, nonce: 'n-123', email: user.email })
    const at = await jwtVerify(tokens.access_token, keys, { issuer: ISSUER, audience: ISSUER, typ: 'at+jwt' })
    expect(at.payload).toMatchObject({
      sub: user.id,
      client_id: client.client_id,
      scope: 'openid email offline_access',
    })

    const info = await call('/oauth/userinfo', {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    })
    expect(info.status, await describeResponse(info)).toBe(200)
    expect(await info.json()).toMatchObject({ sub: user.id, email: user.email })

    // Remembered consent: straight back with a code.
    const again = await authorize({ ...params, code_challenge: (await pkce()).challenge }, user.cookie)
    expect(again.status).toBe(302)
    expect(again.headers.get('location')).toContain('code=')
  })

  it('deny redirects with access_denied, state and iss', async () => {
    const client = await webClient()
    const user = await seedUser()
    const p = await pkce()
    const page = await authorize(
      codeRequest(client, p, {
        state: 's1',
      }),
      user.cookie,
    )
    const location = new URL((await approveConsent(page, user, 'deny')) ?? '')
    expect(location.searchParams.get('error')).toBe('access_denied')
    expect(location.searchParams.get('state')).toBe('s1')
    expect(location.searchParams.get('iss')).toBe(ISSUER)
  })

  it('first-party clients skip consent; prompt=none without consent answers consent_required', async () => {
    const firstParty = await webClient({ first_party: true })
    const user = await seedUser()
    const p = await pkce()
    const base = {
      response_type: 'code',
      code_challenge: p.challenge,
      code_challenge_method: 'S256',
      state: 'q',
    }
    const direct = await authorize({ ...base, client_id: firstParty.client_id }, user.cookie)
    expect(direct.status).toBe(302)
    expect(direct.headers.get('location')).toContain('code=')
    const thirdParty = await webClient()
    const none = await authorize({ ...base, client_id: thirdParty.client_id, prompt: 'none' }, user.cookie)
    expect(new URL(none.headers.get('location') ?? '').searchParams.get('error')).toBe('consent_required')
    const signedOut = await authorize({ ...base, client_id: thirdParty.client_id, prompt: 'none' })
    expect(new URL(signedOut.headers.get('location') ?? '').searchParams.get('error')).toBe('login_required')
  })

  it('rotates refresh tokens and may narrow the scope', async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const res = await refresh(client, first.refresh_token ?? '', { scope: 'openid' })
    expect(res.status, await describeResponse(res)).toBe(200)
    const second = (await res.json()) as TokenSet
    expect(second.scope).toBe('openid')
    expect(second.refresh_token).not.toBe(first.refresh_token)
    const third = await refresh(client, second.refresh_token ?? '')
    expect(third.status, await describeResponse(third)).toBe(200)
    expect(((await third.json()) as TokenSet).scope).toBe('openid email offline_access')
  })

  it('an admin-scoped token of an is_admin user opens the admin API; without is_admin it does not', async () => {
    const client = await webClient({ first_party: true, scope: 'openid admin' })
    const admin = await seedUser({ isAdmin: true })
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, admin, { scope: 'openid admin' }))
    ).json()) as TokenSet
    const ok = await call('/admin/clients?limit=1', {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    })
    expect(ok.status, await describeResponse(ok)).toBe(200)
    const plain = await seedUser()
    const weak = (await (
      await exchangeCode(client, await obtainCode(client, plain, { scope: 'openid admin' }))
    ).json()) as TokenSet
    const refused = await call('/admin/clients', {
      headers: { authorization: `Bearer ${weak.access_token}` },
    })
    expect(refused.status).toBe(403)
  })
})
