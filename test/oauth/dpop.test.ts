import { sql } from 'drizzle-orm'
import { decodeJwt, type JWK } from 'jose'
import { describe, expect, it } from 'vitest'
import { testDb } from '../helpers/db'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  basicAuth,
  ISSUER,
  obtainCode,
  postForm,
  seedUser,
  type TestClient,
  type TokenSet,
} from '../helpers/oauth'
import { call, postJson } from '../helpers/worker'

const TOKEN_URL = `${ISSUER}/oauth/token`
const USERINFO_URL = `${ISSUER}/oauth/userinfo`

async function tokensIssued(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = 'token_issued' and client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

function publicClient(extra: Record<string, unknown> = {}): Promise<TestClient> {
  return adminClient({
    client_name: 'DPoP SPA',
    token_endpoint_auth_method: 'none',
    redirect_uris: ['https://spa.example.com/cb'],
    grant_types: ['authorization_code', 'refresh_token'],
    scope: 'openid email offline_access',
    first_party: true,
    ...extra,
  })
}

function agentClient(extra: Record<string, unknown> = {}): Promise<TestClient> {
  return adminClient({
    client_name: 'DPoP agent',
    grant_types: ['client_credentials'],
    scope: 'apikeys:verify',
    ...extra,
  })
}

async function codeExchange(client: TestClient, proof: string | undefined): Promise<Response> {
  const user = await seedUser()
  const code = await obtainCode(client, user)
  return postForm(
    '/oauth/token',
    {
      grant_type: 'authorization_code',
      client_id: client.client_id,
      code: code.code,
      code_verifier: code.pkce.verifier,
      redirect_uri: code.redirectUri,
    },
    proof === undefined ? {} : { dpop: proof },
  )
}

describe('DPoP at the token endpoint (RFC 9449 §5)', () => {
  it('binds the access token with cnf.jkt and answers token_type DPoP; discovery lists the algs', async () => {
    const client = await publicClient()
    const key = await dpopKey()
    const res = await codeExchange(client, await dpopProof(key, { htu: TOKEN_URL }))
    const body = (await res.json()) as TokenSet
    expect(res.status, JSON.stringify(body)).toBe(200)
    expect(body.token_type).toBe('DPoP')
    expect(decodeJwt(body.access_token).cnf).toEqual({ jkt: key.jkt })
    const meta = (await (await call('/.well-known/openid-configuration')).json()) as Record<string, unknown>
    expect(meta.dpop_signing_alg_values_supported).toEqual(['ES256', 'RS256', 'PS256', 'EdDSA'])
  })

  it('binds a public client refresh token to the key: another key or none is refused, nothing rotates', async () => {
    const client = await publicClient()
    const key = await dpopKey()
    const other = await dpopKey('EdDSA')
    const first = (await (
      await codeExchange(client, await dpopProof(key, { htu: TOKEN_URL }))
    ).json()) as TokenSet
    const form = {
      grant_type: 'refresh_token',
      client_id: client.client_id,
      refresh_token: first.refresh_token ?? '',
    }
    const wrongKey = await postForm('/oauth/token', form, {
      dpop: await dpopProof(other, { htu: TOKEN_URL }),
    })
    expect(wrongKey.status).toBe(400)
    expect(((await wrongKey.json()) as { error: string }).error).toBe('invalid_grant')
    const noProof = await postForm('/oauth/token', form)
    expect(noProof.status).toBe(400)
    expect(((await noProof.json()) as { error: string }).error).toBe('invalid_grant')
    // Nothing changed: the right key still rotates the same token, and the result stays bound.
    const ok = await postForm('/oauth/token', form, { dpop: await dpopProof(key, { htu: TOKEN_URL }) })
    const rotated = (await ok.json()) as TokenSet
    expect(ok.status, JSON.stringify(rotated)).toBe(200)
    expect(rotated.token_type).toBe('DPoP')
    expect(decodeJwt(rotated.access_token).cnf).toEqual({ jkt: key.jkt })
    const again = await postForm(
      '/oauth/token',
      { ...form, refresh_token: rotated.refresh_token ?? '' },
      { dpop: await dpopProof(other, { htu: TOKEN_URL }) },
    )
    expect(again.status).toBe(400)
  })

  const BAD_PROOFS: [string, (key: Awaited<ReturnType<typeof dpopKey>>) => Promise<string>][] = [
    ['iat too old', (k) => dpopProof(k, { htu: TOKEN_URL, iatOffset: -120 })],
    ['iat in the future', (k) => dpopProof(k, { htu: TOKEN_URL, iatOffset: 120 })],
    ['another URL', (k) => dpopProof(k, { htu: `${ISSUER}/oauth/revoke` })],
    ['another method', (k) => dpopProof(k, { htu: TOKEN_URL, htm: 'GET' })],
    ['typ JWT', (k) => dpopProof(k, { htu: TOKEN_URL, typ: 'JWT' })],
    ['no jti', (k) => dpopProof(k, { htu: TOKEN_URL, jti: null })],
    [
      'private key in the jwk',
      async (k) => {
        const { exportJWK } = await import('jose')
        return dpopProof(k, { htu: TOKEN_URL, jwk: await exportJWK(k.privateKey) })
      },
    ],
    ['jwk of another key', async (k) => dpopProof(k, { htu: TOKEN_URL, jwk: (await dpopKey()).publicJwk })],
    [
      'two proofs',
      async (k) => `${await dpopProof(k, { htu: TOKEN_URL })},${await dpopProof(k, { htu: TOKEN_URL })}`,
    ],
    ['not a JWT', async () => 'not-a-proof'],
  ]

  it.each(BAD_PROOFS)(
    'refuses a proof with %s (invalid_dpop_proof) and issues nothing',
    async (_name, make) => {
      const client = await agentClient()
      const res = await postForm(
        '/oauth/token',
        { grant_type: 'client_credentials' },
        {
          ...basicAuth(client),
          dpop: await make(await dpopKey()),
        },
      )
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: string }).error).toBe('invalid_dpop_proof')
      expect(await tokensIssued(client.client_id)).toBe(0)
    },
  )

  it('refuses an HS256 proof (symmetric) and a query-bearing htu is compared without its query', async () => {
    const client = await agentClient()
    const { SignJWT } = await import('jose')
    const hs = await new SignJWT({
      htm: 'POST',
      htu: TOKEN_URL,
      iat: Math.floor(Date.now() / 1000),
      jti: 'x',
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'AAAA' } as JWK })
      .sign(new Uint8Array(32))
    const bad = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      { ...basicAuth(client), dpop: hs },
    )
    expect(bad.status).toBe(400)
    const key = await dpopKey()
    const ok = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      {
        ...basicAuth(client),
        dpop: await dpopProof(key, { htu: `${TOKEN_URL}?x=1#f` }),
      },
    )
    expect(ok.status, await ok.clone().text()).toBe(200)
    expect(await tokensIssued(client.client_id)).toBe(1)
  })

  it('20 concurrent uses of one proof: exactly one token, the rest invalid_dpop_proof', async () => {
    const client = await agentClient()
    const proof = await dpopProof(await dpopKey(), { htu: TOKEN_URL })
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        postForm('/oauth/token', { grant_type: 'client_credentials' }, { ...basicAuth(client), dpop: proof }),
      ),
    )
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 400)).toHaveLength(19)
    for (const r of answers.filter((a) => a.status === 400)) {
      expect(((await r.json()) as { error: string }).error).toBe('invalid_dpop_proof')
    }
    expect(await tokensIssued(client.client_id)).toBe(1)
  })

  it('honours dpop_bound_access_tokens: no proof is refused, a proof is bound; a non-boolean is refused', async () => {
    const client = await agentClient({ dpop_bound_access_tokens: true })
    const none = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    expect(none.status).toBe(400)
    expect(((await none.json()) as { error: string }).error).toBe('invalid_dpop_proof')
    expect(await tokensIssued(client.client_id)).toBe(0)
    const key = await dpopKey()
    const ok = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      {
        ...basicAuth(client),
        dpop: await dpopProof(key, { htu: TOKEN_URL }),
      },
    )
    expect(((await ok.json()) as TokenSet).token_type).toBe('DPoP')
    const bad = await postJson('/oauth/register', {
      redirect_uris: ['https://x.example.com/cb'],
      dpop_bound_access_tokens: 'yes',
    })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: string }).error).toBe('invalid_client_metadata')
  })
})

