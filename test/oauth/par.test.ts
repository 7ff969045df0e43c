import { SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import { signIn } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import {
  adminClient,
  approveConsent,
  authorize,
  basicAuth,
  codeRequest,
  ISSUER,
  type Pkce,
  pkce,
  postForm,
  seedUser,
  type TestClient,
  webClient,
} from '../helpers/oauth'
import { call } from '../helpers/worker'

async function pushed(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from pushed_authorization_requests p join oauth_clients c on c.id = p.client_id
        where c.client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function codes(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from authorization_codes a join oauth_clients c on c.id = a.client_id
        where c.client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function push(
  client: TestClient,
  p: Pkce,
  extra: Record<string, string> = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await postForm(
    '/oauth/par',
    {
      response_type: 'code',
      redirect_uri: client.redirect_uris[0] ?? '',
      scope: 'openid email',
      state: 'pushed-state',
      code_challenge: p.challenge,
      code_challenge_method: 'S256',
      ...extra,
    },
    basicAuth(client),
  )
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('pushed authorization requests (RFC 9126)', () => {
  it('push → authorize by request_uri (its own parameters only) → code → tokens; the request_uri is then spent', async () => {
    const client = await webClient()
    const user = await seedUser()
    const p = await pkce()
    const { status, body } = await push(client, p)
    expect(status, JSON.stringify(body)).toBe(201)
    expect(body.expires_in).toBe(60)
    const requestUri = String(body.request_uri)
    expect(requestUri).toMatch(/^urn:ietf:params:oauth:request_uri:/)
    // A state in the query is ignored: the pushed one is what comes back.
    const page = await authorize(
      { client_id: client.client_id, request_uri: requestUri, state: 'query-state' },
      user.cookie,
    )
    expect(page.status).toBe(200)
    const location = new URL((await approveConsent(page, user)) ?? '')
    expect(location.searchParams.get('state')).toBe('pushed-state')
    const code = location.searchParams.get('code') ?? ''
    const token = await postForm(
      '/oauth/token',
      {
        grant_type: 'authorization_code',
        code,
        code_verifier: p.verifier,
        redirect_uri: client.redirect_uris[0] ?? '',
      },
      basicAuth(client),
    )
    expect(token.status, await token.clone().text()).toBe(200)
    const again = await authorize({ client_id: client.client_id, request_uri: requestUri }, user.cookie)
    expect(again.status).toBe(400)
    expect(((await again.json()) as { error: string }).error).toBe('invalid_request_uri')
  })

  it('an expired, unknown or another client’s request_uri is invalid_request_uri', async () => {
    const client = await webClient()
    const other = await webClient()
    const user = await seedUser()
    const { body } = await push(client, await pkce())
    const requestUri = String(body.request_uri)
    const foreign = await authorize({ client_id: other.client_id, request_uri: requestUri }, user.cookie)
    expect(((await foreign.json()) as { error: string }).error).toBe('invalid_request_uri')
    const unknown = await authorize(
      { client_id: client.client_id, request_uri: 'urn:ietf:params:oauth:request_uri:nope' },
      user.cookie,
    )
    expect(((await unknown.json()) as { error: string }).error).toBe('invalid_request_uri')
    await testDb().execute(
      sql`update pushed_authorization_requests set expires_at = now() - interval '1 second'
          where client_id = (select id from oauth_clients where client_id = ${client.client_id})`,
    )
    const expired = await authorize({ client_id: client.client_id, request_uri: requestUri }, user.cookie)
    expect(expired.status).toBe(400)
    expect(((await expired.json()) as { error: string }).error).toBe('invalid_request_uri')
    expect(await codes(client.client_id)).toBe(0)
  })

  it('concurrent completions of one pushed request issue one code', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const { body } = await push(client, await pkce())
    const answers = await Promise.all(
      Array.from({ length: 8 }, () =>
        authorize({ client_id: client.client_id, request_uri: String(body.request_uri) }, user.cookie),
      ),
    )
    const withCode = answers.filter((r) =>
      new URL(r.headers.get('location') ?? 'x:/').searchParams.has('code'),
    )
    expect(withCode).toHaveLength(1)
    expect(await codes(client.client_id)).toBe(1)
  })

  it.each([
    [
      'a request_uri in the push',
      { request_uri: 'urn:ietf:params:oauth:request_uri:x' },
      400,
      'invalid_request',
    ],
    ['an unregistered redirect_uri', { redirect_uri: 'https://evil.example.com/cb' }, 400, 'invalid_request'],
    ['no PKCE method', { code_challenge_method: 'plain' }, 400, 'invalid_request'],
    ['a scope beyond the client', { scope: 'openid admin' }, 400, 'invalid_scope'],
  ])('refuses a push with %s and stores nothing', async (_name, extra, status, error) => {
    const client = await webClient()
    const res = await push(client, await pkce(), extra as Record<string, string>)
    expect(res.status, JSON.stringify(res.body)).toBe(status)
    expect(res.body.error).toBe(error)
    expect(await pushed(client.client_id)).toBe(0)
  })

  it('refuses a push from a client that does not authenticate', async () => {
    const client = await webClient()
    const res = await postForm(
      '/oauth/par',
      { response_type: 'code', code_challenge: (await pkce()).challenge, code_challenge_method: 'S256' },
      basicAuth({ ...client, client_secret: 'wrong' }),
    )
    expect(res.status).toBe(401)
    expect(await pushed(client.client_id)).toBe(0)
  })

  it('require_pushed_authorization_requests: a plain request is refused, a pushed one works; discovery lists PAR', async () => {
    const client = await webClient({ first_party: true, require_pushed_authorization_requests: true })
    const user = await seedUser()
    const p = await pkce()
    const plain = await authorize(
      codeRequest(client, p, {
        state: 's',
      }),
      user.cookie,
    )
    expect(plain.status).toBe(302)
    expect(new URL(plain.headers.get('location') ?? '').searchParams.get('error')).toBe('invalid_request')
    expect(await codes(client.client_id)).toBe(0)
    const { body } = await push(client, p)
    const ok = await authorize(
      { client_id: client.client_id, request_uri: String(body.request_uri) },
      user.cookie,
    )
    expect(new URL(ok.headers.get('location') ?? '').searchParams.has('code')).toBe(true)
    const meta = (await (await call('/.well-known/oauth-authorization-server')).json()) as Record<
      string,
      unknown
    >
    expect(meta.pushed_authorization_request_endpoint).toBe(`${ISSUER}/oauth/par`)
    expect(meta.require_pushed_authorization_requests).toBe(false)
    const bad = await adminClient({
      redirect_uris: ['https://x.example.com/cb'],
      require_pushed_authorization_requests: 'yes',
    }).catch((e: Error) => e.message)
    expect(String(bad)).toMatch(/^admin client: 400 .*require_pushed_authorization_requests/)
  })

  it('interop: openid-client buildAuthorizationUrlWithPAR, unmodified', async () => {
    const registered = await webClient({ first_party: true })
    const user = await seedUser()
    const config = await oidc.discovery(
      new URL(ISSUER),
      registered.client_id,
      undefined,
      oidc.ClientSecretBasic(registered.client_secret ?? ''),
      {
        execute: [oidc.allowInsecureRequests],
        [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
          SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
      },
    )
    const verifier = oidc.randomPKCECodeVerifier()
    const state = oidc.randomState()
    const url = await oidc.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: registered.redirect_uris[0] ?? '',
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    })
    expect(url.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/)
    const res = await SELF.fetch(url.href, { headers: { cookie: user.cookie }, redirect: 'manual' })
    const callback = new URL(res.headers.get('location') ?? '')
    const tokens = await oidc.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: verifier,
      expectedState: state,
      idTokenExpected: true,
    })
    expect(tokens.claims()?.sub).toBe(user.id)
  })

  it('a pushed prompt=login sends the user to sign in once, and a sign-in after the push completes it', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const { body } = await push(client, await pkce(), { prompt: 'login' })
    const query = { client_id: client.client_id, request_uri: String(body.request_uri) }
    const first = await authorize(query, user.cookie)
    expect(first.status).toBe(302)
    expect(first.headers.get('location') ?? '').toMatch(/^\/login\?return_to=/)
    const fresh = await signIn(user)
    const back = await authorize(query, fresh)
    expect(back.status).toBe(302)
    expect(new URL(back.headers.get('location') ?? '').searchParams.has('code')).toBe(true)
  })
})
