import { sql } from 'drizzle-orm'
import { generateKeyPair, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { testDb } from '../helpers/db'
import {
  adminClient,
  authorize,
  basicAuth,
  DEVICE_GRANT,
  exchangeCode,
  ISSUER,
  obtainCode,
  pkce,
  postForm,
  refresh,
  seedUser,
  setUserStatus,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, describeResponse, postJson } from '../helpers/worker'

async function introspect(client: TestClient, token: string): Promise<Record<string, unknown>> {
  return (await (await postForm('/oauth/introspect', { token }, basicAuth(client))).json()) as Record<
    string,
    unknown
  >
}

async function codesOf(clientId: string): Promise<number> {
  const { rows } = (await testDb().execute(
    sql`select count(*)::int as n from authorization_codes a join oauth_clients c on c.id = a.client_id where c.client_id = ${clientId}`,
  )) as unknown as { rows: { n: number }[] }
  return rows[0]?.n ?? 0
}

describe('authorization code attacks', () => {
  it('a replayed code fails and revokes what the first exchange issued', async () => {
    const client = await webClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const first = (await (await exchangeCode(client, code)).json()) as TokenSet
    const replay = await exchangeCode(client, code)
    expect(replay.status).toBe(400)
    expect(await replay.json()).toMatchObject({ error: 'invalid_grant' })
    expect(await introspect(client, first.access_token)).toEqual({ active: false })
    const refreshed = await refresh(client, first.refresh_token ?? '')
    expect(await refreshed.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it.each([
    ['a wrong verifier', { code_verifier: 'x'.repeat(43) }],
    ['a short verifier', { code_verifier: 'abc' }],
    ['a different redirect_uri', { redirect_uri: 'https://app.example.com/other' }],
  ])('refuses %s', async (_name, overrides) => {
    const client = await webClient()
    const user = await seedUser()
    const res = await exchangeCode(client, await obtainCode(client, user), overrides)
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it('refuses a missing verifier', async () => {
    const client = await webClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'authorization_code', code: code.code, redirect_uri: code.redirectUri },
      basicAuth(client),
    )
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  })

  it('refuses an expired code', async () => {
    const client = await webClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    await testDb().execute(
      sql`update authorization_codes set expires_at = now() - interval '1 second' where user_id = ${user.id}`,
    )
    const res = await exchangeCode(client, code)
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it.each([
    ['plain method', { code_challenge_method: 'plain' }],
    ['no method', { code_challenge_method: '' }],
    ['no challenge', { code_challenge: '' }],
  ])('redirects invalid_request for %s and issues no code', async (_name, overrides) => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const p = await pkce()
    const res = await authorize(
      {
        response_type: 'code',
        client_id: client.client_id,
        code_challenge: p.challenge,
        code_challenge_method: 'S256',
        state: 'k',
        ...overrides,
      },
      user.cookie,
    )
    expect(res.status).toBe(302)
    const location = new URL(res.headers.get('location') ?? '')
    expect(location.origin).toBe('https://app.example.com')
    expect(location.searchParams.get('error')).toBe('invalid_request')
    expect(location.searchParams.get('iss')).toBe(ISSUER)
    expect(await codesOf(client.client_id)).toBe(0)
  })

  const BAD_REDIRECTS = [
    'https://evil.example.com/callback',
    'https://app.example.com/callback/../evil',
    'https://app.example.com/callback?x=1',
    'https://app.example.com.evil.com/callback',
    'https://app.example.com/callback#frag',
    'javascript:alert(1)',
    '//evil.example.com/callback',
  ]
  it.each(BAD_REDIRECTS)('never redirects to unregistered %s', async (uri) => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const p = await pkce()
    const res = await authorize(
      {
        response_type: 'code',
        client_id: client.client_id,
        redirect_uri: uri,
        code_challenge: p.challenge,
        code_challenge_method: 'S256',
      },
      user.cookie,
    )
    expect(res.status).toBe(400)
    expect(res.headers.get('location')).toBeNull()
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
    expect(await codesOf(client.client_id)).toBe(0)
  })

  it('refuses an unknown client without redirecting', async () => {
    const p = await pkce()
    const res = await authorize({
      response_type: 'code',
      client_id: 'no-such-client',
      redirect_uri: 'https://evil.example.com/',
      code_challenge: p.challenge,
      code_challenge_method: 'S256',
    })
    expect(res.status).toBe(400)
    expect(res.headers.get('location')).toBeNull()
  })

  it('refuses a code at the token endpoint of another client', async () => {
    const client = await webClient()
    const other = await webClient()
    const user = await seedUser()
    const res = await exchangeCode(other, await obtainCode(client, user))
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
  })
})

describe('refresh token attacks', () => {
  it('reuse of a rotated token revokes the whole family', async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const second = (await (await refresh(client, first.refresh_token ?? '')).json()) as TokenSet
    const reuse = await refresh(client, first.refresh_token ?? '')
    expect(await reuse.json()).toMatchObject({ error: 'invalid_grant' })
    const after = await refresh(client, second.refresh_token ?? '')
    expect(await after.json()).toMatchObject({ error: 'invalid_grant' })
    expect(await introspect(client, second.access_token)).toEqual({ active: false })
  })

  it('never widens the scope', async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (
      await exchangeCode(client, await obtainCode(client, user, { scope: 'openid' }))
    ).json()) as TokenSet
    const res = await refresh(client, first.refresh_token ?? '', { scope: 'openid email' })
    expect(await res.json()).toMatchObject({ error: 'invalid_scope' })
    // The refused request did not spend the token.
    expect((await refresh(client, first.refresh_token ?? '')).status).toBe(200)
  })

  it('refuses an expired refresh token', async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    await testDb().execute(
      sql`update refresh_tokens set expires_at = now() - interval '1 second' where user_id = ${user.id}`,
    )
    expect(await (await refresh(client, first.refresh_token ?? '')).json()).toMatchObject({
      error: 'invalid_grant',
    })
  })

  it('a suspended user: access token refused, refresh refused', async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    await setUserStatus(user.id, 'suspended')
    const info = await call('/oauth/userinfo', { headers: { authorization: `Bearer ${first.access_token}` } })
    expect(info.status).toBe(401)
    expect(await introspect(client, first.access_token)).toEqual({ active: false })
    expect(await (await refresh(client, first.refresh_token ?? '')).json()).toMatchObject({
      error: 'invalid_grant',
    })
  })
})

