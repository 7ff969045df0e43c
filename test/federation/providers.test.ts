import { eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { auditEvents, identityProviders, tenantMembers } from '../../db/schema'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { adminHeaders, callWith } from '../helpers/worker'
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET } from '../setup/fake-federation'
import { seedTenant } from '../tenants/fixtures'
import {
  accountWithToken,
  beginFlow,
  cookieOf,
  createStoredProvider,
  FED,
  fake,
  finish,
  githubUser,
  identitiesOf,
  oidcBody,
  oidcUser,
  type StoredProviderJson,
  sessionUser,
  signIn,
  upstreamToken,
  usersWithEmail,
} from './flow'

/** Database providers name loopback URLs (the fakes): allowed only with OUTBOUND_ALLOW_LOOPBACK. */
const VARS = { ...FED, OUTBOUND_ALLOW_LOOPBACK: 'true' }

function send(
  method: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
  vars: Record<string, string> = VARS,
) {
  return callWith(vars, path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
}

type ProviderJson = StoredProviderJson

function createPlatformProvider(extra: Record<string, unknown> = {}): Promise<ProviderJson> {
  return createStoredProvider(VARS, extra)
}

async function storedRow(id: string) {
  const [row] = await testDb().select().from(identityProviders).where(eq(identityProviders.id, id))
  return row
}

describe('/admin/identity-providers', () => {
  it('creates an OpenID provider with its secret sealed (never returned, never stored raw), lists, gets and audits it', async () => {
    const created = await createPlatformProvider()
    expect(created.kind).toBe('oidc')
    expect(created.tenant_id).toBeNull()
    expect(created.redirect_uri).toBe(`http://127.0.0.1:8787/federated/${created.slug}/callback`)
    expect(JSON.stringify(created)).not.toContain(FAKE_CLIENT_SECRET)
    expect(created).not.toHaveProperty('client_secret')
    const row = await storedRow(created.id)
    expect(row?.clientSecretSealed).toMatch(/^k1:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    const raw = await queryRows<{ hit: boolean }>(
      testDb(),
      sql`select exists (select 1 from identity_providers where id = ${created.id}::uuid
        and row_to_json(identity_providers)::text like ${`%${FAKE_CLIENT_SECRET}%`}) as hit`,
    )
    expect(raw[0]?.hit).toBe(false)

    const list = await send('GET', '/admin/identity-providers', undefined, adminHeaders())
    expect(list.status).toBe(200)
    const listed = ((await list.json()) as { data: ProviderJson[] }).data
    expect(listed.map((p) => p.id)).toContain(created.id)
    expect(JSON.stringify(listed)).not.toContain(FAKE_CLIENT_SECRET)
    const one = await send('GET', `/admin/identity-providers/${created.id}`, undefined, adminHeaders())
    expect(((await one.json()) as ProviderJson).slug).toBe(created.slug)
    const audit = await testDb()
      .select()
      .from(auditEvents)
      .where(
        sql`${auditEvents.type} = 'identity_provider_created' and ${auditEvents.metadata}->>'provider_id' = ${created.id}`,
      )
    expect(audit).toHaveLength(1)
    expect(JSON.stringify(audit[0]?.metadata)).not.toContain(FAKE_CLIENT_SECRET)
  })

  it('refuses bad input with the documented problems and writes nothing', async () => {
    const taken = await createPlatformProvider()
    const cases: [Record<string, unknown>, number, string][] = [
      [oidcBody({ slug: taken.slug }), 409, 'already exists'],
      [oidcBody({ slug: 'github' }), 409, 'deployment already configures'],
      [oidcBody({ slug: 'acme' }), 409, 'deployment already configures'],
      [oidcBody({ slug: 'Bad Slug' }), 400, 'slug'],
      [oidcBody({ issuer: undefined }), 400, 'issuer'],
      [oidcBody({ issuer: 'http://sso.example.com' }), 400, 'issuer'],
      [oidcBody({ issuer: 'https://10.0.0.1/realm' }), 400, 'issuer'],
      [oidcBody({ scope: 'email profile' }), 400, 'openid'],
      [oidcBody({ client_secret: '' }), 400, 'client_secret'],
      [oidcBody({ kind: 'saml' }), 400, 'kind'],
      [oidcBody({ tenant_id: crypto.randomUUID() }), 400, 'tenant'],
      [oidcBody({ extra: 1 }), 400, 'extra'],
      [{ ...oidcBody(), kind: 'github', issuer: undefined, scope: 'x' }, 400, 'scope'],
    ]
    for (const [body, status, words] of cases) {
      const res = await send('POST', '/admin/identity-providers', body, adminHeaders())
      expect(res.status, JSON.stringify(body)).toBe(status)
      expect(res.headers.get('content-type')).toContain('application/problem+json')
      expect((await res.text()).toLowerCase()).toContain(words.toLowerCase())
    }
    // A loopback issuer is refused unless the deployment allows loopback (tests, development).
    const loopback = await send('POST', '/admin/identity-providers', oidcBody(), adminHeaders(), FED)
    expect(loopback.status).toBe(400)
    const [count] = await queryRows<{ n: number }>(
      testDb(),
      sql`select count(*)::int as n from identity_providers where slug in ('github', 'acme')`,
    )
    expect(count?.n).toBe(0)
  })

  it('needs a platform admin: a user session is 403, nobody is 401; a malformed or unknown id is 404', async () => {
    const user = await seedUser({ session: true })
    const asUser = await send('POST', '/admin/identity-providers', oidcBody(), { cookie: user.cookie })
    expect([401, 403]).toContain(asUser.status)
    const nobody = await send('GET', '/admin/identity-providers', undefined, {})
    expect(nobody.status).toBe(401)
    for (const id of ['nope', crypto.randomUUID()]) {
      expect((await send('GET', `/admin/identity-providers/${id}`, undefined, adminHeaders())).status).toBe(
        404,
      )
      expect(
        (await send('PATCH', `/admin/identity-providers/${id}`, { name: 'x' }, adminHeaders())).status,
      ).toBe(404)
      expect(
        (await send('DELETE', `/admin/identity-providers/${id}`, undefined, adminHeaders())).status,
      ).toBe(404)
    }
    const created = await createPlatformProvider()
    const empty = await send('PATCH', `/admin/identity-providers/${created.id}`, {}, adminHeaders())
    expect(empty.status).toBe(400)
    const fixed = await send(
      'PATCH',
      `/admin/identity-providers/${created.id}`,
      { issuer: 'https://x.example' },
      adminHeaders(),
    )
    expect(fixed.status).toBe(400)
  })
})

describe('a database provider signs people in end to end', () => {
  it('appears on /login, signs up by (slug, sub), and signs in again to the same account', async () => {
    const provider = await createPlatformProvider()
    const login = await callWith(VARS, '/login?return_to=%2Fnext')
    const page = await login.text()
    expect(page).toContain(`Continue with ${provider.name}`)
    expect(page).toContain(`/federated/${provider.slug}/start?return_to=%2Fnext`)

    const email = uniqueEmail()
    const user = oidcUser(email)
    const res = await signIn(provider.slug, user, VARS)
    expect(res.status, await res.clone().text()).toBe(303)
    const me = await sessionUser(res)
    expect(me.email).toBe(email)
    const [identity] = await identitiesOf(provider.slug, user.sub ?? '')
    expect(identity?.userId).toBe(me.id)
    const again = await signIn(provider.slug, user, VARS)
    expect((await sessionUser(again)).id).toBe(me.id)
  })

  it('a GitHub (Enterprise) provider by its web and API roots works the same way', async () => {
    const res = await send(
      'POST',
      '/admin/identity-providers',
      {
        slug: unique('ghe').toLowerCase().slice(0, 32),
        kind: 'github',
        name: 'GitHub Enterprise',
        web_url: `${fake}/github`,
        api_url: `${fake}/github-api`,
        client_id: FAKE_CLIENT_ID,
        client_secret: FAKE_CLIENT_SECRET,
      },
      adminHeaders(),
    )
    expect(res.status, await res.clone().text()).toBe(201)
    const provider = (await res.json()) as ProviderJson
    const email = uniqueEmail()
    const user = githubUser(email)
    const signedIn = await signIn(provider.slug, user, VARS)
    expect(signedIn.status).toBe(303)
    expect((await sessionUser(signedIn)).email).toBe(email)
    expect(await identitiesOf(provider.slug, String(user.id))).toHaveLength(1)
  })

  it('GET /connections/{slug}/token refreshes an expired token with the stored provider’s sealed secret', async () => {
    const provider = await createStoredProvider(VARS, {
      kind: 'github',
      issuer: undefined,
      web_url: `${fake}/github`,
      api_url: `${fake}/github-api`,
    })
    const user = githubUser(uniqueEmail(), { expires_in: 30 }) // inside the refresh skew: expired
    const { accessToken } = await accountWithToken(user, { provider: provider.slug, vars: VARS })
    const answers = await Promise.all([1, 2, 3].map(() => upstreamToken(accessToken, provider.slug, VARS)))
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200])
    const tokens = new Set(
      await Promise.all(
        answers.map(async (r) => ((await r.json()) as { access_token: string }).access_token),
      ),
    )
    expect(tokens.size).toBe(1)
    const issued = (await (await fetch(`${fake}/__issued?login=${user.login}`)).json()) as {
      refreshes: number
    }
    expect(issued.refreshes).toBe(1)
    // Disabled, the provider serves no token.
    await send('DELETE', `/admin/identity-providers/${provider.id}`, undefined, adminHeaders())
    expect((await upstreamToken(accessToken, provider.slug, VARS)).status).toBe(404)
  })

  it('the sealed client secret is the one used: a wrong secret fails at the provider, the right one works again', async () => {
    const provider = await createPlatformProvider()
    const patch = await send(
      'PATCH',
      `/admin/identity-providers/${provider.id}`,
      { client_secret: 'wrong-secret' },
      adminHeaders(),
    )
    expect(patch.status).toBe(200)
    expect(await patch.text()).not.toContain('wrong-secret')
    const email = uniqueEmail()
    const refused = await signIn(provider.slug, oidcUser(email), VARS)
    expect(refused.status).toBe(502)
    expect(await usersWithEmail(email)).toHaveLength(0)
    await send(
      'PATCH',
      `/admin/identity-providers/${provider.id}`,
      { client_secret: FAKE_CLIENT_SECRET },
      adminHeaders(),
    )
    expect((await signIn(provider.slug, oidcUser(email), VARS)).status).toBe(303)
    const audit = await testDb()
      .select()
      .from(auditEvents)
      .where(
        sql`${auditEvents.type} = 'identity_provider_updated' and ${auditEvents.metadata}->>'provider_id' = ${provider.id}`,
      )
    expect(audit).toHaveLength(2)
  })

  it('disabling takes it off /login and refuses a flow already under way, creating nothing', async () => {
    const provider = await createPlatformProvider()
    const email = uniqueEmail()
    const flow = await beginFlow(provider.slug, oidcUser(email), { vars: VARS })
    const disabled = await send(
      'DELETE',
      `/admin/identity-providers/${provider.id}`,
      undefined,
      adminHeaders(),
    )
    expect(disabled.status).toBe(200)
    expect(((await disabled.json()) as ProviderJson).enabled).toBe(false)
    expect(await (await callWith(VARS, '/login')).text()).not.toContain(`Continue with ${provider.name}`)
    const callback = await finish(flow, VARS)
    expect(callback.status).toBe(404)
    expect(await callback.text()).toContain('not enabled')
    expect(cookieOf(callback, 'portcullis_session')).toBeUndefined()
    expect(await usersWithEmail(email)).toHaveLength(0)
    const start = await callWith(VARS, `/federated/${provider.slug}/start`, { redirect: 'manual' })
    expect(start.status).toBe(404)
    // Re-enabled, it works again under the same slug (the slug is never given to another provider).
    await send('PATCH', `/admin/identity-providers/${provider.id}`, { enabled: true }, adminHeaders())
    expect((await signIn(provider.slug, oidcUser(email), VARS)).status).toBe(303)
  })
})

