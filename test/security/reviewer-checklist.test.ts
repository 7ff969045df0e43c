import { env } from 'cloudflare:test'
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { createDb } from '../../db/client'
import { parseConfig } from '../../functions/config'
import { resetKeyCache, signingKeyFor } from '../../functions/tokens/keys'
import { seedUser as seedAccount } from '../helpers/accounts'
import { createKeyAsAdmin } from '../helpers/apikeys'
import {
  adminClient,
  authorize,
  basicAuth,
  clientCredentialsToken,
  ensureResourceServer,
  exchangeCode,
  fetchJwks,
  ISSUER,
  obtainCode,
  pkce,
  postForm,
  refresh,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { call, callWith, describeResponse, postJson } from '../helpers/worker'

// What an auth-server reviewer asks for first (issue 17). Each test names what it refuses.

const REDIRECT = 'https://app.example.com/callback'

function publicClient(extra: Record<string, unknown> = {}): Promise<TestClient> {
  return adminClient({
    client_name: 'Public SPA',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'none',
    scope: 'openid email offline_access apikeys:write',
    first_party: true,
    ...extra,
  })
}

async function tokensFor(client: TestClient, extra: Record<string, string> = {}) {
  const user = await seedUser()
  const code = await obtainCode(client, user, {
    scope: 'openid email offline_access apikeys:write',
    ...extra,
  })
  const res = await exchangeCode(client, code)
  expect(res.status, await describeResponse(res)).toBe(200)
  return { user, tokens: (await res.json()) as TokenSet }
}

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

/** Re-signs `token`'s claims (patched) with the server's own active ES256 key: only the claims are wrong. */
async function resign(token: string, patch: Record<string, unknown>): Promise<string> {
  const config = parseConfig(env)
  const db = createDb({
    databaseUrl: config.databaseUrl,
    gatewayUrl: config.dbGatewayUrl,
    waitUntil: () => {},
  })
  const key = await signingKeyFor(db, config, 'ES256')
  const header = decodeProtectedHeader(token)
  const claims = { ...decodeJwt(token), ...patch }
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: header.typ ?? 'at+jwt' })
    .sign(await key.privateKey())
}

/** HS256 over the token's claims with a published public key as the HMAC secret (alg confusion). */
async function hs256WithPublicKey(token: string): Promise<string> {
  const { keys } = await fetchJwks()
  const es = keys.find((k) => k.alg === 'ES256') ?? keys[0]
  const secret = new TextEncoder().encode(JSON.stringify(es))
  return new SignJWT(decodeJwt(token))
    .setProtectedHeader({ alg: 'HS256', kid: es?.kid, typ: 'at+jwt' })
    .sign(secret)
}

describe('public clients at the token endpoint (no secret)', () => {
  it('exchange a code and refresh with client_id alone', async () => {
    const client = await publicClient()
    expect(client.client_secret).toBeUndefined()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const res = await postForm('/oauth/token', {
      grant_type: 'authorization_code',
      code: code.code,
      code_verifier: code.pkce.verifier,
      redirect_uri: code.redirectUri,
      client_id: client.client_id,
    })
    expect(res.status, await describeResponse(res)).toBe(200)
    const tokens = (await res.json()) as TokenSet
    expect(tokens.refresh_token).toBeTruthy()
    const refreshed = await postForm('/oauth/token', {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token ?? '',
      client_id: client.client_id,
    })
    expect(refreshed.status, await describeResponse(refreshed)).toBe(200)
    expect(((await refreshed.json()) as TokenSet).refresh_token).not.toBe(tokens.refresh_token)
  })
})

describe('client authentication negatives', () => {
  it('a confidential client that sends no secret is invalid_client (401)', async () => {
    const client = await webClient()
    const { tokens } = await tokensFor(client)
    const res = await postForm('/oauth/token', {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token ?? '',
      client_id: client.client_id,
    })
    expect(res.status, await describeResponse(res)).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'invalid_client' })
  })

  it('a public client that sends a secret is invalid_client (401)', async () => {
    const client = await publicClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const res = await exchangeCode({ ...client, client_secret: 'made-up-secret' }, code)
    expect(res.status, await describeResponse(res)).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'invalid_client' })
  })

  it("another client's refresh token is invalid_grant and stays usable by its owner", async () => {
    const owner = await webClient()
    const thief = await webClient()
    const { tokens } = await tokensFor(owner)
    const stolen = await refresh(thief, tokens.refresh_token ?? '')
    expect(stolen.status, await describeResponse(stolen)).toBe(400)
    expect(await stolen.json()).toMatchObject({ error: 'invalid_grant' })
    expect((await refresh(owner, tokens.refresh_token ?? '')).status).toBe(200)
  })
})

