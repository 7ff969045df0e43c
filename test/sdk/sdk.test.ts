import { env, SELF } from 'cloudflare:test'
import { eq } from 'drizzle-orm'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { apiKeys } from '../../db/schema'
import {
  bearerToken,
  clientCredentials,
  createPortcullis,
  type FetchLike,
  PortcullisError,
  type PortcullisOptions,
} from '../../sdk/src/index'
import { createKeyAsAdmin, setQuotaUsed } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import {
  adminClient,
  basicAuth,
  ensureResourceServer,
  ISSUER,
  postForm,
  type TestClient,
} from '../helpers/oauth'
import { adminHeaders, describeResponse } from '../helpers/worker'

const AUDIENCE = 'https://api.example.com'

// Issue 11: a `resource` must name a registered resource server.
beforeAll(async () => {
  await ensureResourceServer(AUDIENCE)
  await ensureResourceServer('https://other.example.com')
})

/** Requests the SDK sent, by path, through the Worker under test (SELF answers for ISSUER). */
function recordingFetch() {
  const paths: string[] = []
  const fetch: FetchLike = (input, init) => {
    const request = new Request(input, init)
    paths.push(new URL(request.url).pathname)
    return SELF.fetch(request)
  }
  return { fetch, count: (path: string) => paths.filter((p) => p === path).length }
}

function sdk(options: Partial<PortcullisOptions> = {}) {
  const recorder = recordingFetch()
  const portcullis = createPortcullis({
    issuer: ISSUER,
    audience: AUDIENCE,
    credentials: bearerToken(env.ADMIN_TOKEN),
    fetch: recorder.fetch,
    ...options,
  })
  return { portcullis, count: recorder.count }
}

async function resourceServerClient(
  scope = 'apikeys:verify',
): Promise<TestClient & { client_secret: string }> {
  const client = await adminClient({
    client_name: 'Resource server',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  })
  if (client.client_secret === undefined) {
    throw new Error('admin client has no secret')
  }
  return { ...client, client_secret: client.client_secret }
}

/** An access token for `client`, audience AUDIENCE unless `resource` says otherwise. */
async function accessToken(client: TestClient, scope: string, resource = AUDIENCE): Promise<string> {
  const res = await postForm(
    '/oauth/token',
    { grant_type: 'client_credentials', scope, resource },
    basicAuth(client),
  )
  expect(res.status, await describeResponse(res)).toBe(200)
  return ((await res.json()) as { access_token: string }).access_token
}

describe('verifyApiKey', () => {
  it('answers VALID with the key, camelCased, as the service (admin token)', async () => {
    const key = await createKeyAsAdmin({ scopes: ['things:read'], metadata: { plan: 'gold' } })
    const result = await sdk().portcullis.verifyApiKey(key.key, { endpoint: 'GET /v1/things' })
    expect(result).toMatchObject({
      valid: true,
      code: 'VALID',
      key: { keyId: key.id, ownerId: key.owner_id, scopes: ['things:read'], metadata: { plan: 'gold' } },
    })
    expect(result.key?.quota.resetAt).toBeInstanceOf(Date)
  })

  it('answers REVOKED for a revoked key', async () => {
    const key = await createKeyAsAdmin()
    const revoked = await SELF.fetch(`${ISSUER}/api-keys/${key.id}`, {
      method: 'DELETE',
      headers: adminHeaders(),
    })
    expect(revoked.status, await describeResponse(revoked)).toBeLessThan(300)
    expect(await sdk().portcullis.verifyApiKey(key.key)).toEqual({ valid: false, code: 'REVOKED', key: null })
  })

  it('answers EXPIRED once expires_at has passed', async () => {
    const key = await createKeyAsAdmin()
    await testDb()
      .update(apiKeys)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(apiKeys.id, key.id))
    expect(await sdk().portcullis.verifyApiKey(key.key)).toEqual({ valid: false, code: 'EXPIRED', key: null })
  })

  it('answers QUOTA_EXCEEDED with the quota state, for a Retry-After', async () => {
    const key = await createKeyAsAdmin()
    await setQuotaUsed(key.id, 10_000)
    const result = await sdk().portcullis.verifyApiKey(key.key)
    expect(result).toMatchObject({ valid: false, code: 'QUOTA_EXCEEDED', key: { keyId: key.id } })
    expect(result.key?.quota).toMatchObject({ limit: 10_000, remaining: 0 })
  })

  it('answers RATE_LIMITED past the window limit', async () => {
    const key = await createKeyAsAdmin({ rate_limit: { limit: 1, window_seconds: 3600 } })
    const { portcullis } = sdk()
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('RATE_LIMITED')
  })

  it.each([
    ['garbage', 'MALFORMED'],
    [`pk_test_${'A'.repeat(49)}`, 'MALFORMED'],
    // Longer than the verify endpoint accepts (it answers 400): still a verdict, not an error.
    [`pk_test_${'A'.repeat(5000)}`, 'MALFORMED'],
  ])('answers %s as %s', async (candidate, code) => {
    expect((await sdk().portcullis.verifyApiKey(candidate)).code).toBe(code)
  })

  it('throws caller_unauthorized when the service credential is wrong', async () => {
    const key = await createKeyAsAdmin()
    const { portcullis } = sdk({ credentials: bearerToken('not-the-admin-token-0123456789abcdef') })
    await expect(portcullis.verifyApiKey(key.key)).rejects.toMatchObject({ code: 'caller_unauthorized' })
  })

  it('throws unavailable (not a verdict) when Portcullis cannot be reached', async () => {
    const { portcullis } = sdk({ issuer: 'http://127.0.0.1:9', fetch: (input, init) => fetch(input, init) })
    const error = await portcullis.verifyApiKey('pk_test_x').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PortcullisError)
    expect(error).toMatchObject({ code: 'unavailable' })
  })
})

