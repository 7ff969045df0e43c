import { SELF } from 'cloudflare:test'
import { createLocalJWKSet, jwtVerify } from 'jose'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import {
  adminClient,
  approveConsent,
  DEVICE_GRANT,
  deviceDecide,
  fetchJwks,
  ISSUER,
  seedUser,
  verifyIdToken,
  webClient,
} from '../helpers/oauth'

// openid-client talks to the Worker through SELF.fetch; the issuer is the configured one.
const options = {
  execute: [oidc.allowInsecureRequests],
  [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
    SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
}

async function servedKeys() {
  return createLocalJWKSet(await fetchJwks())
}

describe('interop with openid-client (panva) as the client', () => {
  it('discovery, code + PKCE, userinfo, refresh, introspect, revoke', async () => {
    const registered = await webClient()
    const user = await seedUser()
    const config = await oidc.discovery(
      new URL(ISSUER),
      registered.client_id,
      undefined,
      oidc.ClientSecretBasic(registered.client_secret ?? ''),
      options,
    )
    expect(config.serverMetadata().issuer).toBe(ISSUER)
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: registered.redirect_uris[0] ?? '',
      scope: 'openid email offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    })
    const page = await SELF.fetch(url.href, { headers: { cookie: user.cookie }, redirect: 'manual' })
    expect(page.status).toBe(200)
    const callback = await approveConsent(page, user)
    const tokens = await oidc.authorizationCodeGrant(config, new URL(callback ?? ''), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    })
    expect(tokens.claims()?.sub).toBe(user.id)
    const keys = await servedKeys()
    const access = await jwtVerify(tokens.access_token, keys, {
      issuer: ISSUER,
      audience: ISSUER,
      typ: 'at+jwt',
      algorithms: ['ES256'],
    })
    expect(access.payload.sub).toBe(user.id)
    await jwtVerify(tokens.id_token ?? '', keys, {
      issuer: ISSUER,
      audience: registered.client_id,
      algorithms: ['RS256'],
    })

    const info = await oidc.fetchUserInfo(config, tokens.access_token, user.id)
    expect(info.email).toBe(user.email)

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? '')
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token)

    const active = await oidc.tokenIntrospection(config, refreshed.access_token)
    expect(active.active).toBe(true)
    await oidc.tokenRevocation(config, refreshed.refresh_token ?? '')
    expect((await oidc.tokenIntrospection(config, refreshed.access_token)).active).toBe(false)
    await expect(oidc.refreshTokenGrant(config, refreshed.refresh_token ?? '')).rejects.toMatchObject({
      error: 'invalid_grant',
    })
  })

  it('client_credentials', async () => {
    const registered = await adminClient({
      grant_types: ['client_credentials'],
      scope: 'apikeys:verify',
      token_endpoint_auth_method: 'client_secret_post',
    })
    const config = await oidc.discovery(
      new URL(ISSUER),
      registered.client_id,
      undefined,
      oidc.ClientSecretPost(registered.client_secret ?? ''),
      options,
    )
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'apikeys:verify' })
    const { payload } = await jwtVerify(tokens.access_token, await servedKeys(), {
      issuer: ISSUER,
      audience: ISSUER,
      typ: 'at+jwt',
    })
    expect(payload).toMatchObject({ sub: registered.client_id, scope: 'apikeys:verify' })
  })

  it('device flow', async () => {
    const registered = await adminClient({
      grant_types: [DEVICE_GRANT, 'refresh_token'],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    })
    const config = await oidc.discovery(
      new URL(ISSUER),
      registered.client_id,
      undefined,
      oidc.None(),
      options,
    )
    const device = await oidc.initiateDeviceAuthorization(config, { scope: 'openid offline_access' })
    const user = await seedUser()
    const approved = await deviceDecide(user, device.user_code, 'approve')
    expect(approved.status).toBe(200)
    // Approved before the first poll, so openid-client need not wait the real 5 s interval.
    const tokens = await oidc.pollDeviceAuthorizationGrant(config, { ...device, interval: 0.01 })
    expect(tokens.claims()?.sub).toBe(user.id)
    expect(tokens.refresh_token).toBeTruthy()
    // openid-client checks the claims; a relying party also checks the signature against the JWKS.
    await verifyIdToken(tokens.id_token, { clientId: registered.client_id, subject: user.id })
  })
})