describe('forged access tokens', () => {
  it('refuses alg none and a token signed by an unknown key', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const now = Math.floor(Date.now() / 1000)
    const claims = {
      iss: ISSUER,
      sub: client.client_id,
      aud: ISSUER,
      exp: now + 600,
      iat: now,
      jti: crypto.randomUUID(),
      client_id: client.client_id,
      scope: 'admin',
    }
    const b64 = (o: unknown) =>
      btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
    const none = `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(claims)}.`
    const { privateKey } = await generateKeyPair('ES256')
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', kid: 'attacker', typ: 'at+jwt' })
      .sign(privateKey)
    for (const token of [none, forged]) {
      const res = await call('/admin/clients', { headers: { authorization: `Bearer ${token}` } })
      expect(res.status).toBe(401)
      expect(await introspect(client, token)).toEqual({ active: false })
    }
  })
})

describe('registration policy', () => {
  it.each([
    [{ redirect_uris: ['https://a.example.com/cb'], scope: 'openid admin' }, 'invalid_client_metadata'],
    [{ redirect_uris: ['https://a.example.com/cb'], scope: 'apikeys:verify' }, 'invalid_client_metadata'],
    [{ redirect_uris: ['http://a.example.com/cb'] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['https://a.example.com/cb#x'] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['https://*.example.com/cb'] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['javascript:alert(1)'] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['data:text/html,hi'] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['myapp:/cb'], application_type: 'native' }, 'invalid_redirect_uri'],
    [{ redirect_uris: [] }, 'invalid_redirect_uri'],
    [{ redirect_uris: ['https://a.example.com/cb'], grant_types: ['implicit'] }, 'invalid_client_metadata'],
  ])('refuses %j', async (metadata, error) => {
    const res = await postJson('/oauth/register', metadata)
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ error })
  })

  it('registers, reads, updates and deletes with the registration access token (RFC 7591/7592)', async () => {
    const res = await postJson('/oauth/register', {
      redirect_uris: ['com.example.app:/cb', 'http://127.0.0.1/cb'],
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT],
      client_name: 'CLI',
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    const client = (await res.json()) as Required<TestClient>
    expect(client.client_secret).toBeUndefined()
    const path = new URL(client.registration_client_uri).pathname
    const auth = { authorization: `Bearer ${client.registration_access_token}` }
    expect((await call(path, { headers: auth })).status).toBe(200)
    expect((await call(path, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
    const put = await call(path, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({
        client_id: client.client_id,
        redirect_uris: ['http://127.0.0.1/cb'],
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        client_name: 'CLI 2',
      }),
    })
    expect(put.status, await describeResponse(put)).toBe(200)
    expect(await put.json()).toMatchObject({ client_name: 'CLI 2' })
    // Native loopback redirect: any port matches (RFC 8252 §7.3).
    const user = await seedUser()
    const p = await pkce()
    const loop = await authorize(
      {
        response_type: 'code',
        client_id: client.client_id,
        redirect_uri: 'http://127.0.0.1:53127/cb',
        code_challenge: p.challenge,
        code_challenge_method: 'S256',
      },
      user.cookie,
    )
    expect(loop.status).toBe(200)
    expect((await call(path, { method: 'DELETE', headers: auth })).status).toBe(204)
    expect((await call(path, { headers: auth })).status).toBe(401)
  })
})

describe('device code expiry', () => {
  it('answers expired_token for an expired device code', async () => {
    const client = await adminClient({
      grant_types: [DEVICE_GRANT],
      token_endpoint_auth_method: 'none',
      scope: 'openid',
    })
    const start = (await (
      await postForm('/oauth/device_authorization', { client_id: client.client_id })
    ).json()) as { device_code: string }
    await testDb().execute(
      sql`update device_codes set expires_at = now() - interval '1 second' where device_code_hash = encode(sha256(${start.device_code}::bytea), 'hex')`,
    )
    const res = await postForm('/oauth/token', {
      grant_type: DEVICE_GRANT,
      device_code: start.device_code,
      client_id: client.client_id,
    })
    expect(await res.json()).toMatchObject({ error: 'expired_token' })
  })
})
