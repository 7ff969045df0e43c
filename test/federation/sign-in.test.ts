import { SELF } from 'cloudflare:test'
import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { adminHeaders, BASE, callWith } from '../helpers/worker'
import {
  accountWithToken,
  authorizeThroughProvider,
  beginFlow,
  cookieOf,
  type FakeUser,
  FED,
  fake,
  finish,
  githubUser,
  identitiesOf,
  oidcUser,
  sessionUser,
  signIn,
  upstreamToken,
  usersWithEmail,
} from './flow'

describe('federated sign-in: GitHub', () => {
  it('signs up a new GitHub user by numeric id with the verified primary email, and returns to return_to', async () => {
    const email = uniqueEmail()
    const user = githubUser(email)
    const res = await signIn('github', user)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/welcome')
    const me = await sessionUser(res)
    expect(me.email).toBe(email)
    const [identity] = await identitiesOf('github', String(user.id))
    expect(identity?.userId).toBe(me.id)
    expect(identity?.username).toBe(user.login)
    const [row] = await usersWithEmail(email)
    expect(row?.emailVerifiedAt).not.toBeNull()
    expect(row?.passwordHash.startsWith('$')).toBe(false)

    // The same GitHub id signs in to the same account, whatever its login or email became.
    const again = await signIn('github', { ...user, login: unique('renamed'), emails: githubUser().emails })
    expect(again.status).toBe(303)
    expect((await sessionUser(again)).id).toBe(me.id)
    expect(await usersWithEmail(email)).toHaveLength(1)
  })

  it('state is single use: a replayed callback and one without the browser cookie are refused', async () => {
    const user = githubUser()
    const flow = await beginFlow('github', user)
    const wrongBrowser = await finish(
      flow,
      {},
      'portcullis_federated=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    )
    expect(wrongBrowser.status).toBe(400)
    expect(await wrongBrowser.text()).toContain('expired or was already used')
    const first = await finish(flow)
    expect(first.status).toBe(303)
    const replay = await finish(flow)
    expect(replay.status).toBe(400)
    expect(cookieOf(replay, 'portcullis_session')).toBeUndefined()
    expect(await identitiesOf('github', String(user.id))).toHaveLength(1)
  })

  it('a state that does not match the flow, or no state, is refused before anything is exchanged', async () => {
    const flow = await beginFlow('github', githubUser())
    const tampered = flow.callbackPath.replace(/state=[^&]+/, `state=${'B'.repeat(43)}`)
    const res = await callWith(FED, tampered, {
      redirect: 'manual',
      headers: { cookie: `portcullis_federated=${'B'.repeat(43)}` },
    })
    expect(res.status).toBe(400)
    const none = await callWith(FED, '/federated/github/callback?code=x', { redirect: 'manual' })
    expect(none.status).toBe(400)
  })

  it('an error from the provider is a clear page and creates nothing', async () => {
    const email = uniqueEmail()
    const flow = await beginFlow('github', githubUser(email), { providerError: 'access_denied' })
    const res = await finish(flow)
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('You cancelled signing in with GitHub')
    expect(await usersWithEmail(email)).toHaveLength(0)
    // The flow was consumed: the state cannot be used again.
    const again = await finish(flow)
    expect(again.status).toBe(400)
    expect(await again.text()).toContain('expired or was already used')
  })

  it('a provider that answers 500, or never answers, is a 502 page and creates nothing', async () => {
    for (const [behavior, vars] of [
      ['token_500', {}],
      ['token_hang', { FEDERATION_TIMEOUT_MS: '300' }],
      ['user_500', {}],
    ] as const) {
      const email = uniqueEmail()
      const user = githubUser(email, { behavior })
      const res = await signIn('github', user, vars)
      expect(res.status, behavior).toBe(502)
      expect(await res.text()).toContain('Signing in with GitHub did not work')
      expect(await usersWithEmail(email)).toHaveLength(0)
      expect(await identitiesOf('github', String(user.id))).toHaveLength(0)
    }
  })

  it('a GitHub user without a verified primary email is refused and no account is created', async () => {
    const email = uniqueEmail()
    const user = githubUser(email, {
      emails: [
        { email, primary: true, verified: false },
        { email: `x-${email}`, primary: false, verified: true },
      ],
    })
    const res = await signIn('github', user)
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('no verified primary email')
    expect(await usersWithEmail(email)).toHaveLength(0)
    expect(await usersWithEmail(`x-${email}`)).toHaveLength(0)
    expect(await identitiesOf('github', String(user.id))).toHaveLength(0)
  })

  it('a provider that is not enabled is a 404 page at start and callback', async () => {
    const start = await callWith(FED, '/federated/gitlab/start', { redirect: 'manual' })
    expect(start.status).toBe(404)
    expect(await start.text()).toContain('not enabled')
    const withoutGithub = await callWith(
      { ...FED, GITHUB_CLIENT_ID: '', GITHUB_CLIENT_SECRET: '' },
      '/federated/github/start',
      { redirect: 'manual' },
    )
    expect(withoutGithub.status).toBe(404)
    const flow = await beginFlow('github', githubUser())
    const disabled = await finish(flow, { GITHUB_CLIENT_ID: '', GITHUB_CLIENT_SECRET: '' })
    expect(disabled.status).toBe(404)
  })

  it('/login shows one button per enabled provider, carrying return_to', async () => {
    const page = await callWith(FED, '/login?return_to=%2Foauth%2Fauthorize%3Fa%3D1')
    const text = await page.text()
    expect(text).toContain('Continue with GitHub')
    expect(text).toContain('Continue with Acme SSO')
    expect(text).toContain('/federated/github/start?return_to=%2Foauth%2Fauthorize%3Fa%3D1')
    // Without GITHUB_*/OIDC_PROVIDERS their buttons are gone (other files' stored providers may show).
    const plain = await (await SELF.fetch(`${BASE}/login`)).text()
    expect(plain).not.toContain('/federated/github/start')
    expect(plain).not.toContain('Continue with Acme SSO')
  })

  it('with REQUIRE_APPROVAL a new account is pending: a waiting page and no session', async () => {
    const email = uniqueEmail()
    const res = await signIn('github', githubUser(email), { REQUIRE_APPROVAL: 'true' })
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('waiting for approval')
    expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    const [row] = await usersWithEmail(email)
    expect(row?.status).toBe('pending')
  })

  it('works inside /oauth/authorize: login → GitHub → consent → the client redirect with a code', async () => {
    const { redirect, redirectUri } = await authorizeThroughProvider('github', githubUser())
    expect(`${redirect.origin}${redirect.pathname}`).toBe(redirectUri)
    expect(redirect.searchParams.get('code')).toMatch(/.+/)
    expect(redirect.searchParams.get('state')).toBe('client-state')
  })
})

describe('federated sign-in: OpenID provider', () => {
  it('signs up by issuer subject with the verified email from the ID token and userinfo', async () => {
    const email = uniqueEmail()
    const user = oidcUser(email)
    const res = await signIn('acme', user)
    expect(res.status).toBe(303)
    const me = await sessionUser(res)
    expect(me.email).toBe(email)
    const [identity] = await identitiesOf('acme', user.sub ?? '')
    expect(identity?.userId).toBe(me.id)
  })

  it('an ID token with the wrong aud, nonce or signature is refused and creates nothing', async () => {
    for (const behavior of ['wrong_aud', 'wrong_nonce', 'bad_signature']) {
      const email = uniqueEmail()
      const user = oidcUser(email, { behavior })
      const res = await signIn('acme', user)
      expect(res.status, behavior).toBe(502)
      expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
      expect(await usersWithEmail(email)).toHaveLength(0)
      expect(await identitiesOf('acme', user.sub ?? '')).toHaveLength(0)
    }
  })

  it('an unverified email is never used: no account without a verified address', async () => {
    const email = uniqueEmail()
    const res = await signIn('acme', oidcUser(email, { email_verified: false }))
    expect(res.status).toBe(400)
    expect(await usersWithEmail(email)).toHaveLength(0)
  })
})

describe('linking', () => {
  it('a verified email of an existing account does not link by itself: 409 and nothing linked', async () => {
    const existing = await seedUser({ session: false })
    const user = githubUser(existing.email)
    const res = await signIn('github', user)
    expect(res.status).toBe(409)
    expect(await res.text()).toContain('Sign in with your password')
    expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    expect(await identitiesOf('github', String(user.id))).toHaveLength(0)
    expect(await usersWithEmail(existing.email)).toHaveLength(1)
  })

  it('with FEDERATION_AUTO_LINK the verified email links to the existing account', async () => {
    const existing = await seedUser({ session: false })
    const user = githubUser(existing.email)
    const res = await signIn('github', user, { FEDERATION_AUTO_LINK: 'true' })
    expect(res.status).toBe(303)
    expect((await sessionUser(res)).id).toBe(existing.id)
    const [identity] = await identitiesOf('github', String(user.id))
    expect(identity?.userId).toBe(existing.id)
  })

  it('a signed-in user who goes through the provider connects it to their own account', async () => {
    const me = await seedUser({ session: true })
    const user = githubUser() // a different email: proof of control is the session
    const flow = await beginFlow('github', user, { cookie: me.cookie })
    const res = await finish(flow, {}, `portcullis_federated=${flow.flowCookie}; ${me.cookie}`)
    expect(res.status).toBe(303)
    const [identity] = await identitiesOf('github', String(user.id))
    expect(identity?.userId).toBe(me.id)
    // Now the GitHub account signs in to that account.
    const later = await signIn('github', user)
    expect((await sessionUser(later)).id).toBe(me.id)
    // Another signed-in user cannot take it over.
    const other = await seedUser({ session: true })
    const steal = await beginFlow('github', user, { cookie: other.cookie })
    const refused = await finish(steal, {}, `portcullis_federated=${steal.flowCookie}; ${other.cookie}`)
    expect(refused.status).toBe(409)
    expect((await identitiesOf('github', String(user.id)))[0]?.userId).toBe(me.id)
  })
})

describe('/auth/connections', () => {
  async function federatedAccount() {
    const user = githubUser()
    const res = await signIn('github', user)
    const cookie = `portcullis_session=${cookieOf(res, 'portcullis_session')}`
    return { user, cookie, id: (await sessionUser(res)).id }
  }

  async function connect(cookie: string, provider: string, user: FakeUser) {
    const flow = await beginFlow(provider, user, { cookie })
    const res = await finish(flow, {}, `portcullis_federated=${flow.flowCookie}; ${cookie}`)
    expect(res.status).toBe(303)
  }

  async function list(cookie: string) {
    const res = await callWith(FED, '/auth/connections', { headers: { cookie } })
    expect(res.status).toBe(200)
    return (
      (await res.json()) as { connections: { id: string; provider: string; username: string | null }[] }
    ).connections
  }

  const unlink = (cookie: string, id: string) =>
    callWith(FED, `/auth/connections/${id}`, { method: 'DELETE', headers: { cookie } })

  it('lists connections; the last way to sign in cannot be removed; unlinking is audited', async () => {
    const account = await federatedAccount()
    const [github] = await list(account.cookie)
    expect(github?.provider).toBe('github')
    expect(github?.username).toBe(account.user.login)
    const refused = await unlink(account.cookie, github?.id ?? '')
    expect(refused.status).toBe(409)
    expect(await identitiesOf('github', String(account.user.id))).toHaveLength(1)

    await connect(account.cookie, 'acme', oidcUser())
    expect(await list(account.cookie)).toHaveLength(2)
    const removed = await unlink(account.cookie, github?.id ?? '')
    expect(removed.status).toBe(204)
    expect(await identitiesOf('github', String(account.user.id))).toHaveLength(0)
    const audit = await testDb().execute(
      sql`select metadata from audit_events where type = 'identity_unlinked' and user_id = ${account.id}`,
    )
    expect(audit.rows).toEqual([{ metadata: { provider: 'github', subject: String(account.user.id) } }])
    const [acme] = await list(account.cookie)
    expect((await unlink(account.cookie, acme?.id ?? '')).status).toBe(409)
  })

  it('an account with a password may remove its only connection', async () => {
    const me = await seedUser({ session: true })
    await connect(me.cookie, 'github', githubUser())
    const [only] = await list(me.cookie)
    expect((await unlink(me.cookie, only?.id ?? '')).status).toBe(204)
    expect(await list(me.cookie)).toHaveLength(0)
  })

  it("another user's connection, or a malformed id, is 404; no session is 401", async () => {
    const account = await federatedAccount()
    const [theirs] = await list(account.cookie)
    const other = await seedUser({ session: true })
    expect((await unlink(other.cookie, theirs?.id ?? '')).status).toBe(404)
    expect((await unlink(other.cookie, 'not-a-uuid')).status).toBe(404)
    expect((await callWith(FED, '/auth/connections')).status).toBe(401)
    expect(await list(account.cookie)).toHaveLength(1)
  })

  it('concurrent unlinks of every connection: all but one succeed, the last stays', async () => {
    for (let round = 0; round < 4; round++) {
      const account = await federatedAccount()
      await connect(account.cookie, 'acme', oidcUser())
      await connect(account.cookie, 'github', githubUser())
      const all = await list(account.cookie)
      expect(all).toHaveLength(3)
      const results = await Promise.all(all.map((c) => unlink(account.cookie, c.id)))
      expect(results.map((r) => r.status).sort()).toEqual([204, 204, 409])
      expect(await list(account.cookie)).toHaveLength(1)
    }
  })
})

describe('allowlist (FEDERATION_ALLOWLIST)', () => {
  const CLOSED = { FEDERATION_ALLOWLIST: 'true' }

  async function allow(kind: string, value: string) {
    const res = await callWith(FED, '/admin/identity-allowlist', {
      method: 'POST',
      headers: { ...adminHeaders(), 'content-type': 'application/json' },
      body: JSON.stringify({ kind, value }),
    })
    expect(res.status, await res.clone().text()).toBe(201)
    return (await res.json()) as { id: string; kind: string; value: string }
  }

  async function auditOf(type: string, userId: string) {
    const rows = await testDb().execute(
      sql`select metadata from audit_events where type = ${type} and user_id = ${userId}`,
    )
    return rows.rows as { metadata: Record<string, unknown> }[]
  }

  it('a miss creates a pending account (fully linked, no session) and shows the waiting page; approval lets it in', async () => {
    const email = uniqueEmail()
    const user = githubUser(email)
    const res = await signIn('github', user, CLOSED)
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('waiting for approval')
    expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    const [row] = await usersWithEmail(email)
    expect(row?.status).toBe('pending')
    expect((await identitiesOf('github', String(user.id)))[0]?.userId).toBe(row?.id)
    expect((await auditOf('user_registered', row?.id ?? ''))[0]?.metadata.allowlist).toBe('miss')
    // Signing in again while pending: the same page, still no session.
    const again = await signIn('github', user, CLOSED)
    expect(again.status).toBe(403)
    const approve = await callWith(FED, `/admin/users/${row?.id}/approve`, {
      method: 'POST',
      headers: adminHeaders(),
    })
    expect(approve.status).toBe(200)
    const approved = await signIn('github', user, CLOSED)
    expect(approved.status).toBe(303)
    expect((await sessionUser(approved)).id).toBe(row?.id)
  })

  it('each kind of entry lets a new account in active: GitHub id, login, organisation, email, email domain', async () => {
    const domain = `${unique('corp')}.example`
    const byId = githubUser()
    const byLogin = githubUser()
    const byOrg = githubUser(uniqueEmail(), { orgs: [unique('Org')] })
    const byEmail = githubUser()
    const byDomain = oidcUser(`someone@${domain.toUpperCase()}`)
    await allow('github_id', String(byId.id))
    await allow('github_login', (byLogin.login ?? '').toUpperCase())
    await allow('github_org', byOrg.orgs?.[0] ?? '')
    await allow('email', (byEmail.emails?.[1]?.email ?? '').toUpperCase())
    await allow('email_domain', `@${domain}`)
    for (const [provider, user, kind] of [
      ['github', byId, 'github_id'],
      ['github', byLogin, 'github_login'],
      ['github', byOrg, 'github_org'],
      ['github', byEmail, 'email'],
      ['acme', byDomain, 'email_domain'],
    ] as const) {
      const res = await signIn(provider, user, CLOSED)
      expect(res.status, kind).toBe(303)
      const me = await sessionUser(res)
      expect((await auditOf('user_registered', me.id))[0]?.metadata.allowlist, kind).toBe(kind)
    }
  })

  it('the admin API validates, refuses duplicates, lists, removes, and audits each change', async () => {
    const post = (body: unknown, headers = adminHeaders()) =>
      callWith(FED, '/admin/identity-allowlist', {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    expect((await post({ kind: 'github_id', value: 'octocat' })).status).toBe(400)
    expect((await post({ kind: 'email_domain', value: 'not a domain' })).status).toBe(400)
    expect((await post({ kind: 'wizard', value: 'x' })).status).toBe(400)
    expect((await post({ kind: 'email', value: 'a@b.example' }, {})).status).toBe(401)
    const login = unique('who')
    const entry = await allow('github_login', login)
    expect((await post({ kind: 'github_login', value: login.toUpperCase() })).status).toBe(409)
    const list = await callWith(FED, '/admin/identity-allowlist', { headers: adminHeaders() })
    const { entries } = (await list.json()) as { entries: { id: string; value: string }[] }
    expect(entries.filter((e) => e.value === login)).toHaveLength(1)
    const del = () =>
      callWith(FED, `/admin/identity-allowlist/${entry.id}`, { method: 'DELETE', headers: adminHeaders() })
    expect((await del()).status).toBe(204)
    expect((await del()).status).toBe(404)
    const audit = await testDb().execute(
      sql`select type from audit_events where metadata->>'id' = ${entry.id} order by created_at, type`,
    )
    expect(audit.rows.map((r) => (r as { type: string }).type).sort()).toEqual([
      'allowlist_entry_added',
      'allowlist_entry_removed',
    ])
  })
})

describe('GET /connections/{provider}/token', () => {
  async function issued(login: string) {
    const res = await fetch(`${fake}/__issued?login=${encodeURIComponent(login)}`)
    return (await res.json()) as { refreshes: number; tokens: string[] }
  }

  it('20 concurrent requests for an expired token: one upstream refresh, all get the new token', async () => {
    const user = githubUser(uniqueEmail(), { expires_in: 30 }) // inside the refresh skew: expired
    const { accessToken } = await accountWithToken(user)
    const answers = await Promise.all(Array.from({ length: 20 }, () => upstreamToken(accessToken)))
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200))
    const bodies = (await Promise.all(answers.map((r) => r.json()))) as {
      access_token: string
      expires_at: string
    }[]
    const tokens = new Set(bodies.map((b) => b.access_token))
    expect(tokens.size).toBe(1)
    const log = await issued(user.login ?? '')
    expect(log.refreshes).toBe(1)
    expect(log.tokens).toContain([...tokens][0])
    expect(new Date(bodies[0]?.expires_at ?? 0).getTime()).toBeGreaterThan(Date.now() + 3_600_000)
  })

  it('no raw upstream token is in any column: only AES-GCM ciphertext under a key id', async () => {
    const user = githubUser(uniqueEmail(), { expires_in: 30 })
    const { accessToken } = await accountWithToken(user)
    expect((await upstreamToken(accessToken)).status).toBe(200)
    const log = await issued(user.login ?? '')
    expect(log.tokens.length).toBeGreaterThanOrEqual(4)
    for (const raw of log.tokens) {
      for (const table of ['external_identities', 'audit_events', 'users', 'sessions']) {
        const found = await testDb().execute(
          sql`select count(*)::int as n from ${sql.identifier(table)} t where t::text like ${`%${raw}%`}`,
        )
        expect((found.rows[0] as { n: number }).n, `${table} holds a raw token`).toBe(0)
      }
    }
    const [row] = await identitiesOf('github', String(user.id))
    expect(row?.accessTokenSealed).toMatch(/^k1:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    expect(row?.refreshTokenSealed).toMatch(/^k1:/)
  })

  it('a token that does not expire (OAuth App) is returned as is, with no refresh', async () => {
    const user = githubUser()
    const { accessToken } = await accountWithToken(user)
    const res = await upstreamToken(accessToken)
    expect(res.status).toBe(200)
    const body = (await res.json()) as { access_token: string; expires_at: string | null }
    expect(body.expires_at).toBeNull()
    const log = await issued(user.login ?? '')
    expect(log.tokens).toEqual([body.access_token])
    expect(log.refreshes).toBe(0)
  })

  it('a refused refresh marks the connection broken and deletes its tokens', async () => {
    const user = githubUser(uniqueEmail(), { expires_in: 30, behavior: 'refresh_refused' })
    const { accessToken } = await accountWithToken(user)
    const res = await upstreamToken(accessToken)
    expect(res.status).toBe(409)
    expect(((await res.json()) as { detail: string }).detail).toContain('broken')
    const [row] = await identitiesOf('github', String(user.id))
    expect(row?.brokenAt).not.toBeNull()
    expect(row?.accessTokenSealed).toBeNull()
    expect(row?.refreshTokenSealed).toBeNull()
    expect((await upstreamToken(accessToken)).status).toBe(409)
    expect((await issued(user.login ?? '')).refreshes).toBe(1)
  })

  it('needs an access token with connections:read; unlinking deletes the stored tokens', async () => {
    const user = githubUser()
    const narrow = await accountWithToken(user, { scope: 'openid' })
    expect((await upstreamToken(narrow.accessToken)).status).toBe(403)
    const session = await callWith(FED, '/connections/github/token', { headers: { cookie: narrow.cookie } })
    expect(session.status).toBe(401)
    const other = await accountWithToken(githubUser())
    expect((await upstreamToken(other.accessToken, 'acme')).status).toBe(404)
    expect((await upstreamToken(other.accessToken, 'nope')).status).toBe(404)
  })

  it('suspension deletes the stored upstream tokens (the link stays for reinstatement)', async () => {
    const user = githubUser()
    const account = await accountWithToken(user)
    expect((await upstreamToken(account.accessToken)).status).toBe(200)
    const suspend = await callWith(FED, `/admin/users/${account.userId}/suspend`, {
      method: 'POST',
      headers: adminHeaders(),
    })
    expect(suspend.status).toBe(200)
    const [row] = await identitiesOf('github', String(user.id))
    expect(row?.accessTokenSealed).toBeNull()
    expect(row?.refreshTokenSealed).toBeNull()
    expect(row?.userId).toBe(account.userId)
  })
})
