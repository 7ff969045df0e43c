import { createLocalJWKSet, decodeProtectedHeader, type JWK, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import {
  adminClient,
  basicAuth,
  exchangeCode,
  fetchJwks,
  ISSUER,
  obtainCode,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, callWith, describeResponse } from '../helpers/worker'

async function servedJwks(): Promise<JWK[]> {
  return (await fetchJwks()).keys
}

function tokenRequest(client: TestClient): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'apikeys:verify' }).toString(),
  }
}

describe('signing algorithms', () => {
  it('signs access tokens with EdDSA when ACCESS_TOKEN_ALG=EdDSA, verifiable from the JWKS and by introspection', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const eddsa = { ACCESS_TOKEN_ALG: 'EdDSA' }
    const res = await callWith(eddsa, '/oauth/token', tokenRequest(client))
    expect(res.status, await describeResponse(res)).toBe(200)
    const { access_token } = (await res.json()) as TokenSet
    const header = decodeProtectedHeader(access_token)
    expect(header).toMatchObject({ alg: 'EdDSA', typ: 'at+jwt' })
    const published = await servedJwks()
    expect(published.find((k) => k.kid === header.kid)).toMatchObject({
      kty: 'OKP',
      crv: 'Ed25519',
      alg: 'EdDSA',
    })
    const verified = await jwtVerify(access_token, createLocalJWKSet({ keys: published }), {
      issuer: ISSUER,
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
    })
    expect(verified.payload).toMatchObject({ client_id: client.client_id, scope: 'apikeys:verify' })
    // Any deployment verifies it: the default (ES256) one introspects it as active.
    const introspected = await call('/oauth/introspect', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
      body: new URLSearchParams({ token: access_token }).toString(),
    })
    expect(await introspected.json()).toMatchObject({ active: true, client_id: client.client_id })
  })

  it('keeps ES256 access tokens by default', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await callWith({}, '/oauth/token', tokenRequest(client))
    expect(decodeProtectedHeader(((await res.json()) as TokenSet).access_token).alg).toBe('ES256')
  })

  it('refuses an unknown ACCESS_TOKEN_ALG with a 500 problem naming the variable', async () => {
    const res = await callWith({ ACCESS_TOKEN_ALG: 'HS256' }, '/openapi.json')
    expect(res.status).toBe(500)
    expect(res.headers.get('content-type')).toContain('application/problem+json')
    const body = (await res.json()) as { detail: string }
    expect(body.detail).toContain('ACCESS_TOKEN_ALG')
    expect(body.detail).not.toContain('HS256')
  })

  it('signs id_tokens with EdDSA for a client that registered it', async () => {
    const client = await webClient({ id_token_signed_response_alg: 'EdDSA', first_party: true })
    const user = await seedUser()
    const res = await exchangeCode(client, await obtainCode(client, user, { nonce: 'n-ed' }))
    expect(res.status, await describeResponse(res)).toBe(200)
    const { id_token } = (await res.json()) as TokenSet
    const id = await jwtVerify(id_token ?? '', createLocalJWKSet({ keys: await servedJwks() }), {
      issuer: ISSUER,
      audience: client.client_id,
      algorithms: ['EdDSA'],
    })
    expect(id.payload).toMatchObject({ sub: user.id, nonce: 'n-ed' })
  })

  it('advertises EdDSA among the id_token algorithms and refuses one it does not support', async () => {
    const discovery = (await (await call('/.well-known/openid-configuration')).json()) as Record<
      string,
      unknown
    >
    expect(discovery.id_token_signing_alg_values_supported).toEqual(['RS256', 'ES256', 'EdDSA'])
    const res = await call('/oauth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: ['https://app.example.com/cb'],
        id_token_signed_response_alg: 'HS256',
      }),
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_client_metadata' })
  })
})
