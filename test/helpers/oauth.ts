import { sql } from 'drizzle-orm'
import { createLocalJWKSet, type JSONWebKeySet, type JWTPayload, jwtVerify } from 'jose'
import { randomToken } from '../../functions/crypto/random'
import { DEVICE_CODE_GRANT, TOKEN_EXCHANGE_GRANT } from '../../functions/oauth/client-metadata'
import { ACCESS_TOKEN_TYPE } from '../../functions/oauth/grants/token-exchange'
import { s256Challenge } from '../../functions/oauth/pkce'
import { type SeededUser, seedUser as seedAccount } from './accounts'
import { testDb, unique } from './db'
import { adminHeaders, call, postJson } from './worker'

/** The issuer the Worker under test uses (wrangler.toml default); requests reach SELF whatever the host. */
export const ISSUER = 'http://127.0.0.1:8787'
export const DEVICE_GRANT = DEVICE_CODE_GRANT

export type { SeededUser } from './accounts'
export { ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT }

/** A user row plus a live session: the suite's one seedUser (test/helpers/accounts.ts). */
export function seedUser(
  options: { isAdmin?: boolean; status?: 'active' | 'pending' | 'suspended' } = {},
): Promise<SeededUser> {
  return seedAccount({
    email: `${unique('user')}@example.com`,
    displayName: 'Test User',
    session: true,
    ...options,
  })
}

export async function setUserStatus(userId: string, status: 'active' | 'suspended'): Promise<void> {
  await testDb().execute(sql`update users set status = ${status} where id = ${userId}`)
}

export interface TestClient {
  client_id: string
  client_secret?: string
  redirect_uris: string[]
  registration_access_token?: string
  registration_client_uri?: string
}

/** A client created through POST /admin/clients (may be first-party or privileged). */
export async function adminClient(metadata: Record<string, unknown>): Promise<TestClient> {
  const res = await postJson('/admin/clients', metadata, adminHeaders())
  if (res.status !== 201) {
    throw new Error(`admin client: ${res.status} ${await res.text()}`)
  }
  return (await res.json()) as TestClient
}

/** A confidential web client for the code flow, with refresh tokens. */
export function webClient(extra: Record<string, unknown> = {}): Promise<TestClient> {
  return adminClient({
    client_name: 'Test web app',
    redirect_uris: ['https://app.example.com/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    scope: 'openid profile email offline_access apikeys:write',
    ...extra,
  })
}

export function basicAuth(client: TestClient): Record<string, string> {
  const id = encodeURIComponent(client.client_id)
  const secret = encodeURIComponent(client.client_secret ?? '')
  return { authorization: `Basic ${btoa(`${id}:${secret}`)}` }
}

/** POST an x-www-form-urlencoded body. */
export function postForm(
  path: string,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return call(path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  })
}

/** RFC 8693: `client` exchanges an access token (`form` carries subject_token and the rest). */
export function tokenExchange(
  client: TestClient,
  form: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Response> {
  return postForm(
    '/oauth/token',
    { grant_type: TOKEN_EXCHANGE_GRANT, subject_token_type: ACCESS_TOKEN_TYPE, ...form },
    { ...basicAuth(client), ...headers },
  )
}

export async function clientCredentialsToken(client: TestClient, scope?: string): Promise<string> {
  const res = await postForm(
    '/oauth/token',
    { grant_type: 'client_credentials', ...(scope === undefined ? {} : { scope }) },
    basicAuth(client),
  )
  if (res.status !== 200) {
    throw new Error(`client_credentials: ${res.status} ${await res.text()}`)
  }
  return ((await res.json()) as { access_token: string }).access_token
}

export interface Pkce {
  verifier: string
  challenge: string
}

export async function pkce(): Promise<Pkce> {
  const verifier = randomToken(32)
  return { verifier, challenge: await s256Challenge(verifier) }
}

/** GET /oauth/authorize without following redirects. */
export function authorize(params: Record<string, string>, cookie?: string): Promise<Response> {
  const query = new URLSearchParams(params).toString()
  return call(`/oauth/authorize?${query}`, {
    redirect: 'manual',
    headers: cookie === undefined ? {} : { cookie },
  })
}

export interface CodeResult {
  code: string
  pkce: Pkce
  redirectUri: string
}

/** The query of an authorization-code request with PKCE (S256) for `client`, plus `extra`. */
export function codeRequest(
  client: TestClient,
  p: Pkce,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0] ?? '',
    code_challenge: p.challenge,
    code_challenge_method: 'S256',
    ...extra,
  }
}

/** Runs /oauth/authorize for a user who already consented or a first-party client: the code. */
export async function obtainCode(
  client: TestClient,
  user: SeededUser,
  extra: Record<string, string> = {},
): Promise<CodeResult> {
  const p = await pkce()
  const redirectUri = client.redirect_uris[0] ?? ''
  const res = await authorize(
    codeRequest(client, p, { scope: 'openid email offline_access', state: 'st', ...extra }),
    user.cookie,
  )
  let location = res.headers.get('location')
  if (res.status === 200) {
    // Consent page: approve it.
    location = await approveConsent(res, user)
  }
  if (location === null) {
    throw new Error(`authorize: ${res.status} ${await res.text()}`)
  }
  const code = new URL(location).searchParams.get('code')
  if (code === null) {
    throw new Error(`authorize gave no code: ${location}`)
  }
  return { code, pkce: p, redirectUri }
}

