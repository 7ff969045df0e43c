import { SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import * as oidc from 'openid-client'
import { describe, expect, it } from 'vitest'
import { testDb } from '../helpers/db'
import {
  adminClient,
  csrfOf,
  exchangeCode,
  ISSUER,
  obtainCode,
  type SeededUser,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, postJson } from '../helpers/worker'

const BACK = 'https://app.example.com/signed-out'

async function liveSessions(userId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from sessions where user_id = ${userId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function logoutEvents(userId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = 'user_logout' and user_id = ${userId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function signedIn(): Promise<{ client: TestClient; user: SeededUser; idToken: string }> {
  const client = await webClient({ first_party: true, post_logout_redirect_uris: [BACK] })
  const user = await seedUser()
  const res = await exchangeCode(client, await obtainCode(client, user))
  const body = (await res.json()) as TokenSet
  expect(res.status, JSON.stringify(body)).toBe(200)
  return { client, user, idToken: body.id_token ?? '' }
}

function logout(query: Record<string, string>, cookie: string): Promise<Response> {
  return call(`/oauth/logout?${new URLSearchParams(query).toString()}`, {
    headers: { cookie },
    redirect: 'manual',
  })
}

describe('RP-initiated logout (OIDC RP-Initiated Logout 1.0)', () => {
  it('a valid id_token_hint of the signed-in user ends the session and returns to the registered URI with state', async () => {
    const { user, idToken } = await signedIn()
    expect(await liveSessions(user.id)).toBe(1)
    const res = await logout(
      { id_token_hint: idToken, post_logout_redirect_uri: BACK, state: 'bye' },
      user.cookie,
    )
    expect(res.status).toBe(302)
    const location = new URL(res.headers.get('location') ?? '')
    expect(`${location.origin}${location.pathname}`).toBe(BACK)
    expect(location.searchParams.get('state')).toBe('bye')
    expect(res.headers.get('set-cookie') ?? '').toMatch(/portcullis_session=;/)
    expect(await liveSessions(user.id)).toBe(0)
    expect(await logoutEvents(user.id)).toBe(1)
  })

  it.each([
    [
      'an unregistered post_logout_redirect_uri',
      (t: string) => ({ id_token_hint: t, post_logout_redirect_uri: 'https://evil.example.com/' }),
    ],
    ['a tampered id_token_hint', (t: string) => ({ id_token_hint: `${t.slice(0, -4)}AAAA` })],
    ['an access-token-shaped hint', () => ({ id_token_hint: 'a.b.c' })],
    ['a client_id other than the hint’s', (t: string) => ({ id_token_hint: t, client_id: 'someone-else' })],
    ['a redirect URI without any client named', () => ({ post_logout_redirect_uri: BACK })],
  ])('refuses %s with 400 and keeps the session', async (_name, query) => {
    const { user, idToken } = await signedIn()
    const res = await logout(query(idToken), user.cookie)
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('logout-error')
    expect(await liveSessions(user.id)).toBe(1)
    expect(await logoutEvents(user.id)).toBe(0)
  })

  it('without a hint: a confirmation page; a POST without its CSRF token changes nothing; with it, signs out', async () => {
    const { client, user } = await signedIn()
    const page = await logout(
      { client_id: client.client_id, post_logout_redirect_uri: BACK, state: 's1' },
      user.cookie,
    )
    expect(page.status).toBe(200)
    const html = await page.text()
    expect(html).toContain('action="/oauth/logout"')
    expect(await liveSessions(user.id)).toBe(1)
    const form = { client_id: client.client_id, post_logout_redirect_uri: BACK, state: 's1', confirm: 'yes' }
    const forged = await call('/oauth/logout', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: user.cookie },
      body: new URLSearchParams(form).toString(),
    })
    expect(forged.status).toBe(403)
    expect(await liveSessions(user.id)).toBe(1)
    const csrf = csrfOf(page, html)
    const confirmed = await call('/oauth/logout', {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: `${user.cookie}; portcullis_csrf=${csrf.cookie}`,
      },
      body: new URLSearchParams({ ...form, csrf_token: csrf.field }).toString(),
    })
    expect(confirmed.status).toBe(302)
    expect(new URL(confirmed.headers.get('location') ?? '').searchParams.get('state')).toBe('s1')
    expect(await liveSessions(user.id)).toBe(0)
  })

  it('a hint for another user than the one signed in asks first', async () => {
    const { idToken } = await signedIn()
    const someoneElse = await seedUser()
    const res = await logout({ id_token_hint: idToken }, someoneElse.cookie)
    expect(res.status).toBe(200)
    expect(await liveSessions(someoneElse.id)).toBe(1)
  })

  it('registration checks post_logout_redirect_uris like redirect URIs; discovery lists end_session_endpoint', async () => {
    const bad = await postJson('/oauth/register', {
      redirect_uris: ['https://x.example.com/cb'],
      post_logout_redirect_uris: ['http://x.example.com/bye'],
    })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: string }).error).toBe('invalid_redirect_uri')
    const meta = (await (await call('/.well-known/openid-configuration')).json()) as Record<string, unknown>
    expect(meta.end_session_endpoint).toBe(`${ISSUER}/oauth/logout`)
    const ok = await adminClient({
      redirect_uris: ['https://x.example.com/cb'],
      post_logout_redirect_uris: [BACK],
    })
    expect((ok as unknown as Record<string, unknown>).post_logout_redirect_uris).toEqual([BACK])
  })

  it('interop: openid-client buildEndSessionUrl, unmodified', async () => {
    const { client, user, idToken } = await signedIn()
    const config = await oidc.discovery(
      new URL(ISSUER),
      client.client_id,
      undefined,
      oidc.ClientSecretBasic(client.client_secret ?? ''),
      {
        execute: [oidc.allowInsecureRequests],
        [oidc.customFetch]: (url: string, init: oidc.CustomFetchOptions) =>
          SELF.fetch(url, init as unknown as RequestInit) as unknown as Promise<Response>,
      },
    )
    const url = oidc.buildEndSessionUrl(config, {
      id_token_hint: idToken,
      post_logout_redirect_uri: BACK,
      state: 'x',
    })
    const res = await SELF.fetch(url.href, { headers: { cookie: user.cookie }, redirect: 'manual' })
    expect(res.status).toBe(302)
    expect(await liveSessions(user.id)).toBe(0)
  })
})
