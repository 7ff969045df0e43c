import { createHash, randomBytes } from 'node:crypto'
import pg from 'pg'
import { DEVICE_CODE_GRANT, TOKEN_EXCHANGE_GRANT } from '../../functions/oauth/client-metadata'

/**
 * Seeds what the bench's scenarios need, through the public API wherever one exists (admin
 * token → clients, keys; register → users), and plain SQL only where there is none. Every
 * step that depends on an endpoint another capability provides reports why it could not run
 * instead of failing the bench: the matching scenarios print "n/a".
 */

export type Outcome<T> = { ok: true; value: T } | { ok: false; reason: string }

export const NOT_IMPLEMENTED = 'not implemented'
export const BENCH_PASSWORD = 'bench-Password-correct-horse-42'
export const BENCH_REDIRECT_URI = 'http://127.0.0.1:9/callback'
const VERIFY_KEY_COUNT = 50

export interface OurSeed {
  user: Outcome<{ id: string; email: string }>
  /** client_credentials client holding `apikeys:verify` (also the introspection caller). */
  machineClient: Outcome<{ clientId: string; clientSecret: string }>
  /** A client_credentials access token (ES256 JWT) for the machine client. */
  accessToken: Outcome<string>
  /** First-party public client for authorization_code + refresh_token. */
  browserClient: Outcome<{ clientId: string }>
  /** Confidential client that exchanges the bench user's access token (RFC 8693). */
  exchangeClient: Outcome<{ clientId: string; clientSecret: string }>
  /** Public client of the device authorization grant (RFC 8628). */
  deviceClient: Outcome<{ clientId: string }>
  /** Enterprise (unlimited quota) keys, one per connection. */
  apiKeys: Outcome<string[]>
  /** The id of the first of apiKeys (its usage is what the bench reads). */
  usageKeyId: Outcome<string>
  /** A well-formed key that is not in the database. */
  unknownKey: Outcome<string>
}

export interface AuthorizedTokens {
  refreshToken: string
  accessToken: string
}

export function reasonOf(status: number, body: string): string {
  if (status === 404) {
    return NOT_IMPLEMENTED
  }
  return `HTTP ${status}: ${body.replace(/\s+/g, ' ').slice(0, 160)}`
}

async function send(
  base: string,
  path: string,
  init: RequestInit,
): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${base}${path}`, {
    ...init,
    redirect: 'manual',
    signal: AbortSignal.timeout(30_000),
  })
  return { status: res.status, text: await res.text(), headers: res.headers }
}

function parseJson(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text) as unknown
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

export function basicAuth(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`
}

function jsonInit(body: unknown, headers: Record<string, string> = {}): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  }
}

export function formInit(fields: Record<string, string>, headers: Record<string, string> = {}): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  }
}

async function seedUser(base: string, databaseUrl: string): Promise<Outcome<{ id: string; email: string }>> {
  const email = `bench-${Date.now()}-${randomBytes(4).toString('hex')}@bench.example`
  const res = await send(
    base,
    '/auth/register',
    jsonInit({ email, password: BENCH_PASSWORD, display_name: 'Bench' }),
  )
  if (res.status === 201) {
    const user = parseJson(res.text).user as Record<string, unknown> | undefined
    if (typeof user?.id === 'string') {
      // REQUIRE_APPROVAL may hold the account as pending; the bench needs it able to sign in.
      await withClient(databaseUrl, (client) =>
        client.query(`update users set status = 'active', email_verified_at = now() where id = $1`, [
          user.id,
        ]),
      )
      return { ok: true, value: { id: user.id, email } }
    }
  }
  // No register endpoint yet: a row the API-key owner can point at (it cannot sign in).
  if (res.status === 404) {
    const id = await withClient(databaseUrl, async (client) => {
      const tenant = await client.query<{ id: string }>('select id from tenants order by created_at limit 1')
      const inserted = await client.query<{ id: string }>(
        `insert into users (tenant_id, email, password_hash, status) values ($1, $2, 'unusable', 'active') returning id`,
        [tenant.rows[0]?.id, email],
      )
      return inserted.rows[0]?.id
    })
    if (id !== undefined) {
      return { ok: true, value: { id, email } }
    }
  }
  return { ok: false, reason: reasonOf(res.status, res.text) }
}

