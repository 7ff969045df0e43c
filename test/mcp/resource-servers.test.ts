import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { unique } from '../helpers/db'
import {
  adminClient,
  approveConsent,
  authorize,
  basicAuth,
  type CodeResult,
  codeRequest,
  exchangeCode,
  fetchJwks,
  obtainCode,
  pkce,
  postForm,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { adminHeaders, call, postJson } from '../helpers/worker'

interface ResourceServer {
  id: string
  identifier: string
  scopes: { name: string; description: string }[]
}

async function createResourceServer(
  scopeName: string,
  extra: Record<string, unknown> = {},
): Promise<ResourceServer> {
  const res = await postJson(
    '/admin/resource-servers',
    {
      identifier: `https://${unique('mcp')}.example.net/mcp`,
      display_name: 'Acme MCP',
      scopes: [{ name: scopeName, description: 'Call the Acme tools' }],
      ...extra,
    },
    adminHeaders(),
  )
  expect(res.status, await res.clone().text()).toBe(201)
  return (await res.json()) as ResourceServer
}

describe('/admin/resource-servers (issue 11)', () => {
  it('creates, lists, gets and deletes; a duplicate identifier is a 409', async () => {
    const rs = await createResourceServer(`${unique('mcp')}:tools`)
    const again = await postJson(
      '/admin/resource-servers',
      { identifier: rs.identifier, display_name: 'Again', scopes: [] },
      adminHeaders(),
    )
    expect(again.status).toBe(409)
    const list = (await (await call('/admin/resource-servers', { headers: adminHeaders() })).json()) as {
      data: ResourceServer[]
    }
    expect(list.data.map((r) => r.identifier)).toContain(rs.identifier)
    expect((await call(`/admin/resource-servers/${rs.id}`, { headers: adminHeaders() })).status).toBe(200)
    const del = await call(`/admin/resource-servers/${rs.id}`, { method: 'DELETE', headers: adminHeaders() })
    expect(del.status).toBe(204)
    expect((await call(`/admin/resource-servers/${rs.id}`, { headers: adminHeaders() })).status).toBe(404)
  })

  it.each([
    [{ identifier: 'javascript:alert(1)', display_name: 'x', scopes: [] }, 'identifier'],
    [{ identifier: 'http://bank.example/', display_name: 'x', scopes: [] }, 'identifier'],
    [{ identifier: 'https://a.example/#f', display_name: 'x', scopes: [] }, 'identifier'],
    [
      { identifier: 'https://a.example/', display_name: 'x', scopes: [{ name: 'openid', description: 'x' }] },
      'scopes',
    ],
    [
      { identifier: 'https://a.example/', display_name: 'x', scopes: [{ name: 'a b', description: 'x' }] },
      'scopes',
    ],
  ])('refuses bad input %j (400 naming %s)', async (body, field) => {
    const res = await postJson('/admin/resource-servers', body, adminHeaders())
    expect(res.status).toBe(400)
    expect(await res.text()).toContain(field)
  })

  it('needs the admin', async () => {
    const res = await postJson('/admin/resource-servers', {
      identifier: 'https://a.example/',
      display_name: 'x',
      scopes: [],
    })
    expect(res.status).toBe(401)
  })
})

describe('resource servers in the flows (RFC 8707, issue 11)', () => {
  it('a resource server scope is refused at registration until a resource server defines it', async () => {
    const scope = `${unique('mcp')}:tools`
    const body = {
      redirect_uris: ['http://127.0.0.1:3000/cb'],
      token_endpoint_auth_method: 'none',
      scope: `openid ${scope}`,
    }
    const before = await postJson('/oauth/register', body, { 'cf-connecting-ip': '203.0.113.77' })
    expect(before.status).toBe(400)
    expect(await before.text()).toContain('invalid_client_metadata')
    await createResourceServer(scope)
    const after = await postJson('/oauth/register', body, { 'cf-connecting-ip': '203.0.113.78' })
    expect(after.status, await after.clone().text()).toBe(201)
  })

  it('an unknown resource (or javascript:) at authorize is invalid_target, sent to the redirect URI', async () => {
    const client = await webClient()
    const user = await seedUser()
    const p = await pkce()
    for (const resource of ['https://bank.example/', 'javascript:alert(1)']) {
      const res = await authorize(
        codeRequest(client, p, {
          scope: 'openid',
          resource,
        }),
        user.cookie,
      )
      expect(res.status).toBe(302)
      expect(new URL(res.headers.get('location') ?? '').searchParams.get('error')).toBe('invalid_target')
    }
  })

  it('a client asks later for a resource scope it never registered (step-up through consent): the token is for that resource', async () => {
    const scope = `${unique('mcp')}:tools`
    const rs = await createResourceServer(scope)
    const client = await webClient({ scope: 'openid offline_access' })
    const user = await seedUser()
    const result = await obtainCode(client, user, {
      scope: `openid offline_access ${scope}`,
      resource: rs.identifier,
    })
    const res = await exchangeCode(client, result)
    expect(res.status, await res.clone().text()).toBe(200)
    const tokens = (await res.json()) as TokenSet
    const claims = decodeJwt(tokens.access_token)
    expect(claims.aud).toBe(rs.identifier)
    expect(String(claims.scope).split(' ')).toContain(scope)
    // Without the resource, its scope is not the client's to ask for.
    await expect(obtainCode(client, user, { scope: `openid ${scope}` })).rejects.toThrow(/invalid_scope/)
  })

  it('resource at the token endpoint: an unknown one leaves the code unspent; another known one is invalid_target', async () => {
    const scopeA = `${unique('mcp')}:a`
    const rsA = await createResourceServer(scopeA)
    const rsB = await createResourceServer(`${unique('mcp')}:b`)
    const client = await webClient()
    const user = await seedUser()
    const result = await obtainCode(client, user, {
      scope: `openid offline_access ${scopeA}`,
      resource: rsA.identifier,
    })
    const unknown = await exchangeCode(client, result, { resource: 'https://unknown.example/' })
    expect(unknown.status).toBe(400)
    expect(((await unknown.json()) as { error: string }).error).toBe('invalid_target')
    const ok = await exchangeCode(client, result, { resource: rsA.identifier })
    expect(ok.status, await ok.clone().text()).toBe(200)
    const tokens = (await ok.json()) as TokenSet
    const other = await refresh(client, tokens.refresh_token ?? '', { resource: rsB.identifier })
    expect(other.status).toBe(400)
    expect(((await other.json()) as { error: string }).error).toBe('invalid_target')
    // Refused inside the rotation: the refresh token did not rotate and still works.
    const still = await refresh(client, tokens.refresh_token ?? '', { resource: rsA.identifier })
    expect(still.status, await still.clone().text()).toBe(200)

    const second = await obtainCode(client, user, {
      scope: `openid offline_access ${scopeA}`,
      resource: rsA.identifier,
    })
    const tokens2 = (await (await exchangeCode(client, second)).json()) as TokenSet
    const same = await refresh(client, tokens2.refresh_token ?? '', {
      resource: rsA.identifier,
      scope: scopeA,
    })
    expect(same.status, await same.clone().text()).toBe(200)
    const narrowed = decodeJwt(((await same.json()) as TokenSet).access_token)
    expect(narrowed.aud).toBe(rsA.identifier)
    expect(narrowed.scope).toBe(scopeA)
  })

  it('no resource keeps the issuer / DEFAULT_AUDIENCE audience, and naming the issuer is accepted', async () => {
    const client = await adminClient({
      client_name: 'Plain',
      redirect_uris: ['https://app.example.com/callback'],
      grant_types: ['authorization_code'],
      scope: 'openid',
      first_party: true,
    })
    const user = await seedUser()
    const plain = await exchangeCode(client, await obtainCode(client, user, { scope: 'openid' }))
    const aud = decodeJwt(((await plain.json()) as TokenSet).access_token).aud
    expect(typeof aud).toBe('string')
    const named = await exchangeCode(
      client,
      await obtainCode(client, user, { scope: 'openid', resource: String(aud) }),
    )
    expect(named.status).toBe(200)
  })
})

describe('resource at the device and client-credentials endpoints', () => {
  it('an unknown resource is invalid_target; a registered one becomes the audience', async () => {
    const scope = `${unique('mcp')}:jobs`
    const rs = await createResourceServer(scope)
    const client = await adminClient({
      client_name: 'Worker',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    })
    const auth = { authorization: `Basic ${btoa(`${client.client_id}:${client.client_secret ?? ''}`)}` }
    const form = (extra: Record<string, string>) =>
      call('/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...auth },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope, ...extra }).toString(),
      })
    const unknown = await form({ resource: 'https://bank.example/' })
    expect(unknown.status).toBe(400)
    expect(((await unknown.json()) as { error: string }).error).toBe('invalid_target')
    const ok = await form({ resource: rs.identifier })
    expect(ok.status, await ok.clone().text()).toBe(200)
    expect(decodeJwt(((await ok.json()) as TokenSet).access_token).aud).toBe(rs.identifier)

    const device = await adminClient({
      client_name: 'TV',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
      token_endpoint_auth_method: 'none',
      scope: 'openid',
    })
    const deviceRes = await call('/oauth/device_authorization', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: device.client_id, resource: 'javascript:alert(1)' }).toString(),
    })
    expect(deviceRes.status).toBe(400)
    expect(((await deviceRes.json()) as { error: string }).error).toBe('invalid_target')
  })
})

