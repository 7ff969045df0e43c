import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../functions/app'
import { testDb } from '../helpers/db'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  DEVICE_GRANT,
  ensureResourceServer,
  obtainCode,
  postForm,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { adminHeaders, BASE, call, describeResponse, postJson } from '../helpers/worker'

/** Straight into the app with some variables changed (config the wrangler.toml run cannot vary). */
async function direct(vars: Record<string, string>, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext()
  const res = await createApp().fetch(new Request(`${BASE}${path}`, init), { ...env, ...vars }, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

function rawJson(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return call(path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body })
}

function testIp(): string {
  const r = crypto.getRandomValues(new Uint16Array(3))
  return `2001:db8:${r[0]?.toString(16)}:${r[1]?.toString(16)}::${r[2]?.toString(16)}`
}

async function auditCount(type: string, clientId: string): Promise<number> {
  const rows = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = ${type} and client_id = ${clientId}`,
  )
  return Number((rows.rows[0] as { n: number } | undefined)?.n ?? 0)
}

/** Device flow with the user's approval written directly (the approval page is tested elsewhere). */
async function deviceTokens(client: TestClient): Promise<TokenSet> {
  const started = await postForm('/oauth/device_authorization', {
    client_id: client.client_id,
    scope: 'openid offline_access',
  })
  expect(started.status, await describeResponse(started)).toBe(200)
  const { device_code: deviceCode } = (await started.json()) as { device_code: string }
  const user = await seedUser()
  await testDb().execute(
    sql`update device_codes set status = 'approved', user_id = ${user.id}
        where client_id = (select id from oauth_clients where client_id = ${client.client_id})`,
  )
  const res = await postForm('/oauth/token', {
    grant_type: DEVICE_GRANT,
    device_code: deviceCode,
    client_id: client.client_id,
  })
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as TokenSet
}

function deviceClient(): Promise<TestClient> {
  return adminClient({
    grant_types: [DEVICE_GRANT, 'refresh_token'],
    token_endpoint_auth_method: 'none',
    scope: 'openid offline_access',
  })
}

async function userinfoStatus(accessToken: string): Promise<number> {
  return (await call('/oauth/userinfo', { headers: { authorization: `Bearer ${accessToken}` } })).status
}

describe('issue 9 #6: one grant identity — the device grant’s first access token dies with its grant', () => {
  it('revoking the refresh token revokes the first access token of a device grant', async () => {
    const client = await deviceClient()
    const tokens = await deviceTokens(client)
    expect(await userinfoStatus(tokens.access_token)).toBe(200)
    const revoked = await postForm('/oauth/revoke', {
      token: tokens.refresh_token ?? '',
      client_id: client.client_id,
    })
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    expect(await userinfoStatus(tokens.access_token)).toBe(401)
  })

  it('refresh-token reuse revokes every access token of the device grant, the first included', async () => {
    const client = await deviceClient()
    const first = await deviceTokens(client)
    const form = { grant_type: 'refresh_token', client_id: client.client_id }
    const rotated = await postForm('/oauth/token', { ...form, refresh_token: first.refresh_token ?? '' })
    expect(rotated.status, await describeResponse(rotated)).toBe(200)
    const second = (await rotated.json()) as TokenSet
    const reused = await postForm('/oauth/token', { ...form, refresh_token: first.refresh_token ?? '' })
    expect(await reused.json()).toMatchObject({ error: 'invalid_grant' })
    expect(await userinfoStatus(second.access_token)).toBe(401)
    expect(await userinfoStatus(first.access_token)).toBe(401)
  })
})

describe('issue 9 #8: introspection is for authenticated confidential clients, and only for their tokens', () => {
  it('refuses a public client with 401 invalid_client, even for its own token', async () => {
    const client = await deviceClient()
    const tokens = await deviceTokens(client)
    for (const token of [tokens.access_token, tokens.refresh_token ?? '']) {
      const res = await postForm('/oauth/introspect', { token, client_id: client.client_id })
      expect(res.status, await describeResponse(res)).toBe(401)
      expect(await res.json()).toMatchObject({ error: 'invalid_client' })
    }
  })

  it("answers active:false for another client's token, active:true for its own and for a privileged client", async () => {
    const owner = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const other = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const gateway = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const token = await clientCredentialsToken(owner)
    const ask = async (caller: TestClient) => {
      const res = await postForm('/oauth/introspect', { token }, basicAuth(caller))
      expect(res.status, await describeResponse(res)).toBe(200)
      return (await res.json()) as Record<string, unknown>
    }
    expect(await ask(other)).toEqual({ active: false })
    expect(await ask(owner)).toMatchObject({ active: true, client_id: owner.client_id })
    expect(await ask(gateway)).toMatchObject({ active: true, client_id: owner.client_id })
  })
})

describe('issue 9 #11: dynamic registration is rate-limited per IP and keeps client_credentials for vouched clients', () => {
  const register = (
    vars: Record<string, string>,
    ip: string,
    body: unknown,
    headers: Record<string, string> = {},
  ) =>
    direct({ TRUSTED_IP_HEADER: 'x-test-ip', ...vars }, '/oauth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-test-ip': ip, ...headers },
      body: JSON.stringify(body),
    })
  const metadata = { redirect_uris: ['https://app.example.com/cb'], client_name: 'burst' }

  it('a concurrent burst from one address creates exactly the limit; the rest get 429 + Retry-After', async () => {
    const ip = testIp()
    const answers = await Promise.all(
      Array.from({ length: 12 }, () => register({ REGISTRATION_MAX_PER_IP: '4' }, ip, metadata)),
    )
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses.filter((s) => s === 201)).toHaveLength(4)
    expect(statuses.filter((s) => s === 429)).toHaveLength(8)
    const refused = answers.find((r) => r.status === 429)
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await refused?.json()).toMatchObject({ error: 'too_many_requests' })
    // Another address is not affected.
    expect((await register({ REGISTRATION_MAX_PER_IP: '4' }, testIp(), metadata)).status).toBe(201)
  })

  it('refuses client_credentials to an anonymous registration; the initial access token may ask for it', async () => {
    const body = { grant_types: ['client_credentials'], scope: 'apikeys:write', client_name: 'machine' }
    const anonymous = await register({}, testIp(), body)
    expect(anonymous.status, await describeResponse(anonymous)).toBe(400)
    expect(await anonymous.json()).toMatchObject({ error: 'invalid_client_metadata' })
    const vouched = await register({}, testIp(), body, adminHeaders())
    expect(vouched.status, await describeResponse(vouched)).toBe(201)
    const policy = await register(
      { REGISTRATION_ANONYMOUS_GRANT_TYPES: 'client_credentials' },
      testIp(),
      body,
    )
    expect(policy.status, await describeResponse(policy)).toBe(201)
  })

  it('an RFC 7592 update cannot add client_credentials to an anonymous client', async () => {
    const res = await register({}, testIp(), metadata)
    expect(res.status, await describeResponse(res)).toBe(201)
    const created = (await res.json()) as TestClient & Record<string, unknown>
    const put = await call(`/oauth/register/${created.client_id}`, {
      method: 'PUT',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${created.registration_access_token}`,
      },
      body: JSON.stringify({
        ...metadata,
        client_id: created.client_id,
        grant_types: ['authorization_code', 'client_credentials'],
      }),
    })
    expect(put.status, await describeResponse(put)).toBe(400)
    expect(await put.json()).toMatchObject({ error: 'invalid_client_metadata' })
  })

  it('client_registered is written with the client (no waiting for deferred work)', async () => {
    const res = await postJson('/oauth/register', metadata, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(201)
    const { client_id: clientId } = (await res.json()) as TestClient
    expect(await auditCount('client_registered', clientId)).toBe(1)
  })

  it('an approved consent writes consent_granted with the consent', async () => {
    const client = await webClient()
    await obtainCode(client, await seedUser())
    expect(await auditCount('consent_granted', client.client_id)).toBe(1)
  })

  it('an admin disabling a client writes client_disabled with the change; an unknown client writes nothing', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const res = await postJson(`/admin/clients/${client.client_id}/disable`, {}, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await auditCount('client_disabled', client.client_id)).toBe(1)
    const unknown = await postJson('/admin/clients/no-such-client-x/disable', {}, adminHeaders())
    expect(unknown.status).toBe(404)
    expect(await auditCount('client_disabled', 'no-such-client-x')).toBe(0)
  })

  it('RFC 7592 update and delete write client_updated / client_deleted with the change', async () => {
    const res = await postJson('/oauth/register', metadata, adminHeaders())
    const created = (await res.json()) as TestClient
    const manage = {
      'content-type': 'application/json',
      authorization: `Bearer ${created.registration_access_token}`,
    }
    const put = await call(`/oauth/register/${created.client_id}`, {
      method: 'PUT',
      headers: manage,
      body: JSON.stringify({ ...metadata, client_id: created.client_id, client_name: 'renamed' }),
    })
    expect(put.status, await describeResponse(put)).toBe(200)
    expect(await auditCount('client_updated', created.client_id)).toBe(1)
    const del = await call(`/oauth/register/${created.client_id}`, { method: 'DELETE', headers: manage })
    expect(del.status, await describeResponse(del)).toBe(204)
    expect(await auditCount('client_deleted', created.client_id)).toBe(1)
  })
})

