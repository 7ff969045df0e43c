import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, externalIdentities } from '../../db/schema'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { csrfOf } from '../helpers/oauth'
import { callWith } from '../helpers/worker'
import { beginFlow, cookieOf, FED, finish, githubUser, oidcUser, sessionUser, signIn } from './flow'

type Vars = Record<string, string>

async function accountPage(cookie: string, vars: Vars = FED, query = '') {
  const page = await callWith(vars, `/account${query}`, { headers: { cookie } })
  expect(page.status).toBe(200)
  return { page, html: await page.text() }
}

/** A CSRF-checked form POST from /account, as the browser sends it. */
async function accountForm(cookie: string, path: string, fields: Record<string, string>, vars: Vars = FED) {
  const { page, html } = await accountPage(cookie, vars)
  const csrf = csrfOf(page, html)
  return callWith(vars, path, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `${cookie}; portcullis_csrf=${csrf.cookie}`,
    },
    body: new URLSearchParams({ csrf_token: csrf.field, ...fields }).toString(),
  })
}

async function identitiesOfUser(userId: string) {
  return testDb().select().from(externalIdentities).where(sql`${externalIdentities.userId} = ${userId}`)
}

/** A federated-only account (no password) signed up with GitHub: its session cookie and id. */
async function githubAccount() {
  const res = await signIn('github', githubUser(uniqueEmail()))
  expect(res.status).toBe(303)
  const cookie = `portcullis_session=${cookieOf(res, 'portcullis_session')}`
  return { cookie, id: (await sessionUser(res)).id }
}

describe('/account: sign-in providers', () => {
  it('lists the connections with a disconnect form each and a connect button per provider not linked', async () => {
    const me = await githubAccount()
    const { html } = await accountPage(me.cookie)
    expect(html).toContain('Sign-in providers')
    const [identity] = await identitiesOfUser(me.id)
    expect(html).toContain(`action="/account/connections/${identity?.id}/unlink"`)
    expect(html).toContain('<strong>GitHub</strong>')
    expect(html).toContain('value="acme">Connect Acme SSO</button>')
    expect(html).not.toContain('value="github">')
  })

  it('the last way to sign in cannot be disconnected: a notice, and the connection stays', async () => {
    const me = await githubAccount()
    const [identity] = await identitiesOfUser(me.id)
    const res = await accountForm(me.cookie, `/account/connections/${identity?.id}/unlink`, {})
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/account?connection=last#connections')
    expect(await identitiesOfUser(me.id)).toHaveLength(1)
    const { html } = await accountPage(me.cookie, FED, '?connection=last')
    expect(html).toContain('That is your last way to sign in')
  })

  it('connect another through the provider, then disconnect the first (audited)', async () => {
    const me = await githubAccount()
    const connect = await accountForm(me.cookie, '/account/connections/connect', { provider: 'acme' })
    expect(connect.status).toBe(303)
    const start = new URL(connect.headers.get('location') ?? '', 'http://x')
    expect(start.pathname).toBe('/federated/acme/start')
    const returnTo = start.searchParams.get('return_to') ?? ''
    expect(returnTo).toBe('/account?connection=linked#connections')
    const flow = await beginFlow('acme', oidcUser(uniqueEmail()), { returnTo, cookie: me.cookie })
    const back = await finish(flow, {}, `portcullis_federated=${flow.flowCookie}; ${me.cookie}`)
    expect(back.status).toBe(303)
    expect(back.headers.get('location')).toBe(returnTo)
    const both = await identitiesOfUser(me.id)
    expect(both.map((i) => i.provider).sort()).toEqual(['acme', 'github'])
    const github = both.find((i) => i.provider === 'github')
    const removed = await accountForm(me.cookie, `/account/connections/${github?.id}/unlink`, {})
    expect(removed.headers.get('location')).toBe('/account?connection=removed#connections')
    expect((await identitiesOfUser(me.id)).map((i) => i.provider)).toEqual(['acme'])
    const audit = await testDb()
      .select()
      .from(auditEvents)
      .where(sql`${auditEvents.type} = 'identity_unlinked' and ${auditEvents.userId} = ${me.id}`)
    expect(audit).toHaveLength(1)
  })

  it('forms need the CSRF token and a session; another user’s connection is "missing"', async () => {
    const me = await githubAccount()
    const other = await githubAccount()
    const [identity] = await identitiesOfUser(me.id)
    const noCsrf = await callWith(FED, `/account/connections/${identity?.id}/unlink`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: me.cookie },
      body: '',
    })
    expect(noCsrf.status).toBe(403)
    const signedOut = await callWith(FED, `/account/connections/${identity?.id}/unlink`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    })
    expect(signedOut.status).toBe(303)
    expect(signedOut.headers.get('location')).toContain('/login')
    const foreign = await accountForm(other.cookie, `/account/connections/${identity?.id}/unlink`, {})
    expect(foreign.headers.get('location')).toBe('/account?connection=missing#connections')
    expect(await identitiesOfUser(me.id)).toHaveLength(1)
  })

  it('with PASSWORD_LOGIN=off a password is not a way to sign in: its only connection stays', async () => {
    const user = await seedUser({ session: true })
    const flow = await beginFlow('github', githubUser(uniqueEmail()), { cookie: user.cookie })
    expect((await finish(flow, {}, `portcullis_federated=${flow.flowCookie}; ${user.cookie}`)).status).toBe(
      303,
    )
    const [identity] = await identitiesOfUser(user.id)
    const off = { ...FED, PASSWORD_LOGIN: 'off' }
    const refused = await accountForm(user.cookie, `/account/connections/${identity?.id}/unlink`, {}, off)
    expect(refused.headers.get('location')).toBe('/account?connection=last#connections')
    const allowed = await accountForm(user.cookie, `/account/connections/${identity?.id}/unlink`, {})
    expect(allowed.headers.get('location')).toBe('/account?connection=removed#connections')
  })
})