describe('bad bearer tokens at every resource endpoint', () => {
  type Variant = (tokens: TokenSet) => Promise<string>
  const variants: [string, Variant][] = [
    ['an expired token', (t) => resign(t.access_token, { exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['a token of another issuer', (t) => resign(t.access_token, { iss: 'https://evil.example.com' })],
    ['a token for another audience', (t) => resign(t.access_token, { aud: 'https://other-api.example.com' })],
    ['an id_token used as a bearer', async (t) => t.id_token ?? ''],
    ['HS256 signed with the public key', (t) => hs256WithPublicKey(t.access_token)],
  ]

  it.each(variants)(
    'refuses %s at userinfo, /api-keys, /api-keys/verify and /admin with 401',
    async (_what, make) => {
      const admin = await seedUser({ isAdmin: true })
      const client = await webClient({
        scope: 'openid email offline_access apikeys:write apikeys:verify admin',
      })
      const code = await obtainCode(client, admin, {
        scope: 'openid email apikeys:write apikeys:verify admin',
      })
      const tokens = (await (await exchangeCode(client, code)).json()) as TokenSet
      const key = await createKeyAsAdmin()
      const endpoints: [string, (token: string) => Promise<Response>][] = [
        ['userinfo', (token) => call('/oauth/userinfo', { headers: bearer(token) })],
        ['/api-keys', (token) => call('/api-keys', { headers: bearer(token) })],
        ['/api-keys/verify', (token) => postJson('/api-keys/verify', { key: key.key }, bearer(token))],
        ['/admin/users', (token) => call('/admin/users', { headers: bearer(token) })],
      ]
      // The genuine token is accepted everywhere, so a 401 below is the variant's doing.
      for (const [name, request] of endpoints) {
        const ok = await request(tokens.access_token)
        expect(ok.status, `${name} genuine: ${await describeResponse(ok)}`).toBe(200)
      }
      const bad = await make(tokens)
      expect(bad).not.toBe('')
      for (const [name, request] of endpoints) {
        const res = await request(bad)
        expect(res.status, `${name}: ${await describeResponse(res)}`).toBe(401)
      }
    },
  )
})

describe('dynamic client registration', () => {
  it('cannot make a first-party client', async () => {
    const res = await postJson('/oauth/register', { redirect_uris: [REDIRECT], first_party: true })
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_client_metadata' })
  })

  it('REGISTRATION_POLICY=token refuses an anonymous registration and accepts the initial access token', async () => {
    const init = (headers: Record<string, string>): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ redirect_uris: [REDIRECT] }),
    })
    const anonymous = await callWith({ REGISTRATION_POLICY: 'token' }, '/oauth/register', init({}))
    expect(anonymous.status, await describeResponse(anonymous)).toBe(401)
    const wrong = await callWith({ REGISTRATION_POLICY: 'token' }, '/oauth/register', init(bearer('nope')))
    expect(wrong.status, await describeResponse(wrong)).toBe(401)
    const vouched = await callWith(
      { REGISTRATION_POLICY: 'token' },
      '/oauth/register',
      init(bearer(env.ADMIN_TOKEN)),
    )
    expect(vouched.status, await describeResponse(vouched)).toBe(201)
  })
})

