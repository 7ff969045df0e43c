import { SELF } from 'cloudflare:test'
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose'
import * as oauth from 'oauth4webapi'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  approveConsent,
  basicAuth,
  ISSUER,
  postForm,
  seedUser,
  type TokenSet,
} from '../helpers/oauth'
import { call } from '../helpers/worker'

// openid-client talks to the Worker through SELF.fetch; the issuer is the configured one.
const options = {
  execute: [oidc.allowInsecureRequests],
  [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
    SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
}

describe('interop: openid-client (unmodified) with DPoP', () => {
  it('public client: DPoP code flow, userinfo under the DPoP scheme, DPoP refresh', async () => {
    const registered = await adminClient({
      client_name: 'openid-client DPoP',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['https://spa.example.com/cb'],
      grant_types: ['authorization_code', 'refresh_token'],
      scope: 'openid email offline_access',
      dpop_bound_access_tokens: true,
    })
    const user = await seedUser()
    const config = await oidc.discovery(
      new URL(ISSUER),
      registered.client_id,
      undefined,
      oidc.None(),
      options,
    )
    expect(config.serverMetadata().dpop_signing_alg_values_supported).toContain('ES256')
    const keyPair = await oidc.randomDPoPKeyPair('ES256')
    const DPoP = oidc.getDPoPHandle(config, keyPair)
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: registered.redirect_uris[0] ?? '',
      scope: 'openid email offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    })
    const page = await SELF.fetch(url.href, { headers: { cookie: user.cookie }, redirect: 'manual' })
    expect(page.status).toBe(200)
    const callback = await approveConsent(page, user)
    const tokens = await oidc.authorizationCodeGrant(
      config,
      new URL(callback ?? ''),
      { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true },
      undefined,
      { DPoP },
    )
    expect(tokens.token_type.toLowerCase()).toBe('dpop')
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256')
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt })
    const info = await oidc.fetchUserInfo(config, tokens.access_token, user.id, { DPoP })
    expect(info.email).toBe(user.email)
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? '', undefined, { DPoP })
    expect(refreshed.token_type.toLowerCase()).toBe('dpop')
    const again = await oidc.fetchUserInfo(config, refreshed.access_token, user.id, { DPoP })
    expect(again.sub).toBe(user.id)
    // Another key cannot use the refresh token.
    const thief = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'))
    await expect(
      oidc.refreshTokenGrant(config, refreshed.refresh_token ?? '', undefined, { DPoP: thief }),
    ).rejects.toMatchObject({ error: 'invalid_grant' })
  })

  it('oauth4webapi as a JWKS-verifying resource server checks the binding of our tokens', async () => {
    const agent = await adminClient({
      client_name: 'rs interop',
      grant_types: ['client_credentials'],
      scope: 'apikeys:verify',
    })
    const key = await dpopKey()
    const issued = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      {
        ...basicAuth(agent),
        dpop: await dpopProof(key, { htu: `${ISSUER}/oauth/token` }),
      },
    )
    const { access_token: token } = (await issued.json()) as TokenSet
    const as = (await (
      await call('/.well-known/oauth-authorization-server')
    ).json()) as oauth.AuthorizationServer
    const rsUrl = 'https://api.example.com/v1/things'
    const rsOptions = {
      requireDPoP: true,
      [oauth.allowInsecureRequests]: true,
      [oauth.customFetch]: (url: string, init: RequestInit) => SELF.fetch(url, init),
    }
    const good = new Request(rsUrl, {
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(key, { htu: rsUrl, htm: 'GET', accessToken: token }),
      },
    })
    const claims = await oauth.validateJwtAccessToken(as, good, ISSUER, rsOptions)
    expect(claims.cnf).toEqual({ jkt: key.jkt })
    const otherKey = await dpopKey()
    const stolen = new Request(rsUrl, {
      headers: {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(otherKey, { htu: rsUrl, htm: 'GET', accessToken: token }),
      },
    })
    await expect(oauth.validateJwtAccessToken(as, stolen, ISSUER, rsOptions)).rejects.toThrow()
    const asBearer = new Request(rsUrl, { headers: { authorization: `Bearer ${token}` } })
    await expect(oauth.validateJwtAccessToken(as, asBearer, ISSUER, rsOptions)).rejects.toThrow()
    // Without requireDPoP too: the token's cnf.jkt alone makes the library demand its proof.
    const { requireDPoP: _required, ...lenient } = rsOptions
    await expect(oauth.validateJwtAccessToken(as, asBearer, ISSUER, lenient)).rejects.toThrow()
  })
})
