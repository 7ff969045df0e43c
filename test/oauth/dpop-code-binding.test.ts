import { SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import { testDb } from '../helpers/db'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  approveConsent,
  authorize,
  basicAuth,
  type CodeResult,
  codeRequest,
  exchangeCode,
  ISSUER,
  obtainCode,
  pkce,
  postForm,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'

const TOKEN_URL = `${ISSUER}/oauth/token`
const PAR_URL = `${ISSUER}/oauth/par`

async function codeConsumed(code: string): Promise<boolean> {
  const result = await testDb().execute(
    sql`select consumed_at is not null as used from authorization_codes
        where code_hash = encode(sha256(convert_to(${code}, 'UTF8')), 'hex')`,
  )
  return (result.rows[0] as { used: boolean } | undefined)?.used === true
}

function exchangeWithProof(client: TestClient, result: CodeResult, proof?: string): Promise<Response> {
  return exchangeCode(client, result, {}, proof === undefined ? {} : { dpop: proof })
}

/** PAR with an optional DPoP proof of the PAR endpoint; then the code through /oauth/authorize. */
async function pushAndAuthorize(
  client: TestClient,
  extra: Record<string, string>,
  headers: Record<string, string>,
): Promise<CodeResult> {
  const user = await seedUser()
  const p = await pkce()
  const redirectUri = client.redirect_uris[0] ?? ''
  const pushed = await postForm(
    '/oauth/par',
    {
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: 'openid',
      code_challenge: p.challenge,
      code_challenge_method: 'S256',
      ...extra,
    },
    { ...basicAuth(client), ...headers },
  )
  expect(pushed.status, await pushed.clone().text()).toBe(201)
  const { request_uri: requestUri } = (await pushed.json()) as { request_uri: string }
  const page = await authorize({ client_id: client.client_id, request_uri: requestUri }, user.cookie)
  const location = page.status === 200 ? await approveConsent(page, user) : page.headers.get('location')
  const code = new URL(location ?? '').searchParams.get('code')
  expect(code, location ?? '').toBeTruthy()
  return { code: code ?? '', pkce: p, redirectUri }
}

describe('authorization code bound to a DPoP key (RFC 9449 §10)', () => {
  it('dpop_jkt at /oauth/authorize: only a proof of that key redeems the code; a mismatch leaves it unused', async () => {
    const client = await webClient()
    const key = await dpopKey()
    const other = await dpopKey()
    const result = await obtainCode(client, await seedUser(), { dpop_jkt: key.jkt })

    const none = await exchangeWithProof(client, result)
    expect(none.status).toBe(400)
    expect(await none.json()).toMatchObject({ error: 'invalid_grant' })
    const wrong = await exchangeWithProof(client, result, await dpopProof(other, { htu: TOKEN_URL }))
    expect(wrong.status).toBe(400)
    const body = (await wrong.json()) as { error: string; error_description: string }
    expect(body.error).toBe('invalid_grant')
    expect(body.error_description).toContain('DPoP key')
    expect(await codeConsumed(result.code)).toBe(false)

    const ok = await exchangeWithProof(client, result, await dpopProof(key, { htu: TOKEN_URL }))
    expect(ok.status, await ok.clone().text()).toBe(200)
    const tokens = (await ok.json()) as TokenSet
    expect(tokens.token_type).toBe('DPoP')
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: key.jkt })
    // Spent now: the holder's second try is a replay like any other.
    const again = await exchangeWithProof(client, result, await dpopProof(key, { htu: TOKEN_URL }))
    expect(again.status).toBe(400)
  })

  it('a code without dpop_jkt still takes any proof or none (binding is the client’s choice)', async () => {
    const client = await webClient()
    const result = await obtainCode(client, await seedUser())
    const res = await exchangeCode(client, result)
    expect(res.status).toBe(200)
    expect(((await res.json()) as TokenSet).token_type).toBe('Bearer')
  })

  it('a malformed dpop_jkt is invalid_request, sent back to the client', async () => {
    const client = await webClient()
    const user = await seedUser()
    const p = await pkce()
    const res = await authorize(
      codeRequest(client, p, {
        state: 's',
        dpop_jkt: 'not a thumbprint',
      }),
      user.cookie,
    )
    expect(res.status).toBe(302)
    const location = new URL(res.headers.get('location') ?? '')
    expect(location.searchParams.get('error')).toBe('invalid_request')
    expect(location.searchParams.get('state')).toBe('s')
  })

  it('PAR with a DPoP proof binds the code to the proof’s key', async () => {
    const client = await webClient()
    const key = await dpopKey()
    const result = await pushAndAuthorize(client, {}, { dpop: await dpopProof(key, { htu: PAR_URL }) })
    const wrong = await exchangeWithProof(
      client,
      result,
      await dpopProof(await dpopKey(), { htu: TOKEN_URL }),
    )
    expect(wrong.status).toBe(400)
    expect(await wrong.json()).toMatchObject({ error: 'invalid_grant' })
    const ok = await exchangeWithProof(client, result, await dpopProof(key, { htu: TOKEN_URL }))
    expect(ok.status, await ok.clone().text()).toBe(200)
    expect(decodeJwt(((await ok.json()) as TokenSet).access_token).cnf).toEqual({ jkt: key.jkt })
  })

  it('PAR with dpop_jkt alone binds the code too', async () => {
    const client = await webClient()
    const key = await dpopKey()
    const result = await pushAndAuthorize(client, { dpop_jkt: key.jkt }, {})
    expect((await exchangeWithProof(client, result)).status).toBe(400)
    const ok = await exchangeWithProof(client, result, await dpopProof(key, { htu: TOKEN_URL }))
    expect(ok.status, await ok.clone().text()).toBe(200)
  })

  it('PAR refuses a dpop_jkt that differs from its proof, a replayed proof and a proof for another URL; nothing is stored', async () => {
    const client = await webClient()
    const key = await dpopKey()
    const p = await pkce()
    const form = {
      response_type: 'code',
      redirect_uri: client.redirect_uris[0] ?? '',
      code_challenge: p.challenge,
      code_challenge_method: 'S256',
    }
    const stored = async () =>
      Number(
        (
          (
            await testDb().execute(
              sql`select count(*)::int as n from pushed_authorization_requests p join oauth_clients c on c.id = p.client_id
                  where c.client_id = ${client.client_id}`,
            )
          ).rows[0] as { n: number }
        ).n,
      )
    const mismatch = await postForm(
      '/oauth/par',
      { ...form, dpop_jkt: (await dpopKey()).jkt },
      { ...basicAuth(client), dpop: await dpopProof(key, { htu: PAR_URL }) },
    )
    expect(mismatch.status).toBe(400)
    expect(await mismatch.json()).toMatchObject({ error: 'invalid_request' })

    const wrongUrl = await postForm('/oauth/par', form, {
      ...basicAuth(client),
      dpop: await dpopProof(key, { htu: TOKEN_URL }),
    })
    expect(wrongUrl.status).toBe(400)
    expect(await wrongUrl.json()).toMatchObject({ error: 'invalid_dpop_proof' })

    const proof = await dpopProof(key, { htu: PAR_URL })
    const first = await postForm('/oauth/par', form, { ...basicAuth(client), dpop: proof })
    expect(first.status).toBe(201)
    const replay = await postForm('/oauth/par', form, { ...basicAuth(client), dpop: proof })
    expect(replay.status).toBe(400)
    expect(await replay.json()).toMatchObject({ error: 'invalid_dpop_proof' })
    expect(await stored()).toBe(1)
  })

  it('interop: openid-client, unmodified, pushes with its DPoP handle and redeems the bound code', async () => {
    const registered = await adminClient({
      token_endpoint_auth_method: 'none',
      redirect_uris: ['https://spa.example.com/cb'],
      grant_types: ['authorization_code'],
      scope: 'openid email',
    })
    const user = await seedUser()
    const config = await oidc.discovery(new URL(ISSUER), registered.client_id, undefined, oidc.None(), {
      execute: [oidc.allowInsecureRequests],
      [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
        SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
    })
    const keyPair = await oidc.randomDPoPKeyPair('ES256')
    const DPoP = oidc.getDPoPHandle(config, keyPair)
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = await oidc.buildAuthorizationUrlWithPAR(
      config,
      {
        redirect_uri: registered.redirect_uris[0] ?? '',
        scope: 'openid email',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
      },
      { DPoP },
    )
    const page = await SELF.fetch(url.href, { headers: { cookie: user.cookie }, redirect: 'manual' })
    expect(page.status).toBe(200)
    const callback = new URL((await approveConsent(page, user)) ?? '')
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey), 'sha256')
    const stored = await testDb().execute(
      sql`select a.dpop_jkt from authorization_codes a join oauth_clients c on c.id = a.client_id
          where c.client_id = ${registered.client_id}`,
    )
    expect((stored.rows[0] as { dpop_jkt: string } | undefined)?.dpop_jkt).toBe(jkt)
    const tokens = await oidc.authorizationCodeGrant(
      config,
      callback,
      { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true },
      undefined,
      { DPoP },
    )
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt })
  })
})