/** Submits the consent form of a consent page: the Location it redirects to. */
export async function approveConsent(
  page: Response,
  user: SeededUser,
  decision = 'approve',
): Promise<string | null> {
  const html = await page.text()
  const fields = new URLSearchParams()
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields.set(match[1] ?? '', decodeHtml(match[2] ?? ''))
  }
  fields.set('decision', decision)
  const csrf = csrfOf(page, html).cookie
  const res = await call('/oauth/consent', {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `${user.cookie}; portcullis_csrf=${csrf ?? ''}`,
    },
    body: fields.toString(),
  })
  return res.headers.get('location')
}

function decodeHtml(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
}

export function exchangeCode(
  client: TestClient,
  result: CodeResult,
  overrides: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<Response> {
  return postForm(
    '/oauth/token',
    {
      grant_type: 'authorization_code',
      code: result.code,
      code_verifier: result.pkce.verifier,
      redirect_uri: result.redirectUri,
      ...overrides,
    },
    { ...basicAuth(client), ...headers },
  )
}

export interface TokenSet {
  access_token: string
  refresh_token?: string
  id_token?: string
  scope: string
  expires_in: number
  token_type: string
}

export function refresh(
  client: TestClient,
  refreshToken: string,
  extra: Record<string, string> = {},
): Promise<Response> {
  return postForm(
    '/oauth/token',
    { grant_type: 'refresh_token', refresh_token: refreshToken, ...extra },
    basicAuth(client),
  )
}

export { randomToken }

/** The suite's one JWKS fetcher: the key set the Worker publishes. */
export async function fetchJwks(): Promise<JSONWebKeySet> {
  const res = await call('/.well-known/jwks.json')
  if (res.status !== 200) {
    throw new Error(`jwks: ${res.status} ${await res.text()}`)
  }
  return (await res.json()) as JSONWebKeySet
}

/**
 * Verifies an id_token the way a relying party must (OIDC Core §3.1.3.7): signature against
 * the published JWKS, iss, aud (and azp), exp, and the nonce when one was sent. Returns the claims.
 */
export async function verifyIdToken(
  idToken: string | undefined,
  expected: { clientId: string; nonce?: string; subject?: string },
): Promise<JWTPayload> {
  if (idToken === undefined) {
    throw new Error('no id_token')
  }
  const { payload } = await jwtVerify(idToken, createLocalJWKSet(await fetchJwks()), {
    issuer: ISSUER,
    audience: expected.clientId,
    requiredClaims: ['sub', 'iat', 'exp'],
  })
  if (expected.nonce !== undefined && payload.nonce !== expected.nonce) {
    throw new Error(`id_token nonce ${String(payload.nonce)} is not ${expected.nonce}`)
  }
  if (expected.subject !== undefined && payload.sub !== expected.subject) {
    throw new Error(`id_token sub ${payload.sub} is not ${expected.subject}`)
  }
  return payload
}

/** The CSRF pair of a rendered form page: the hidden field and the cookie it is bound to. */
export function csrfOf(page: Response, html: string): { field: string; cookie: string } {
  const field = /name="csrf_token" value="([^"]+)"/.exec(html)?.[1] ?? ''
  const cookie = page.headers.get('set-cookie')?.match(/(?:__Host-)?portcullis_csrf=([^;]+)/)?.[1] ?? ''
  return { field, cookie }
}

export interface DeviceStart {
  device_code: string
  user_code: string
  verification_uri: string
  verification_uri_complete: string
  interval: number
}

/** A public client of the device grant (RFC 8628) that also uses refresh tokens. */
export function publicDeviceClient(): Promise<TestClient> {
  return adminClient({
    grant_types: [DEVICE_GRANT, 'refresh_token'],
    token_endpoint_auth_method: 'none',
    scope: 'openid offline_access',
  })
}

/** POST /oauth/device_authorization for a public client. */
export async function deviceStart(clientId: string, scope = 'openid offline_access'): Promise<DeviceStart> {
  const res = await postForm('/oauth/device_authorization', { client_id: clientId, scope })
  if (res.status !== 200) {
    throw new Error(`device_authorization: ${res.status} ${await res.text()}`)
  }
  return (await res.json()) as DeviceStart
}

/** The user enters the code at /device and decides (through the real form and its CSRF token). */
export async function deviceDecide(user: SeededUser, userCode: string, decision: string): Promise<Response> {
  const page = await call(`/device?user_code=${encodeURIComponent(userCode)}`, {
    headers: { cookie: user.cookie },
  })
  if (page.status !== 200) {
    throw new Error(`device page: ${page.status} ${await page.text()}`)
  }
  const csrf = csrfOf(page, await page.text())
  return postForm(
    '/device',
    { user_code: userCode, csrf_token: csrf.field, decision },
    { cookie: `${user.cookie}; portcullis_csrf=${csrf.cookie}` },
  )
}

/** One device-grant poll at the token endpoint (public client: client_id in the body). */
export function devicePoll(clientId: string, deviceCode: string): Promise<Response> {
  return postForm('/oauth/token', { grant_type: DEVICE_GRANT, device_code: deviceCode, client_id: clientId })
}

/**
 * Registers `identifier` as a resource server (issue 11: an unregistered `resource` is
 * invalid_target), or leaves the one already registered; files share the database.
 */
export async function ensureResourceServer(
  identifier: string,
  scopes: { name: string; description: string }[] = [],
): Promise<void> {
  const res = await postJson(
    '/admin/resource-servers',
    { identifier, display_name: new URL(identifier).host, scopes },
    adminHeaders(),
  )
  if (res.status !== 201 && res.status !== 409) {
    throw new Error(`resource server: ${res.status} ${await res.text()}`)
  }
}