describe('consent names the resource server and describes its scopes', () => {
  it('shows the display name, host and each scope description (escaped)', async () => {
    const scope = `${unique('mcp')}:tools`
    const res0 = await postJson(
      '/admin/resource-servers',
      {
        identifier: `https://${unique('tools')}.example.net/mcp`,
        display_name: 'Acme <b>MCP</b>',
        scopes: [{ name: scope, description: 'Run the Acme build tools' }],
      },
      adminHeaders(),
    )
    const rs = (await res0.json()) as ResourceServer
    const client = await webClient({ scope: 'openid' })
    const user = await seedUser()
    const p = await pkce()
    const page = await authorize(
      codeRequest(client, p, {
        scope: `openid ${scope}`,
        resource: rs.identifier,
      }),
      user.cookie,
    )
    expect(page.status).toBe(200)
    const text = await page.text()
    expect(text).toContain('Acme &lt;b&gt;MCP&lt;/b&gt;')
    expect(text).toContain(new URL(rs.identifier).host)
    expect(text).toContain('Run the Acme build tools')
    expect(text).not.toContain('<b>MCP</b>')
  })
})

describe('a resource server’s access-token lifetime', () => {
  it('shortens the tokens minted for it (code exchange, refresh); never lengthens past ACCESS_TOKEN_TTL', async () => {
    const scope = `${unique('mcp')}:short`
    const short = await createResourceServer(scope, { access_token_ttl_seconds: 120 })
    const client = await webClient()
    const user = await seedUser()
    const result = await obtainCode(client, user, {
      scope: `openid offline_access ${scope}`,
      resource: short.identifier,
    })
    const tokens = (await (await exchangeCode(client, result)).json()) as TokenSet
    expect(tokens.expires_in).toBeLessThanOrEqual(120)
    const claims = decodeJwt(tokens.access_token)
    expect((claims.exp ?? 0) - (claims.iat ?? 0)).toBeLessThanOrEqual(120)
    const refreshed = (await (await refresh(client, tokens.refresh_token ?? '')).json()) as TokenSet
    expect(refreshed.expires_in).toBeLessThanOrEqual(120)

    const longScope = `${unique('mcp')}:long`
    const long = await createResourceServer(longScope, { access_token_ttl_seconds: 86_400 })
    const r2 = await obtainCode(client, user, { scope: `openid ${longScope}`, resource: long.identifier })
    const t2 = (await (await exchangeCode(client, r2)).json()) as TokenSet
    const plain = (await (
      await exchangeCode(client, await obtainCode(client, user, { scope: 'openid' }))
    ).json()) as TokenSet
    expect(t2.expires_in).toBeLessThanOrEqual(plain.expires_in)
    expect(t2.expires_in).toBeGreaterThan(120)
  })
})