describe('client_credentials caller', () => {
  it('fetches one token for concurrent calls and reuses it', async () => {
    const [client, key] = await Promise.all([resourceServerClient(), createKeyAsAdmin()])
    const { portcullis, count } = sdk({
      credentials: clientCredentials({ clientId: client.client_id, clientSecret: client.client_secret }),
    })
    const results = await Promise.all(Array.from({ length: 5 }, () => portcullis.verifyApiKey(key.key)))
    expect(results.map((r) => r.code)).toEqual(['VALID', 'VALID', 'VALID', 'VALID', 'VALID'])
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    expect(count('/oauth/token')).toBe(1)
    expect(count('/api-keys/verify')).toBe(6)
  })

  it('refreshes the token before it expires', async () => {
    const [client, key] = await Promise.all([resourceServerClient(), createKeyAsAdmin()])
    let clock = Date.now()
    const { portcullis, count } = sdk({
      credentials: clientCredentials({ clientId: client.client_id, clientSecret: client.client_secret }),
      now: () => clock,
    })
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    // ACCESS_TOKEN_TTL is 3600 s: reused until the last minute, then refreshed before expiry.
    clock += 3500 * 1000
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    expect(count('/oauth/token')).toBe(1)
    clock += 50 * 1000
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    expect(count('/oauth/token')).toBe(2)
  })

  it('gets a new token once when the cached one is refused (revoked), then succeeds', async () => {
    const [client, key] = await Promise.all([resourceServerClient(), createKeyAsAdmin()])
    let issued: string | undefined
    const recorder = recordingFetch()
    const portcullis = createPortcullis({
      issuer: ISSUER,
      credentials: clientCredentials({ clientId: client.client_id, clientSecret: client.client_secret }),
      fetch: async (input, init) => {
        const res = await recorder.fetch(input, init)
        if (new URL(new Request(input).url).pathname === '/oauth/token' && issued === undefined) {
          issued = ((await res.clone().json()) as { access_token: string }).access_token
        }
        return res
      },
    })
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    const revoked = await postForm('/oauth/revoke', { token: issued ?? '' }, basicAuth(client))
    expect(revoked.status).toBe(200)
    expect((await portcullis.verifyApiKey(key.key)).code).toBe('VALID')
    expect(recorder.count('/oauth/token')).toBe(2)
  })

  it('throws caller_unauthorized for a wrong client secret', async () => {
    const client = await resourceServerClient()
    const { portcullis } = sdk({
      credentials: clientCredentials({ clientId: client.client_id, clientSecret: 'wrong-secret' }),
    })
    await expect(portcullis.verifyApiKey('pk_test_x')).rejects.toMatchObject({ code: 'caller_unauthorized' })
  })
})