describe('consent form', () => {
  async function consentPage(client: TestClient) {
    const user = await seedUser()
    const p = await pkce()
    const page = await authorize(
      {
        response_type: 'code',
        client_id: client.client_id,
        redirect_uri: REDIRECT,
        code_challenge: p.challenge,
        code_challenge_method: 'S256',
        scope: 'openid email',
        state: 'st',
      },
      user.cookie,
    )
    expect(page.status, await describeResponse(page)).toBe(200)
    const html = await page.text()
    const fields = new URLSearchParams()
    for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
      fields.set(match[1] ?? '', (match[2] ?? '').replace(/&amp;/g, '&').replace(/&quot;/g, '"'))
    }
    const csrfCookie = page.headers.get('set-cookie')?.match(/portcullis_csrf=([^;]+)/)?.[1] ?? ''
    return { user, fields, csrfCookie }
  }

  function submit(cookie: string, fields: URLSearchParams) {
    return call('/oauth/consent', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: fields.toString(),
    })
  }

  it('refuses a forged CSRF token and issues no code', async () => {
    const client = await webClient()
    const { user, fields, csrfCookie } = await consentPage(client)
    fields.set('decision', 'approve')
    fields.set('csrf_token', 'forged')
    const res = await submit(`${user.cookie}; portcullis_csrf=${csrfCookie}`, fields)
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(res.headers.get('location')).toBeNull()
  })

  it.each([
    ['redirect_uri', 'https://evil.example.com/cb'],
    ['scope', 'openid email offline_access apikeys:write'],
    ['client_id', 'someone-else'],
  ])('refuses a tampered hidden %s and never redirects to it', async (field, value) => {
    const client = await webClient()
    const { user, fields, csrfCookie } = await consentPage(client)
    expect(fields.has(field) || field !== 'redirect_uri').toBe(true)
    fields.set('decision', 'approve')
    fields.set(field, value)
    const res = await submit(`${user.cookie}; portcullis_csrf=${csrfCookie}`, fields)
    const location = res.headers.get('location') ?? ''
    expect(location.startsWith('https://evil.example.com')).toBe(false)
    if (res.status === 302 || res.status === 303) {
      // Only the registered redirect, and never a code for the widened request.
      const url = new URL(location)
      expect(`${url.origin}${url.pathname}`).toBe(REDIRECT)
      const code = url.searchParams.get('code')
      if (code !== null) {
        const exchanged = await postForm(
          '/oauth/token',
          { grant_type: 'authorization_code', code, code_verifier: 'x'.repeat(43), redirect_uri: REDIRECT },
          basicAuth(client),
        )
        expect(exchanged.status).toBe(400)
      }
    } else {
      expect(res.status, await describeResponse(res)).toBeGreaterThanOrEqual(400)
      expect(res.status).toBeLessThan(500)
    }
  })
})

describe('revocation', () => {
  it("a client cannot revoke another client's token", async () => {
    const owner = await webClient()
    const other = await webClient()
    const { tokens } = await tokensFor(owner)
    const res = await postForm('/oauth/revoke', { token: tokens.refresh_token ?? '' }, basicAuth(other))
    // RFC 7009: the answer does not tell; the token must still work for its owner.
    expect(res.status).toBeLessThan(500)
    expect((await refresh(owner, tokens.refresh_token ?? '')).status).toBe(200)
    const access = await postForm('/oauth/revoke', { token: tokens.access_token }, basicAuth(other))
    expect(access.status).toBeLessThan(500)
    expect((await call('/oauth/userinfo', { headers: bearer(tokens.access_token) })).status).toBe(200)
  })
})

describe('the database down on /oauth/*', () => {
  const down = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' }
  it.each([
    ['client_credentials', { grant_type: 'client_credentials' }],
    ['authorization_code', { grant_type: 'authorization_code', code: 'x', code_verifier: 'y'.repeat(43) }],
    ['refresh_token', { grant_type: 'refresh_token', refresh_token: 'z' }],
  ])('%s answers 503 temporarily_unavailable', async (_grant, form) => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await callWith(down, '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
      body: new URLSearchParams(form as Record<string, string>).toString(),
    })
    expect(res.status, await describeResponse(res)).toBe(503)
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
  })

  it('a code exchanged while the database is down is still good once it is back (nothing half-written)', async () => {
    const client = await webClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const form = {
      grant_type: 'authorization_code',
      code: code.code,
      code_verifier: code.pkce.verifier,
      redirect_uri: code.redirectUri,
    }
    const failed = await callWith(down, '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
      body: new URLSearchParams(form).toString(),
    })
    expect(failed.status).toBe(503)
    const later = await exchangeCode(client, code)
    expect(later.status, await describeResponse(later)).toBe(200)
  })
})

describe('device flow across clients', () => {
  it('a device code polled by another client is refused and does not consume it', async () => {
    const { deviceDecide, devicePoll, deviceStart, DEVICE_GRANT } = await import('../helpers/oauth')
    const make = () =>
      adminClient({ grant_types: [DEVICE_GRANT], token_endpoint_auth_method: 'none', scope: 'openid' })
    const [owner, other] = await Promise.all([make(), make()])
    const device = await deviceStart(owner.client_id, 'openid')
    const user = await seedUser()
    expect((await deviceDecide(user, device.user_code, 'approve')).status).toBe(200)
    const stolen = await devicePoll(other.client_id, device.device_code)
    expect(stolen.status, await describeResponse(stolen)).toBe(400)
    expect(await stolen.json()).toMatchObject({ error: 'invalid_grant' })
    const mine = await devicePoll(owner.client_id, device.device_code)
    expect(mine.status, await describeResponse(mine)).toBe(200)
  })
})