async function createClient(
  base: string,
  adminToken: string,
  metadata: Record<string, unknown>,
): Promise<Outcome<{ clientId: string; clientSecret?: string }>> {
  const res = await send(
    base,
    '/admin/clients',
    jsonInit(metadata, { authorization: `Bearer ${adminToken}` }),
  )
  if (res.status !== 201) {
    return { ok: false, reason: reasonOf(res.status, res.text) }
  }
  const body = parseJson(res.text)
  if (typeof body.client_id !== 'string') {
    return { ok: false, reason: `no client_id in ${res.text.slice(0, 120)}` }
  }
  return {
    ok: true,
    value: {
      clientId: body.client_id,
      ...(typeof body.client_secret === 'string' ? { clientSecret: body.client_secret } : {}),
    },
  }
}

/** A confidential client's credentials, or why there are none. */
function confidential(
  created: Outcome<{ clientId: string; clientSecret?: string }>,
): Outcome<{ clientId: string; clientSecret: string }> {
  if (!created.ok) {
    return created
  }
  return created.value.clientSecret === undefined
    ? { ok: false, reason: 'no client_secret for a confidential client' }
    : { ok: true, value: { clientId: created.value.clientId, clientSecret: created.value.clientSecret } }
}

/** A public client's id, or why there is none. */
function publicClient(created: Outcome<{ clientId: string }>): Outcome<{ clientId: string }> {
  return created.ok ? { ok: true, value: { clientId: created.value.clientId } } : created
}

export async function clientCredentialsToken(
  base: string,
  client: { clientId: string; clientSecret: string },
): Promise<Outcome<string>> {
  const res = await send(
    base,
    '/oauth/token',
    formInit(
      { grant_type: 'client_credentials', scope: 'apikeys:verify' },
      { authorization: basicAuth(client.clientId, client.clientSecret) },
    ),
  )
  const token = parseJson(res.text).access_token
  if (res.status !== 200 || typeof token !== 'string') {
    return { ok: false, reason: reasonOf(res.status, res.text) }
  }
  return { ok: true, value: token }
}

async function createApiKeys(
  base: string,
  adminToken: string,
  ownerId: string,
): Promise<Outcome<{ keys: string[]; firstId: string }>> {
  const keys: string[] = []
  let firstId = ''
  for (let i = 0; i < VERIFY_KEY_COUNT; i++) {
    const res = await send(
      base,
      '/api-keys',
      jsonInit(
        { name: `bench ${i}`, owner_id: ownerId, tier: 'enterprise' },
        { authorization: `Bearer ${adminToken}` },
      ),
    )
    const created = parseJson(res.text)
    const key = created.key
    if (res.status !== 201 || typeof key !== 'string') {
      return { ok: false, reason: reasonOf(res.status, res.text) }
    }
    if (keys.length === 0 && typeof created.id === 'string') {
      firstId = created.id
    }
    keys.push(key)
  }
  return { ok: true, value: { keys, firstId } }
}

// A key with a valid checksum that no row matches: created through the API, then its row removed.
async function createUnknownKey(
  base: string,
  adminToken: string,
  ownerId: string,
  databaseUrl: string,
): Promise<Outcome<string>> {
  const res = await send(
    base,
    '/api-keys',
    jsonInit({ name: 'bench unknown', owner_id: ownerId }, { authorization: `Bearer ${adminToken}` }),
  )
  const body = parseJson(res.text)
  if (res.status !== 201 || typeof body.key !== 'string' || typeof body.id !== 'string') {
    return { ok: false, reason: reasonOf(res.status, res.text) }
  }
  await withClient(databaseUrl, (client) => client.query('delete from api_keys where id = $1', [body.id]))
  return { ok: true, value: body.key }
}