describe('verifyAccessToken', () => {
  it('accepts a token for its audience and returns claims and scopes', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    const result = await sdk().portcullis.verifyAccessToken(token, { scopes: ['apikeys:verify'] })
    expect(result).toMatchObject({
      valid: true,
      scopes: ['apikeys:verify'],
      claims: { iss: ISSUER, aud: AUDIENCE, client_id: client.client_id, sub: client.client_id },
    })
  })

  it('refuses a token minted for another audience', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify', 'https://other.example.com')
    expect(await sdk().portcullis.verifyAccessToken(token)).toEqual({ valid: false, code: 'WRONG_AUDIENCE' })
  })

  it('refuses a token without the required scope', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    expect(await sdk().portcullis.verifyAccessToken(token, { scopes: ['apikeys:verify', 'admin'] })).toEqual({
      valid: false,
      code: 'INSUFFICIENT_SCOPE',
      missingScopes: ['admin'],
    })
  })

  it('refuses an expired token (clock past exp plus the tolerance)', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    const late = sdk({ now: () => Date.now() + 3600_000 + 31_000 })
    expect(await late.portcullis.verifyAccessToken(token)).toEqual({ valid: false, code: 'EXPIRED' })
    const withinTolerance = sdk({ now: () => Date.now() + 3600_000 + 5_000 })
    expect((await withinTolerance.portcullis.verifyAccessToken(token)).valid).toBe(true)
  })

  it('refuses a revoked token when introspecting (and only then)', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    const revoked = await postForm('/oauth/revoke', { token }, basicAuth(client))
    expect(revoked.status).toBe(200)
    const credentials = clientCredentials({ clientId: client.client_id, clientSecret: client.client_secret })
    const { portcullis } = sdk({ credentials })
    expect(await portcullis.verifyAccessToken(token, { introspect: true })).toEqual({
      valid: false,
      code: 'REVOKED',
    })
    // Locally the signature is still good: that is what introspection is for.
    expect((await portcullis.verifyAccessToken(token)).valid).toBe(true)
  })

  it('introspects as the resource server: a live token of another client stays valid', async () => {
    const [app, api] = await Promise.all([resourceServerClient(), resourceServerClient()])
    const token = await accessToken(app, 'apikeys:verify')
    const credentials = clientCredentials({ clientId: api.client_id, clientSecret: api.client_secret })
    const { portcullis, count } = sdk({ credentials })
    const result = await portcullis.verifyAccessToken(token, { introspect: true })
    expect(result).toMatchObject({ valid: true, claims: { client_id: app.client_id } })
    expect(count('/oauth/introspect')).toBe(1)
    const revoked = await postForm('/oauth/revoke', { token }, basicAuth(app))
    expect(revoked.status).toBe(200)
    expect(await portcullis.verifyAccessToken(token, { introspect: true })).toEqual({
      valid: false,
      code: 'REVOKED',
    })
  })

  it('refetches the JWKS for an unknown kid, then rejects a token signed by a foreign key', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    const { portcullis, count } = sdk({ jwksCooldownMs: 0 })
    expect((await portcullis.verifyAccessToken(token)).valid).toBe(true)
    expect(count('/.well-known/jwks.json')).toBe(1)
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
    const forged = await new SignJWT({
      client_id: client.client_id,
      scope: 'admin',
      jti: crypto.randomUUID(),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: (await exportJWK(publicKey)).x ?? 'foreign' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(client.client_id)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(privateKey)
    expect(await portcullis.verifyAccessToken(forged)).toEqual({ valid: false, code: 'INVALID_SIGNATURE' })
    expect(count('/.well-known/jwks.json')).toBe(2)
    // Known kids keep using the cache.
    expect((await portcullis.verifyAccessToken(token)).valid).toBe(true)
    expect(count('/.well-known/jwks.json')).toBe(2)
    expect(count('/.well-known/oauth-authorization-server')).toBe(1)
  })

  it.each([
    ['not a jwt', 'not-a-jwt', 'MALFORMED'],
    [
      'alg none',
      `${btoa('{"alg":"none","typ":"at+jwt"}').replace(/=/g, '')}.${btoa('{}').replace(/=/g, '')}.`,
      'MALFORMED',
    ],
  ])('refuses %s', async (_name, token, code) => {
    expect(await sdk().portcullis.verifyAccessToken(token)).toEqual({ valid: false, code })
  })

  it('refuses an ID token-like JWT without typ at+jwt', async () => {
    const client = await resourceServerClient()
    const token = await accessToken(client, 'apikeys:verify')
    const [, payload, signature] = token.split('.')
    const header = btoa(
      JSON.stringify({
        ...JSON.parse(atob((token.split('.')[0] ?? '').replace(/-/g, '+').replace(/_/g, '/'))),
        typ: 'JWT',
      }),
    )
      .replace(/=/g, '')
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
    const result = await sdk().portcullis.verifyAccessToken(`${header}.${payload}.${signature}`)
    expect(result.valid).toBe(false)
  })

  it('rejects options it cannot honour when called', async () => {
    const { portcullis } = sdk({ audience: undefined })
    await expect(portcullis.verifyAccessToken('x')).rejects.toMatchObject({ code: 'invalid_options' })
    await expect(sdk().portcullis.verifyAccessToken('x', { introspect: true })).rejects.toMatchObject({
      code: 'invalid_options',
    })
  })
})