describe('issue 9 #12: repeated JSON keys are refused on /oauth/*', () => {
  it.each([
    ['/oauth/token', '{"grant_type":"client_credentials","grant_type":"refresh_token"}'],
    ['/oauth/introspect', '{"token":"a","client_id":"x","token":"b"}'],
    ['/oauth/revoke', '{"token":"a","token":"b"}'],
    ['/oauth/device_authorization', '{"client_id":"a","scope":"openid","client_id":"b"}'],
    ['/oauth/register', '{"redirect_uris":["https://a.example/cb"],"client_name":"a","client_name":"b"}'],
    ['/oauth/register', '{"redirect_uris":["https://a.example/cb"],"jwks":{"keys":[],"keys":[]}}'],
    ['/oauth/token', '{"grant_type":"client_credentials","gr\\u0061nt_type":"x"}'],
  ])('%s %s → 400 invalid_request', async (path, body) => {
    const res = await rawJson(path, body, adminHeaders())
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  })

  it('keys repeated only in different objects, or inside strings, are fine', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    // Issue 11: the resource must be a registered resource server.
    await ensureResourceServer('https://r.example/"grant_type":')
    const res = await rawJson(
      '/oauth/token',
      '{"grant_type":"client_credentials","scope":"apikeys:write","resource":"https://r.example/\\"grant_type\\":"}',
      basicAuth(client),
    )
    expect(res.status, await describeResponse(res)).toBe(200)
  })
})

