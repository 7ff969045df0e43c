import { describe, expect, it } from 'vitest'
import { matchesRegisteredRedirectUri } from '../../functions/oauth/redirect-uri'
import { adminClient, authorize, exchangeCode, obtainCode, pkce, seedUser } from '../helpers/oauth'

describe('loopback redirect URIs match on any port for every client (RFC 8252 §7.3)', () => {
  it('a web client registered with http://127.0.0.1:3000/cb gets a code at another port, and exchanges it', async () => {
    const client = await adminClient({
      client_name: 'Loopback web',
      redirect_uris: ['http://127.0.0.1:3000/cb', 'http://[::1]:3000/cb'],
      grant_types: ['authorization_code'],
      scope: 'openid',
      first_party: true,
    })
    const user = await seedUser()
    for (const redirectUri of ['http://127.0.0.1:49152/cb', 'http://[::1]:8080/cb']) {
      const result = await obtainCode({ ...client, redirect_uris: [redirectUri] }, user, { scope: 'openid' })
      const res = await exchangeCode(client, result)
      expect(res.status).toBe(200)
    }
  })

  it('a different path or host at another port is still refused; localhost stays exact for web clients', async () => {
    const client = await adminClient({
      client_name: 'Loopback web strict',
      redirect_uris: ['http://127.0.0.1:3000/cb', 'http://localhost:3000/cb'],
      grant_types: ['authorization_code'],
      scope: 'openid',
      first_party: true,
    })
    const user = await seedUser()
    const p = await pkce()
    for (const redirectUri of [
      'http://127.0.0.1:4000/other',
      'http://localhost:4000/cb',
      'https://127.0.0.1:3000/cb',
    ]) {
      const res = await authorize(
        {
          response_type: 'code',
          client_id: client.client_id,
          redirect_uri: redirectUri,
          code_challenge: p.challenge,
          code_challenge_method: 'S256',
          scope: 'openid',
        },
        user.cookie,
      )
      expect(res.status, redirectUri).toBe(400)
      expect(res.headers.get('location')).toBeNull()
    }
  })

  it('the matcher: IP literals any port for web and native, localhost any port only for native', () => {
    expect(matchesRegisteredRedirectUri(['http://127.0.0.1/cb'], 'http://127.0.0.1:5555/cb', 'web')).toBe(
      true,
    )
    expect(matchesRegisteredRedirectUri(['http://[::1]:1/cb'], 'http://[::1]:2/cb', 'web')).toBe(true)
    expect(matchesRegisteredRedirectUri(['http://localhost:1/cb'], 'http://localhost:2/cb', 'web')).toBe(
      false,
    )
    expect(matchesRegisteredRedirectUri(['http://localhost:1/cb'], 'http://localhost:2/cb', 'native')).toBe(
      true,
    )
    expect(matchesRegisteredRedirectUri(['http://127.0.0.1:1/cb'], 'http://[::1]:1/cb', 'web')).toBe(false)
    expect(matchesRegisteredRedirectUri(['http://127.0.0.1:1/cb'], 'http://127.0.0.1:2/cb?x=1', 'web')).toBe(
      false,
    )
  })
})
