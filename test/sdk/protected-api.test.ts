import { env, SELF } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import { createProtectedApi } from '../../examples/protected-api/src/index'
import { bearerToken, clientCredentials, createPortcullis, withPortcullis } from '../../sdk/src/index'
import { createKeyAsAdmin, setQuotaUsed } from '../helpers/apikeys'
import {
  adminClient,
  basicAuth,
  ensureResourceServer,
  ISSUER,
  postForm,
  type TestClient,
} from '../helpers/oauth'
import { describeResponse } from '../helpers/worker'

const AUDIENCE = 'https://api.example.com'
const API = 'https://api.example.com'

// Issue 11: a `resource` must name a registered resource server.
beforeAll(async () => {
  await ensureResourceServer(AUDIENCE)
  await ensureResourceServer('https://other.example.com')
})

async function resourceServer() {
  const client = await adminClient({
    client_name: 'Protected API',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'apikeys:verify',
  })
  return { clientId: client.client_id, clientSecret: client.client_secret ?? '', client }
}

/** The example Worker's app, talking to the Portcullis under test. */
async function exampleApi() {
  const { clientId, clientSecret, client } = await resourceServer()
  const portcullis = createPortcullis({
    issuer: ISSUER,
    audience: AUDIENCE,
    credentials: clientCredentials({ clientId, clientSecret }),
    fetch: (input, init) => SELF.fetch(input, init),
  })
  return { app: createProtectedApi(portcullis), client }
}

async function tokenFor(client: TestClient, resource = AUDIENCE) {
  const res = await postForm(
    '/oauth/token',
    { grant_type: 'client_credentials', scope: 'apikeys:verify', resource },
    basicAuth(client),
  )
  expect(res.status, await describeResponse(res)).toBe(200)
  return ((await res.json()) as { access_token: string }).access_token
}

describe('examples/protected-api', () => {
  it('serves a valid API key (Bearer or X-API-Key) and names the caller', async () => {
    const [{ app }, key] = await Promise.all([exampleApi(), createKeyAsAdmin()])
    const variants: Record<string, string>[] = [
      { authorization: `Bearer ${key.key}` },
      { 'x-api-key': key.key },
    ]
    for (const headers of variants) {
      const res = await app.request(`${API}/v1/things`, { headers })
      expect(res.status, await describeResponse(res)).toBe(200)
      expect(await res.json()).toEqual({ caller: `key:${key.id}`, things: [] })
    }
  })

  it('answers 401 without a credential and for a revoked key', async () => {
    const [{ app }, key] = await Promise.all([exampleApi(), createKeyAsAdmin()])
    const none = await app.request(`${API}/v1/things`)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe('Bearer')
    await SELF.fetch(`${ISSUER}/api-keys/${key.id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
    })
    const res = await app.request(`${API}/v1/things`, { headers: { 'x-api-key': key.key } })
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ code: 'REVOKED' })
    expect(res.headers.get('www-authenticate')).toContain('invalid_token')
  })

  it('answers 429 with Retry-After once the quota is spent', async () => {
    const [{ app }, key] = await Promise.all([exampleApi(), createKeyAsAdmin()])
    await setQuotaUsed(key.id, 10_000)
    const res = await app.request(`${API}/v1/things`, { headers: { 'x-api-key': key.key } })
    expect(res.status, await describeResponse(res)).toBe(429)
    expect(await res.json()).toMatchObject({ code: 'QUOTA_EXCEEDED' })
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
  })

  it('checks scopes: a key with things:write may POST, one without gets 403', async () => {
    const [{ app }, writer, reader] = await Promise.all([
      exampleApi(),
      createKeyAsAdmin({ scopes: ['things:write'] }),
      createKeyAsAdmin({ scopes: ['things:read'] }),
    ])
    const ok = await app.request(`${API}/v1/things`, { method: 'POST', headers: { 'x-api-key': writer.key } })
    expect(ok.status, await describeResponse(ok)).toBe(201)
    const refused = await app.request(`${API}/v1/things`, {
      method: 'POST',
      headers: { 'x-api-key': reader.key },
    })
    expect(refused.status).toBe(403)
    expect(refused.headers.get('www-authenticate')).toContain('insufficient_scope')
  })

  it('serves an access token for its audience; refuses another audience and a missing scope', async () => {
    const { app, client } = await exampleApi()
    const good = await tokenFor(client)
    const res = await app.request(`${API}/v1/things`, { headers: { authorization: `Bearer ${good}` } })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toEqual({ caller: `client:${client.client_id}`, things: [] })
    const other = await tokenFor(client, 'https://other.example.com')
    const wrongAudience = await app.request(`${API}/v1/things`, {
      headers: { authorization: `Bearer ${other}` },
    })
    expect(wrongAudience.status).toBe(401)
    expect(await wrongAudience.json()).toMatchObject({ code: 'WRONG_AUDIENCE' })
    const noScope = await app.request(`${API}/v1/things`, {
      method: 'POST',
      headers: { authorization: `Bearer ${good}` },
    })
    expect(noScope.status).toBe(403)
  })

  it('answers 503 with Retry-After when Portcullis is unreachable (fails closed)', async () => {
    const portcullis = createPortcullis({
      issuer: 'http://127.0.0.1:9',
      audience: AUDIENCE,
      credentials: bearerToken(env.ADMIN_TOKEN),
    })
    const res = await createProtectedApi(portcullis).request(`${API}/v1/things`, {
      headers: { 'x-api-key': 'pk_test_anything' },
    })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
  })
})

describe('withPortcullis (plain fetch handler)', () => {
  it('passes the authenticated caller to the handler, and answers failures itself', async () => {
    const key = await createKeyAsAdmin()
    const portcullis = createPortcullis({
      issuer: ISSUER,
      credentials: bearerToken(env.ADMIN_TOKEN),
      fetch: (input, init) => SELF.fetch(input, init),
    })
    const handler = withPortcullis({ portcullis, accept: ['api_key'] }, (_request, auth) =>
      Response.json({ kind: auth.kind, scopes: auth.scopes }),
    )
    const ok = await handler(new Request(`${API}/`, { headers: { 'x-api-key': key.key } }))
    expect(ok.status, await describeResponse(ok)).toBe(200)
    expect(await ok.json()).toEqual({ kind: 'api_key', scopes: [] })
    const jwtRefused = await handler(new Request(`${API}/`, { headers: { authorization: 'Bearer a.b.c' } }))
    expect(jwtRefused.status).toBe(401)
    const bad = await handler(new Request(`${API}/`, { headers: { 'x-api-key': 'nope' } }))
    expect(bad.status).toBe(401)
    expect(await bad.json()).toMatchObject({ code: 'MALFORMED' })
  })
})
