import { decodeJwt } from 'jose'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import { dpopKey, dpopProof } from '../helpers/dpop'
import { adminClient, basicAuth, ISSUER, type TokenSet } from '../helpers/oauth'
import { callWith } from '../helpers/worker'

const NONCE_ON = { DPOP_REQUIRE_NONCE: 'true' }
const TOKEN_URL = `${ISSUER}/oauth/token`

function tokenRequest(headers: Record<string, string>): Promise<Response> {
  return callWith(NONCE_ON, '/oauth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
  })
}

describe('DPoP server nonces (RFC 9449 §8, §9) with DPOP_REQUIRE_NONCE=true', () => {
  it('token endpoint: no nonce → use_dpop_nonce with DPoP-Nonce; that nonce works; a forged one does not', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const key = await dpopKey()
    const first = await tokenRequest({ ...basicAuth(client), dpop: await dpopProof(key, { htu: TOKEN_URL }) })
    expect(first.status).toBe(400)
    expect(((await first.json()) as { error: string }).error).toBe('use_dpop_nonce')
    const nonce = first.headers.get('dpop-nonce') ?? ''
    expect(nonce).toMatch(/^\d+\./)
    const forged = await tokenRequest({
      ...basicAuth(client),
      dpop: await dpopProof(key, { htu: TOKEN_URL, nonce: `${nonce.split('.')[0]}.AAAA` }),
    })
    expect(((await forged.json()) as { error: string }).error).toBe('use_dpop_nonce')
    const ok = await tokenRequest({
      ...basicAuth(client),
      dpop: await dpopProof(key, { htu: TOKEN_URL, nonce }),
    })
    const body = (await ok.json()) as TokenSet
    expect(ok.status, JSON.stringify(body)).toBe(200)
    expect(decodeJwt(body.access_token).cnf).toEqual({ jkt: key.jkt })
    expect(ok.headers.get('dpop-nonce')).toBeTruthy()
    // A resource request without the nonce gets the 401 challenge and the nonce.
    const verify = await callWith(NONCE_ON, '/api-keys/verify', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `DPoP ${body.access_token}`,
        dpop: await dpopProof(key, { htu: `${ISSUER}/api-keys/verify`, accessToken: body.access_token }),
      },
      body: JSON.stringify({ key: 'pk_nothing' }),
    })
    expect(verify.status).toBe(401)
    expect(verify.headers.get('www-authenticate')).toContain('error="use_dpop_nonce"')
    const again = await callWith(NONCE_ON, '/api-keys/verify', {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `DPoP ${body.access_token}`,
        dpop: await dpopProof(key, {
          htu: `${ISSUER}/api-keys/verify`,
          accessToken: body.access_token,
          nonce: verify.headers.get('dpop-nonce') ?? '',
        }),
      },
      body: JSON.stringify({ key: 'pk_nothing' }),
    })
    expect(again.status, await again.clone().text()).toBe(200)
  })

  it('interop: openid-client retries with the nonce on its own', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const config = await oidc.discovery(
      new URL(ISSUER),
      client.client_id,
      undefined,
      oidc.ClientSecretBasic(client.client_secret ?? ''),
      {
        execute: [oidc.allowInsecureRequests],
        [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) => {
          const u = new URL(url)
          return callWith(NONCE_ON, `${u.pathname}${u.search}`, init as unknown as RequestInit)
        },
      },
    )
    const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'))
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'apikeys:verify' }, { DPoP })
    expect(tokens.token_type.toLowerCase()).toBe('dpop')
  })
})