/** /oauth/authorize with `resource` repeated (RFC 8707 §2), approved: the code. */
async function codeForResources(
  client: TestClientLike,
  user: Awaited<ReturnType<typeof seedUser>>,
  scope: string,
  resources: readonly string[],
): Promise<{ res: Response; result?: CodeResult }> {
  const p = await pkce()
  const query = new URLSearchParams(
    codeRequest(client, p, {
      scope,
    }),
  )
  for (const r of resources) {
    query.append('resource', r)
  }
  const res = await call(`/oauth/authorize?${query}`, {
    redirect: 'manual',
    headers: { cookie: user.cookie },
  })
  if (res.status !== 200) {
    return { res }
  }
  const location = await approveConsent(res.clone(), user)
  const code = new URL(location ?? '').searchParams.get('code') ?? ''
  return { res, result: { code, pkce: p, redirectUri: client.redirect_uris[0] ?? '' } }
}

type TestClientLike = Awaited<ReturnType<typeof webClient>>

describe('several resources (RFC 8707 §2, issue 11)', () => {
  it('one grant for two resource servers: consent names both; the token is for both until narrowed to one, whose scopes alone it keeps', async () => {
    const scopeA = `${unique('mcp')}:a`
    const scopeB = `${unique('mcp')}:b`
    const rsA = await createResourceServer(scopeA, { access_token_ttl_seconds: 600 })
    const rsB = await createResourceServer(scopeB, { access_token_ttl_seconds: 300 })
    const rsC = await createResourceServer(`${unique('mcp')}:c`)
    const client = await webClient({ scope: 'openid offline_access' })
    const user = await seedUser()
    const { res, result } = await codeForResources(
      client,
      user,
      `openid offline_access ${scopeA} ${scopeB}`,
      [rsA.identifier, rsB.identifier],
    )
    const page = await res.text()
    expect(page).toContain(new URL(rsA.identifier).host)
    expect(page).toContain(new URL(rsB.identifier).host)
    if (result === undefined) {
      throw new Error('no code')
    }
    const both = await exchangeCode(client, result)
    expect(both.status, await both.clone().text()).toBe(200)
    const tokens = (await both.json()) as TokenSet
    const claims = decodeJwt(tokens.access_token)
    expect(claims.aud).toEqual([rsA.identifier, rsB.identifier])
    expect(String(claims.scope).split(' ')).toEqual(expect.arrayContaining([scopeA, scopeB]))
    // The shortest lifetime of the audiences applies.
    expect(tokens.expires_in).toBeLessThanOrEqual(300)

    const onlyB = await refresh(client, tokens.refresh_token ?? '', { resource: rsB.identifier })
    expect(onlyB.status, await onlyB.clone().text()).toBe(200)
    const b = (await onlyB.json()) as TokenSet
    const bClaims = decodeJwt(b.access_token)
    expect(bClaims.aud).toBe(rsB.identifier)
    expect(String(bClaims.scope).split(' ')).toContain(scopeB)
    expect(String(bClaims.scope).split(' ')).not.toContain(scopeA)
    expect(String(bClaims.scope).split(' ')).toContain('openid')

    const onlyA = await refresh(client, b.refresh_token ?? '', { resource: rsA.identifier })
    expect(onlyA.status, await onlyA.clone().text()).toBe(200)
    const a = (await onlyA.json()) as TokenSet
    expect(decodeJwt(a.access_token).aud).toBe(rsA.identifier)
    expect(String(decodeJwt(a.access_token).scope).split(' ')).not.toContain(scopeB)
    expect(a.expires_in).toBeGreaterThan(300)

    // A registered resource outside the grant: invalid_target, and the refresh token survives.
    const outside = await refresh(client, a.refresh_token ?? '', { resource: rsC.identifier })
    expect(outside.status).toBe(400)
    expect(((await outside.json()) as { error: string }).error).toBe('invalid_target')
    expect((await refresh(client, a.refresh_token ?? '')).status).toBe(200)
  })

  it('the code exchange may narrow to one of the resources', async () => {
    const scopeA = `${unique('mcp')}:a`
    const scopeB = `${unique('mcp')}:b`
    const rsA = await createResourceServer(scopeA)
    const rsB = await createResourceServer(scopeB)
    const client = await webClient({ scope: 'openid' })
    const user = await seedUser()
    const { result } = await codeForResources(client, user, `openid ${scopeA} ${scopeB}`, [
      rsA.identifier,
      rsB.identifier,
    ])
    if (result === undefined) {
      throw new Error('no code')
    }
    const narrowed = await exchangeCode(client, result, { resource: rsA.identifier })
    expect(narrowed.status, await narrowed.clone().text()).toBe(200)
    const claims = decodeJwt(((await narrowed.json()) as TokenSet).access_token)
    expect(claims.aud).toBe(rsA.identifier)
    expect(claims.scope).toBe(`openid ${scopeA}`)
  })

  it('resources that sign differently, more than five, or one unknown among them: invalid_target', async () => {
    const es = await createResourceServer(`${unique('mcp')}:es`)
    const ed = await createResourceServer(`${unique('mcp')}:ed`, { signing_algorithm: 'EdDSA' })
    const client = await webClient({ scope: 'openid' })
    const user = await seedUser()
    const cases = [
      [es.identifier, ed.identifier],
      [es.identifier, 'https://unknown.example/'],
      Array.from({ length: 6 }, (_, i) => `https://r${i}.example/`),
    ]
    for (const resources of cases) {
      const { res } = await codeForResources(client, user, 'openid', resources)
      expect(res.status).toBe(302)
      expect(new URL(res.headers.get('location') ?? '').searchParams.get('error')).toBe('invalid_target')
    }
  })
})