describe('/tenants/{id}/identity-providers', () => {
  it('owners and admins manage their tenant’s providers; members are 403; other tenants see 404', async () => {
    const tenant = await seedTenant()
    const other = await seedTenant()
    const base = `/tenants/${tenant.id}/identity-providers`
    const created = await send('POST', base, oidcBody(), { cookie: tenant.admin.cookie })
    expect(created.status, await created.clone().text()).toBe(201)
    const provider = (await created.json()) as ProviderJson
    expect(provider.tenant_id).toBe(tenant.id)
    expect((await send('GET', base, undefined, { cookie: tenant.member.cookie })).status).toBe(403)
    expect((await send('POST', base, oidcBody(), { cookie: tenant.member.cookie })).status).toBe(403)
    // Another tenant's owner: neither the tenant nor its provider exists for them.
    expect((await send('GET', base, undefined, { cookie: other.owner.cookie })).status).toBe(404)
    const foreign = `/tenants/${other.id}/identity-providers/${provider.id}`
    expect((await send('GET', foreign, undefined, { cookie: other.owner.cookie })).status).toBe(404)
    expect((await send('DELETE', foreign, undefined, { cookie: other.owner.cookie })).status).toBe(404)
    expect((await storedRow(provider.id))?.enabled).toBe(true)
    // A tenant cannot create a provider for another tenant.
    const elsewhere = await send('POST', base, oidcBody({ tenant_id: other.id }), {
      cookie: tenant.owner.cookie,
    })
    expect(elsewhere.status).toBe(400)
    const listed = await send('GET', base, undefined, { cookie: tenant.owner.cookie })
    expect(((await listed.json()) as { data: ProviderJson[] }).data.map((p) => p.id)).toEqual([provider.id])
    // The platform admin sees it, filtered by tenant.
    const platform = await send(
      'GET',
      `/admin/identity-providers?tenant_id=${tenant.id}`,
      undefined,
      adminHeaders(),
    )
    expect(((await platform.json()) as { data: ProviderJson[] }).data.map((p) => p.id)).toEqual([provider.id])
    const renamed = await send(
      'PATCH',
      `${base}/${provider.id}`,
      { name: 'Acme Okta' },
      { cookie: tenant.owner.cookie },
    )
    expect(((await renamed.json()) as ProviderJson).name).toBe('Acme Okta')
  })

  it('shows on /login?tenant=<slug> only; a sign-up through it joins the tenant as a member', async () => {
    const tenant = await seedTenant()
    const res = await send('POST', `/tenants/${tenant.id}/identity-providers`, oidcBody(), {
      cookie: tenant.owner.cookie,
    })
    const provider = (await res.json()) as ProviderJson
    expect(await (await callWith(VARS, '/login')).text()).not.toContain(`Continue with ${provider.name}`)
    expect(await (await callWith(VARS, `/login?tenant=${tenant.slug}`)).text()).toContain(
      `Continue with ${provider.name}`,
    )
    const email = uniqueEmail()
    const signedIn = await signIn(provider.slug, oidcUser(email), VARS)
    expect(signedIn.status).toBe(303)
    const me = await sessionUser(signedIn)
    const membership = await testDb().select().from(tenantMembers).where(eq(tenantMembers.userId, me.id))
    expect(membership.map((m) => [m.tenantId, m.role])).toEqual([[tenant.id, 'member']])
  })

  it('a tenant’s provider is not trusted for other accounts: no automatic linking by email, no allowlist match', async () => {
    const tenant = await seedTenant()
    const res = await send('POST', `/tenants/${tenant.id}/identity-providers`, oidcBody(), {
      cookie: tenant.owner.cookie,
    })
    const provider = (await res.json()) as ProviderJson
    // An existing account's email, asserted verified by the tenant's IdP, with FEDERATION_AUTO_LINK on.
    const victim = await seedUser()
    const claim = oidcUser(victim.email)
    const linked = await signIn(provider.slug, claim, { ...VARS, FEDERATION_AUTO_LINK: 'true' })
    expect(linked.status).toBe(409)
    expect(cookieOf(linked, 'portcullis_session')).toBeUndefined()
    expect(await identitiesOf(provider.slug, claim.sub ?? '')).toHaveLength(0)
    // An allowlisted domain does not let a tenant IdP's sign-up in: the account waits for approval.
    const domain = `${unique('corp').toLowerCase()}.example`
    const entry = await send(
      'POST',
      '/admin/identity-allowlist',
      { kind: 'email_domain', value: domain },
      adminHeaders(),
    )
    expect(entry.status).toBe(201)
    const email = `someone@${domain}`
    const pending = await signIn(provider.slug, oidcUser(email), { ...VARS, FEDERATION_ALLOWLIST: 'true' })
    expect(pending.status).toBe(403)
    expect(await pending.text()).toContain('waiting for approval')
    const [row] = await usersWithEmail(email)
    expect(row?.status).toBe('pending')
  })

  it('a provider that cannot be reached at start is a 502 page and starts nothing', async () => {
    const created = await createPlatformProvider({ issuer: 'http://127.0.0.1:9/down' })
    const start = await callWith(
      { ...VARS, FEDERATION_TIMEOUT_MS: '500' },
      `/federated/${created.slug}/start`,
      {
        redirect: 'manual',
      },
    )
    expect(start.status).toBe(502)
    expect(await start.text()).toContain('could not be reached')
    expect(start.headers.get('set-cookie') ?? '').not.toContain('portcullis_federated=')
    const [rows] = await queryRows<{ n: number }>(
      testDb(),
      sql`select count(*)::int as n from federated_login_states where provider = ${created.slug}`,
    )
    expect(rows?.n).toBe(0)
  })

  it('a deactivated tenant’s providers sign no one in', async () => {
    const tenant = await seedTenant()
    const res = await send('POST', `/tenants/${tenant.id}/identity-providers`, oidcBody(), {
      cookie: tenant.owner.cookie,
    })
    const provider = (await res.json()) as ProviderJson
    await testDb().execute(sql`update tenants set active = false where id = ${tenant.id}::uuid`)
    const start = await callWith(VARS, `/federated/${provider.slug}/start`, { redirect: 'manual' })
    expect(start.status).toBe(404)
  })
})