describe('issue 9 #14: the registered token_endpoint_auth_method is enforced', () => {
  it('a client_secret_basic client using client_secret_post gets invalid_client, and the reverse', async () => {
    const basic = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const viaPost = await postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: basic.client_id,
      client_secret: basic.client_secret ?? '',
    })
    expect(viaPost.status, await describeResponse(viaPost)).toBe(401)
    expect(await viaPost.json()).toMatchObject({ error: 'invalid_client' })
    const post = await adminClient({
      grant_types: ['client_credentials'],
      scope: 'apikeys:write',
      token_endpoint_auth_method: 'client_secret_post',
    })
    const viaBasic = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(post))
    expect(viaBasic.status, await describeResponse(viaBasic)).toBe(401)
    const right = await postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: post.client_id,
      client_secret: post.client_secret ?? '',
    })
    expect(right.status, await describeResponse(right)).toBe(200)
  })

  it('the same rule holds on revocation and introspection', async () => {
    const basic = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const token = await clientCredentialsToken(basic)
    for (const path of ['/oauth/revoke', '/oauth/introspect']) {
      const res = await postForm(path, {
        token,
        client_id: basic.client_id,
        client_secret: basic.client_secret ?? '',
      })
      expect(res.status, `${path}: ${await describeResponse(res)}`).toBe(401)
    }
  })
})