describe('a resource server’s signing algorithm', () => {
  it('signs the tokens minted for it (EdDSA here), verifiable against the JWKS; others keep ACCESS_TOKEN_ALG', async () => {
    const scope = `${unique('mcp')}:ed`
    const rs = await createResourceServer(scope, { signing_algorithm: 'EdDSA' })
    const admin = (await (
      await call(`/admin/resource-servers/${rs.id}`, { headers: adminHeaders() })
    ).json()) as {
      signing_algorithm: string
      tenant_id: string
    }
    expect(admin.signing_algorithm).toBe('EdDSA')
    expect(admin.tenant_id).toBe(DEFAULT_TENANT_ID)
    const client = await webClient()
    const user = await seedUser()
    const tokens = (await (
      await exchangeCode(
        client,
        await obtainCode(client, user, { scope: `openid offline_access ${scope}`, resource: rs.identifier }),
      )
    ).json()) as TokenSet
    expect(decodeProtectedHeader(tokens.access_token).alg).toBe('EdDSA')
    const jwks = createLocalJWKSet(await fetchJwks())
    const verified = await jwtVerify(tokens.access_token, jwks, { audience: rs.identifier })
    expect(verified.payload.scope).toContain(scope)
    const refreshed = (await (await refresh(client, tokens.refresh_token ?? '')).json()) as TokenSet
    expect(decodeProtectedHeader(refreshed.access_token).alg).toBe('EdDSA')
    const plain = (await (
      await exchangeCode(client, await obtainCode(client, user, { scope: 'openid' }))
    ).json()) as TokenSet
    expect(decodeProtectedHeader(plain.access_token).alg).toBe('ES256')
  })

  it('client credentials for such a resource are signed with its algorithm too', async () => {
    const scope = `${unique('mcp')}:jobs`
    const rs = await createResourceServer(scope, {
      signing_algorithm: 'RS256',
      access_token_ttl_seconds: 300,
    })
    const client = await adminClient({
      client_name: 'Worker',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_basic',
      scope,
    })
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials', scope, resource: rs.identifier },
      basicAuth(client),
    )
    expect(res.status, await res.clone().text()).toBe(200)
    const tokens = (await res.json()) as TokenSet
    expect(decodeProtectedHeader(tokens.access_token).alg).toBe('RS256')
    expect(tokens.expires_in).toBeLessThanOrEqual(300)
  })

  it('refuses an unknown algorithm', async () => {
    const res = await postJson(
      '/admin/resource-servers',
      { identifier: 'https://alg.example/', display_name: 'x', scopes: [], signing_algorithm: 'HS256' },
      adminHeaders(),
    )
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('signing_algorithm')
  })
})