describe('DPoP-bound tokens at our own APIs (RFC 9449 §7)', () => {
  async function boundUserToken() {
    const client = await publicClient()
    const key = await dpopKey()
    const res = await codeExchange(client, await dpopProof(key, { htu: TOKEN_URL }))
    const body = (await res.json()) as TokenSet
    expect(res.status, JSON.stringify(body)).toBe(200)
    return { token: body.access_token, key }
  }

  it('userinfo: DPoP scheme with a fresh proof answers; Bearer, replays and wrong proofs get 401', async () => {
    const { token, key } = await boundUserToken()
    const proof = await dpopProof(key, { htu: USERINFO_URL, htm: 'GET', accessToken: token })
    const ok = await call('/oauth/userinfo', { headers: { authorization: `DPoP ${token}`, dpop: proof } })
    expect(ok.status, await ok.clone().text()).toBe(200)
    const replay = await call('/oauth/userinfo', { headers: { authorization: `DPoP ${token}`, dpop: proof } })
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toContain('error="invalid_dpop_proof"')
    const asBearer = await call('/oauth/userinfo', { headers: { authorization: `Bearer ${token}` } })
    expect(asBearer.status).toBe(401)
    expect(asBearer.headers.get('www-authenticate')).toMatch(/^DPoP /)
    const other = await dpopKey()
    const bad = [
      await dpopProof(key, { htu: USERINFO_URL, htm: 'GET' }),
      await dpopProof(key, { htu: USERINFO_URL, htm: 'POST', accessToken: token }),
      await dpopProof(key, { htu: TOKEN_URL, htm: 'GET', accessToken: token }),
      await dpopProof(other, { htu: USERINFO_URL, htm: 'GET', accessToken: token }),
      await dpopProof(key, { htu: USERINFO_URL, htm: 'GET', accessToken: token, iatOffset: -300 }),
    ]
    for (const dpop of bad) {
      const res = await call('/oauth/userinfo', { headers: { authorization: `DPoP ${token}`, dpop } })
      expect(res.status).toBe(401)
    }
    const none = await call('/oauth/userinfo', { headers: { authorization: `DPoP ${token}` } })
    expect(none.status).toBe(401)
  })

  it('an unbound token under the DPoP scheme is refused', async () => {
    const client = await agentClient()
    const res = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    const { access_token: token } = (await res.json()) as TokenSet
    const key = await dpopKey()
    const verify = await postJson(
      '/api-keys/verify',
      { key: 'pk_nothing' },
      {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(key, { htu: `${ISSUER}/api-keys/verify`, accessToken: token }),
      },
    )
    expect(verify.status).toBe(401)
  })

  it('api-keys verify and management accept a bound token only with its proof', async () => {
    const agent = await agentClient()
    const key = await dpopKey()
    const issued = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      {
        ...basicAuth(agent),
        dpop: await dpopProof(key, { htu: TOKEN_URL }),
      },
    )
    const { access_token: token } = (await issued.json()) as TokenSet
    const verifyUrl = `${ISSUER}/api-keys/verify`
    const ok = await postJson(
      '/api-keys/verify',
      { key: 'pk_nothing' },
      {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(key, { htu: verifyUrl, accessToken: token }),
      },
    )
    expect(ok.status, await ok.clone().text()).toBe(200)
    const bearer = await postJson(
      '/api-keys/verify',
      { key: 'pk_nothing' },
      { authorization: `Bearer ${token}` },
    )
    expect(bearer.status).toBe(401)
    expect(bearer.headers.get('www-authenticate')).toMatch(/^DPoP /)

    // /api-keys (authenticate middleware) with a bound user token carrying apikeys:write.
    const spa = await publicClient({ scope: 'openid apikeys:write offline_access' })
    const user = await seedUser()
    const code = await obtainCode(spa, user, { scope: 'openid apikeys:write' })
    const userKey = await dpopKey()
    const exchanged = await postForm(
      '/oauth/token',
      {
        grant_type: 'authorization_code',
        client_id: spa.client_id,
        code: code.code,
        code_verifier: code.pkce.verifier,
        redirect_uri: code.redirectUri,
      },
      { dpop: await dpopProof(userKey, { htu: TOKEN_URL }) },
    )
    const userToken = ((await exchanged.json()) as TokenSet).access_token
    const listUrl = `${ISSUER}/api-keys`
    const list = await call('/api-keys', {
      headers: {
        authorization: `DPoP ${userToken}`,
        dpop: await dpopProof(userKey, { htu: listUrl, htm: 'GET', accessToken: userToken }),
      },
    })
    expect(list.status, await list.clone().text()).toBe(200)
    const listBearer = await call('/api-keys', { headers: { authorization: `Bearer ${userToken}` } })
    expect(listBearer.status).toBe(401)
  })

  it('introspection reports cnf.jkt and token_type DPoP', async () => {
    const agent = await agentClient()
    const key = await dpopKey()
    const issued = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      {
        ...basicAuth(agent),
        dpop: await dpopProof(key, { htu: TOKEN_URL }),
      },
    )
    const { access_token: token } = (await issued.json()) as TokenSet
    const res = await postForm('/oauth/introspect', { token }, basicAuth(agent))
    const body = (await res.json()) as Record<string, unknown>
    expect(body.active).toBe(true)
    expect(body.token_type).toBe('DPoP')
    expect(body.cnf).toEqual({ jkt: key.jkt })
  })
})