export async function seedOurs(base: string, adminToken: string, databaseUrl: string): Promise<OurSeed> {
  const user = await seedUser(base, databaseUrl)
  const machine = await createClient(base, adminToken, {
    client_name: 'bench machine client',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'apikeys:verify',
  })
  const machineClient = confidential(machine)
  const accessToken = machineClient.ok
    ? await clientCredentialsToken(base, machineClient.value)
    : { ok: false as const, reason: machineClient.reason }
  const browser = await createClient(base, adminToken, {
    client_name: 'bench browser client',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [BENCH_REDIRECT_URI],
    token_endpoint_auth_method: 'none',
    scope: 'openid profile offline_access',
    first_party: true,
    application_type: 'web',
  })
  const browserClient = publicClient(browser)
  const exchangeClient = confidential(
    await createClient(base, adminToken, {
      client_name: 'bench token-exchange client',
      grant_types: [TOKEN_EXCHANGE_GRANT],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'openid',
    }),
  )
  const deviceClient = publicClient(
    await createClient(base, adminToken, {
      client_name: 'bench device client',
      grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    }),
  )
  const created = user.ok
    ? await createApiKeys(base, adminToken, user.value.id)
    : { ok: false as const, reason: user.reason }
  const apiKeys: Outcome<string[]> = created.ok ? { ok: true, value: created.value.keys } : created
  const usageKeyId: Outcome<string> = !created.ok
    ? created
    : created.value.firstId === ''
      ? { ok: false, reason: 'no id in the key-creation answer' }
      : { ok: true, value: created.value.firstId }
  const unknownKey = user.ok
    ? await createUnknownKey(base, adminToken, user.value.id, databaseUrl)
    : { ok: false as const, reason: user.reason }
  return {
    user,
    machineClient,
    accessToken,
    browserClient,
    exchangeClient,
    deviceClient,
    apiKeys,
    usageKeyId,
    unknownKey,
  }
}

/**
 * Forgets the sign-in failures counted against the load generator's address. The login
 * scenario ends each round with up to 50 sign-ins in flight; the load generator drops them,
 * their claims are never given back, and the next run's sign-in within the window would be
 * refused 429. The bench database is the bench's own.
 */
export async function clearLoopbackSignInFailures(databaseUrl: string): Promise<void> {
  await withClient(databaseUrl, (client) =>
    client.query(`delete from login_throttles where subject = any($1::text[])`, [['ip:127.0.0.1', 'ip:::1']]),
  )
}

/** Signs the bench user in; answers the Cookie header value for later requests. */
export async function signIn(base: string, email: string): Promise<Outcome<string>> {
  const res = await send(base, '/auth/login', jsonInit({ email, password: BENCH_PASSWORD }))
  if (res.status !== 200) {
    return { ok: false, reason: reasonOf(res.status, res.text) }
  }
  const cookies = res.headers
    .getSetCookie()
    .map((cookie) => cookie.split(';')[0] ?? '')
    .filter((pair) => pair !== '')
  if (cookies.length === 0) {
    return { ok: false, reason: 'login set no cookie' }
  }
  return { ok: true, value: cookies.join('; ') }
}

function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') }
}

/** A code issued to the signed-in bench user for a first-party client (no consent), with its verifier. */
export async function authorizeCode(
  base: string,
  clientId: string,
  cookie: string,
): Promise<Outcome<{ code: string; verifier: string }>> {
  const { verifier, challenge } = pkcePair()
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: BENCH_REDIRECT_URI,
    scope: 'openid profile offline_access',
    state: randomBytes(8).toString('hex'),
    code_challenge: challenge,
    code_challenge_method: 'S256',
  })
  const authorize = await send(base, `/oauth/authorize?${query}`, { headers: { cookie } })
  const location = authorize.headers.get('location')
  const code = location === null ? null : new URL(location, base).searchParams.get('code')
  if (authorize.status !== 302 || code === null) {
    return { ok: false, reason: `authorize: ${reasonOf(authorize.status, location ?? authorize.text)}` }
  }
  return { ok: true, value: { code, verifier } }
}

/** The authorization_code grant for a code from authorizeCode (the raw answer, for timing and counting). */
export function exchangeCode(
  base: string,
  clientId: string,
  grant: { code: string; verifier: string },
): Promise<{ status: number; text: string; headers: Headers }> {
  return send(
    base,
    '/oauth/token',
    formInit({
      grant_type: 'authorization_code',
      code: grant.code,
      redirect_uri: BENCH_REDIRECT_URI,
      client_id: clientId,
      code_verifier: grant.verifier,
    }),
  )
}

/**
 * A device code the signed-in bench user has approved (RFC 8628): the device asks for a code,
 * the user enters it at /device and approves through the form and its CSRF token.
 */