describe('API-key management with an access token', () => {
  it('needs apikeys:write: without it 403, with it 201', async () => {
    const client = await webClient()
    const user = await seedUser()
    const narrow = (await (
      await exchangeCode(client, await obtainCode(client, user, { scope: 'openid email' }))
    ).json()) as TokenSet
    const refused = await postJson('/api-keys', { name: 'k' }, bearer(narrow.access_token))
    expect(refused.status, await describeResponse(refused)).toBe(403)
    const listRefused = await call('/api-keys', { headers: bearer(narrow.access_token) })
    expect(listRefused.status).toBe(403)
    const wide = (await (
      await exchangeCode(client, await obtainCode(client, user, { scope: 'openid apikeys:write' }))
    ).json()) as TokenSet
    const created = await postJson('/api-keys', { name: 'k' }, bearer(wide.access_token))
    expect(created.status, await describeResponse(created)).toBe(201)
  })
})

describe('MASTER_KEY rotation', () => {
  it('with k2,k1 the signing keys encrypted under k1 still sign and verify', async () => {
    const k2 = `k2:${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '')}`
    const rotated = { MASTER_KEY: `${k2},${env.MASTER_KEY}` }
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    // Forget the keys this isolate already decrypted: the rotated configuration must decrypt them itself.
    resetKeyCache()
    const res = await callWith(rotated, '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(machine) },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    })
    expect(res.status, await describeResponse(res)).toBe(200)
    const { access_token } = (await res.json()) as TokenSet
    // The token signed under the rotated configuration verifies under the old one too.
    const intro = await postForm('/oauth/introspect', { token: access_token }, basicAuth(machine))
    expect(await intro.json()).toMatchObject({ active: true, client_id: machine.client_id })
    resetKeyCache()
  })

  it('without k1 the keys encrypted under it cannot be used: 503, never a token', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    resetKeyCache()
    const res = await callWith({ MASTER_KEY: `k2:${'A'.repeat(43)}` }, '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(machine) },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    })
    resetKeyCache()
    expect(res.status, await describeResponse(res)).toBe(503)
  })
})

describe('session cookie under an https issuer', () => {
  it('is Secure (and not under the loopback http issuer)', async () => {
    const account = await seedAccount()
    const https = {
      ISSUER: 'https://id.example.com',
      REGISTRATION_POLICY: 'token',
      MAIL_PROVIDER: 'webhook',
      MAIL_WEBHOOK_URL: 'http://127.0.0.1:9/mail',
      MAIL_WEBHOOK_SECRET: 'w'.repeat(40),
    }
    const login = await callWith(https, '/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://id.example.com' },
      body: JSON.stringify({ email: account.email, password: account.password }),
    })
    expect(login.status, await describeResponse(login)).toBe(200)
    const cookie = login.headers.getSetCookie().find((c) => /portcullis_session=/.test(c))
    expect(cookie).toMatch(/;\s*Secure/i)
    const plain = await postJson('/auth/login', { email: account.email, password: account.password })
    const plainCookie = plain.headers.getSetCookie().find((c) => /portcullis_session=/.test(c))
    expect(plainCookie).toBeDefined()
    expect(plainCookie).not.toMatch(/;\s*Secure/i)
  })
})

describe('audience of access tokens', () => {
  it('an RFC 8707 resource sets aud', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    // Issue 11: a resource must be registered; an unregistered one is invalid_target (test/mcp).
    await ensureResourceServer('https://api.example.com/')
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials', resource: 'https://api.example.com/' },
      basicAuth(machine),
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(decodeJwt(((await res.json()) as TokenSet).access_token).aud).toBe('https://api.example.com/')
  })

  it('DEFAULT_AUDIENCE sets aud when no resource is asked for; without either it is the issuer', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await callWith({ DEFAULT_AUDIENCE: 'https://default-api.example.com' }, '/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(machine) },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
    })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(decodeJwt(((await res.json()) as TokenSet).access_token).aud).toBe(
      'https://default-api.example.com',
    )
    expect(decodeJwt(await clientCredentialsToken(machine)).aud).toBe(ISSUER)
  })
})
