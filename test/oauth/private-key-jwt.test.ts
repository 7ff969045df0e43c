import { SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { exportJWK, generateKeyPair } from 'jose'
import * as oidc from 'openid-client'
import { describe, expect, inject, it } from 'vitest'
import { type Agent, ASSERTION_TYPE, agent, assertion, tokenWith } from '../helpers/agents'
import { testDb } from '../helpers/db'
import { adminClient, ISSUER, postForm, type TestClient } from '../helpers/oauth'
import { adminHeaders, call, callWith, postJson } from '../helpers/worker'

async function issued(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = 'token_issued' and client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

describe('private_key_jwt client authentication (RFC 7523 §2.2)', () => {
  it.each(['ES256', 'RS256', 'EdDSA'])(
    'an agent registered with its %s key gets a token; discovery lists the method',
    async (alg) => {
      const a = await agent(alg)
      expect(a.client.client_secret).toBeUndefined()
      const res = await tokenWith(await assertion(a, { alg }))
      expect(res.status, await res.clone().text()).toBe(200)
      const meta = (await (await call('/.well-known/oauth-authorization-server')).json()) as Record<
        string,
        string[]
      >
      expect(meta.token_endpoint_auth_methods_supported).toContain('private_key_jwt')
    },
  )

  it('the issuer is an accepted aud too; introspection and revocation take an assertion', async () => {
    const a = await agent()
    const res = await tokenWith(await assertion(a, { aud: ISSUER }))
    const { access_token: token } = (await res.json()) as { access_token: string }
    const introspected = await postForm('/oauth/introspect', {
      token,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(a, { aud: `${ISSUER}/oauth/introspect` }),
    })
    expect(((await introspected.json()) as { active: boolean }).active).toBe(true)
    const revoked = await postForm('/oauth/revoke', {
      token,
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(a, { aud: `${ISSUER}/oauth/revoke` }),
    })
    expect(revoked.status).toBe(200)
  })

  it.each<[string, (a: Agent) => Promise<string>]>([
    ['expired', (a) => assertion(a, { expIn: -10 })],
    ['living too long', (a) => assertion(a, { expIn: 3600 })],
    ['issued in the future', (a) => assertion(a, { iatOffset: 600, expIn: 200 })],
    ['for another audience', (a) => assertion(a, { aud: 'https://elsewhere.example.com/token' })],
    [
      'signed by another key',
      async (a) => assertion(a, { key: (await generateKeyPair('ES256')).privateKey }),
    ],
    ['naming another client', async (a) => assertion(a, { sub: (await agent()).client.client_id })],
  ])('refuses an assertion %s with invalid_client and issues nothing', async (_name, make) => {
    const a = await agent()
    const res = await tokenWith(await make(a))
    expect(res.status).toBe(401)
    expect(((await res.json()) as { error: string }).error).toBe('invalid_client')
    expect(await issued(a.client.client_id)).toBe(0)
  })

  it('a client secret is refused for a private_key_jwt client, and an assertion with a secret too', async () => {
    const a = await agent()
    const res = await postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: a.client.client_id,
      client_secret: 'anything',
    })
    expect(res.status).toBe(401)
    const both = await tokenWith(await assertion(a), { client_secret: 'x' })
    expect(both.status).toBe(400)
  })

  it('20 concurrent uses of one assertion: exactly one token', async () => {
    const a = await agent()
    const one = await assertion(a)
    const answers = await Promise.all(Array.from({ length: 20 }, () => tokenWith(one)))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 401)).toHaveLength(19)
    expect(await issued(a.client.client_id)).toBe(1)
  })

  it.each([
    ['a jwks_uri at a private address', { jwks_uri: 'https://10.0.0.1/jwks.json' }],
    ['a jwks_uri on localhost', { jwks_uri: 'https://localhost/jwks.json' }],
  ])('with %s the token request is invalid_client (no fetch leaves for it)', async (_name, keys) => {
    const { privateKey } = await generateKeyPair('ES256')
    const client = await adminClient({
      token_endpoint_auth_method: 'private_key_jwt',
      grant_types: ['client_credentials'],
      scope: 'apikeys:verify',
      ...keys,
    })
    const a: Agent = { client, privateKey, kid: 'k' }
    const res = await tokenWith(await assertion(a))
    expect(res.status).toBe(401)
    expect(await issued(client.client_id)).toBe(0)
  })

  it.each([
    ['no keys', {}],
    ['both jwks and jwks_uri', { jwks: { keys: [{ kty: 'EC' }] }, jwks_uri: 'https://a.example.com/jwks' }],
    ['a private key in jwks', { jwks: { keys: [{ kty: 'EC', d: 'secret' }] } }],
    ['an http jwks_uri', { jwks_uri: 'http://a.example.com/jwks' }],
  ])('registration refuses private_key_jwt with %s', async (_name, keys) => {
    const res = await postJson('/oauth/register', {
      token_endpoint_auth_method: 'private_key_jwt',
      redirect_uris: ['https://a.example.com/cb'],
      ...keys,
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toBe('invalid_client_metadata')
  })

  it('interop: openid-client PrivateKeyJwt, unmodified, for client_credentials and introspection', async () => {
    const a = await agent()
    const config = await oidc.discovery(
      new URL(ISSUER),
      a.client.client_id,
      undefined,
      oidc.PrivateKeyJwt({ key: a.privateKey, kid: a.kid }),
      {
        execute: [oidc.allowInsecureRequests],
        [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
          SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
      },
    )
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'apikeys:verify' })
    expect(tokens.access_token).toBeTruthy()
    const info = await oidc.tokenIntrospection(config, tokens.access_token)
    expect(info.active).toBe(true)
  })

  it('jwks_uri (loopback allowed): fetched once, refetched for an unknown kid; a redirect or a hang is invalid_client', async () => {
    const fake = inject('fakeOutboundUrl')
    const LOOPBACK = { OUTBOUND_ALLOW_LOOPBACK: 'true' }
    const doc = `/doc/${crypto.randomUUID()}`
    const first = await generateKeyPair('ES256', { extractable: true })
    const put = (keys: unknown[]) =>
      fetch(`${fake}${doc}`, { method: 'PUT', body: JSON.stringify({ body: JSON.stringify({ keys }) }) })
    await put([{ ...(await exportJWK(first.publicKey)), kid: 'k1', alg: 'ES256' }])
    const created = await callWith(LOOPBACK, '/admin/clients', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...adminHeaders() },
      body: JSON.stringify({
        token_endpoint_auth_method: 'private_key_jwt',
        jwks_uri: `${fake}${doc}`,
        grant_types: ['client_credentials'],
        scope: 'apikeys:verify',
      }),
    })
    expect(created.status, await created.clone().text()).toBe(201)
    const client = (await created.json()) as TestClient
    const send = async (a: Agent) =>
      callWith(LOOPBACK, '/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_assertion_type: ASSERTION_TYPE,
          client_assertion: await assertion(a),
        }).toString(),
      })
    const ok = await send({ client, privateKey: first.privateKey, kid: 'k1' })
    expect(ok.status, await ok.clone().text()).toBe(200)
    const hits = async () => ((await (await fetch(`${fake}/__hits${doc}`)).json()) as { hits: number }).hits
    expect(await hits()).toBe(1)
    // The client rotates to a new key: the unknown kid makes us fetch again.
    const second = await generateKeyPair('ES256', { extractable: true })
    await put([{ ...(await exportJWK(second.publicKey)), kid: 'k2', alg: 'ES256' }])
    const rotated = await send({ client, privateKey: second.privateKey, kid: 'k2' })
    expect(rotated.status, await rotated.clone().text()).toBe(200)
    for (const path of ['/redirect', '/hang']) {
      const bad = await callWith(LOOPBACK, '/admin/clients', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...adminHeaders() },
        body: JSON.stringify({
          token_endpoint_auth_method: 'private_key_jwt',
          jwks_uri: `${fake}${path}`,
          grant_types: ['client_credentials'],
          scope: 'apikeys:verify',
        }),
      })
      const badClient = (await bad.json()) as TestClient
      const res = await send({ client: badClient, privateKey: first.privateKey, kid: 'k1' })
      expect(res.status).toBe(401)
    }
  })
})