export async function approvedDeviceCode(
  base: string,
  clientId: string,
  cookie: string,
): Promise<Outcome<string>> {
  const started = await send(
    base,
    '/oauth/device_authorization',
    formInit({ client_id: clientId, scope: 'openid offline_access' }),
  )
  const { device_code: deviceCode, user_code: userCode } = parseJson(started.text)
  if (started.status !== 200 || typeof deviceCode !== 'string' || typeof userCode !== 'string') {
    return { ok: false, reason: `device_authorization: ${reasonOf(started.status, started.text)}` }
  }
  const page = await send(base, `/device?user_code=${encodeURIComponent(userCode)}`, { headers: { cookie } })
  const field = /name="csrf_token" value="([^"]+)"/.exec(page.text)?.[1]
  const csrfCookie = page.headers.get('set-cookie')?.match(/((?:__Host-)?portcullis_csrf=[^;]+)/)?.[1]
  if (page.status !== 200 || field === undefined || csrfCookie === undefined) {
    return { ok: false, reason: `device page: ${reasonOf(page.status, page.text)}` }
  }
  const decided = await send(
    base,
    '/device',
    formInit(
      { user_code: userCode, csrf_token: field, decision: 'approve' },
      { cookie: `${cookie}; ${csrfCookie}` },
    ),
  )
  if (decided.status !== 200) {
    return { ok: false, reason: `device approval: ${reasonOf(decided.status, decided.text)}` }
  }
  return { ok: true, value: deviceCode }
}

/** The device grant's poll for an approved code (the raw answer, for timing and counting). */
export function pollDeviceCode(
  base: string,
  clientId: string,
  deviceCode: string,
): Promise<{ status: number; text: string; headers: Headers }> {
  return send(
    base,
    '/oauth/token',
    formInit({ grant_type: DEVICE_CODE_GRANT, device_code: deviceCode, client_id: clientId }),
  )
}

/** One authorization (signed-in user, first-party client: no consent) exchanged for tokens. */
export async function authorizeAndExchange(
  base: string,
  clientId: string,
  cookie: string,
): Promise<Outcome<AuthorizedTokens>> {
  const grant = await authorizeCode(base, clientId, cookie)
  if (!grant.ok) {
    return grant
  }
  const exchange = await exchangeCode(base, clientId, grant.value)
  const body = parseJson(exchange.text)
  if (
    exchange.status !== 200 ||
    typeof body.refresh_token !== 'string' ||
    typeof body.access_token !== 'string'
  ) {
    return { ok: false, reason: `token: ${reasonOf(exchange.status, exchange.text)}` }
  }
  return { ok: true, value: { refreshToken: body.refresh_token, accessToken: body.access_token } }
}

/** `count` fresh authorizations, `parallel` at a time. */
export async function freshTokens(
  count: number,
  parallel: number,
  mint: () => Promise<Outcome<AuthorizedTokens>>,
): Promise<Outcome<AuthorizedTokens[]>> {
  const out: AuthorizedTokens[] = []
  let failure: string | undefined
  let next = 0
  async function lane(): Promise<void> {
    while (failure === undefined && next < count) {
      next++
      const minted = await mint()
      if (minted.ok) {
        out.push(minted.value)
      } else {
        failure = minted.reason
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, lane))
  return failure === undefined ? { ok: true, value: out } : { ok: false, reason: failure }
}

/** Peer seed: workers-oauth-provider's `/seed` (authorization completed) exchanged at `/token`. */
export async function peerAuthorizeAndExchange(
  base: string,
): Promise<Outcome<AuthorizedTokens & { clientId: string }>> {
  const seeded = await send(base, '/seed', { method: 'GET' })
  const grant = parseJson(seeded.text)
  if (
    seeded.status !== 200 ||
    typeof grant.code !== 'string' ||
    typeof grant.client_id !== 'string' ||
    typeof grant.redirect_uri !== 'string' ||
    typeof grant.code_verifier !== 'string'
  ) {
    return { ok: false, reason: `peer seed: ${reasonOf(seeded.status, seeded.text)}` }
  }
  const exchange = await send(
    base,
    '/token',
    formInit({
      grant_type: 'authorization_code',
      code: grant.code,
      redirect_uri: grant.redirect_uri,
      client_id: grant.client_id,
      code_verifier: grant.code_verifier,
    }),
  )
  const body = parseJson(exchange.text)
  if (
    exchange.status !== 200 ||
    typeof body.refresh_token !== 'string' ||
    typeof body.access_token !== 'string'
  ) {
    return { ok: false, reason: `peer token: ${reasonOf(exchange.status, exchange.text)}` }
  }
  return {
    ok: true,
    value: { refreshToken: body.refresh_token, accessToken: body.access_token, clientId: grant.client_id },
  }
}

export async function withClient<T>(
  databaseUrl: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}
