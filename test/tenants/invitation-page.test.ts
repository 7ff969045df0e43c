import { sql } from 'drizzle-orm'
import { describe, expect, inject, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb } from '../helpers/db'
import { csrfOf, type SeededUser, seedUser } from '../helpers/oauth'
import { until } from '../helpers/poll'
import { call, callWith, describeResponse } from '../helpers/worker'
import { jsonRequest, rolesOf, seedTenant } from './fixtures'

const fakeMailUrl = inject('fakeMailUrl')
const MAIL = {
  MAIL_PROVIDER: 'webhook',
  MAIL_WEBHOOK_URL: `${fakeMailUrl}/webhook`,
  MAIL_WEBHOOK_SECRET: 'h10-invitation-page-secret-0123456789abcdef',
}

/** Invites `email` to a fresh tenant and returns the tenant and the link's path from the mail. */
async function invited(email: string, role = 'member') {
  const t = await seedTenant()
  const res = await callWith(
    MAIL,
    `/tenants/${t.id}/invitations`,
    jsonRequest('POST', { email, role }, t.owner.cookie),
  )
  expect(res.status, await describeResponse(res)).toBe(201)
  const link = await until(async () => {
    const mail = await fetch(`${fakeMailUrl}/__requests?to=${encodeURIComponent(email)}`)
    const received = (await mail.json()) as { body: string }[]
    return received
      .map(
        (r) => /https?:\/\/[^\s"<>]+\/tenants\/invitations\/accept\?token=[A-Za-z0-9_-]+/.exec(r.body)?.[0],
      )
      .find((m) => m !== undefined)
  })
  const url = new URL(link)
  return { t, path: `${url.pathname}${url.search}`, token: url.searchParams.get('token') ?? '' }
}

async function open(path: string, cookie?: string) {
  const res = await call(path, cookie === undefined ? {} : { headers: { cookie } })
  return { res, html: await res.text() }
}

function submit(token: string, user: SeededUser, csrf: { field: string; cookie: string } | undefined) {
  return call('/tenants/invitations/accept', {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: csrf === undefined ? user.cookie : `${user.cookie}; portcullis_csrf=${csrf.cookie}`,
    },
    body: new URLSearchParams({
      token,
      ...(csrf === undefined ? {} : { csrf_token: csrf.field }),
    }).toString(),
  })
}

describe('the invitation page (the mail link in a browser)', () => {
  it('signed out → sign-in that comes back; signed in as the invited address → Accept (CSRF form) → done, once', async () => {
    const invitee = await seedUser()
    const { t, path, token } = await invited(invitee.email, 'admin')
    expect(path).toBe(`/tenants/invitations/accept?token=${token}`)

    const out = await open(path)
    expect(out.res.status).toBe(200)
    expect(out.res.headers.get('content-type')).toContain('text/html')
    expect(out.res.headers.get('x-frame-options')).toBe('DENY')
    expect(out.res.headers.get('cache-control')).toBe('no-store')
    expect(out.html).toContain(`Join ${t.slug}`)
    expect(out.html).toContain(invitee.email)
    expect(out.html).toContain('data-testid="invitation-sign-in"')
    expect(out.html).toContain('action="/login"')
    expect(out.html).toContain(`name="return_to" value="${path}"`)
    expect(out.html).not.toContain('invitation-accept')

    const signedIn = await open(path, invitee.cookie)
    expect(signedIn.res.status).toBe(200)
    expect(signedIn.html).toContain('data-testid="invitation-accept"')
    const csrf = csrfOf(signedIn.res, signedIn.html)
    expect(csrf.field).not.toBe('')

    // Without the CSRF token: refused, nothing changes.
    const forged = await submit(token, invitee, undefined)
    expect(forged.status).toBe(403)
    expect((await rolesOf(t.id))[invitee.id]).toBeUndefined()

    const done = await submit(token, invitee, csrf)
    const html = await done.text()
    expect(done.status, html).toBe(200)
    expect(html).toContain('data-testid="invitation-done"')
    expect(html).toContain(`You are now an admin of ${t.slug}`)
    expect((await rolesOf(t.id))[invitee.id]).toBe('admin')
    const audit = await queryRows(
      testDb(),
      sql`select type from audit_events where tenant_id = ${t.id}::uuid and type = 'invitation_accepted'`,
    )
    expect(audit).toHaveLength(1)

    // The link again: already accepted, and a second submit changes nothing.
    const again = await open(path, invitee.cookie)
    expect(again.res.status).toBe(200)
    expect(again.html).toContain('Already accepted')
    const twice = await submit(token, invitee, csrf)
    expect(await twice.text()).toContain('Already accepted')
    expect(
      await queryRows(
        testDb(),
        sql`select 1 from audit_events where tenant_id = ${t.id}::uuid and type = 'invitation_accepted'`,
      ),
    ).toHaveLength(1)
    // The JSON API on the same path is unchanged: a dead token is 400 invalid_token.
    const api = await call('/tenants/invitations/accept', jsonRequest('POST', { token }, invitee.cookie))
    expect(api.status).toBe(400)
    expect(((await api.json()) as { code: string }).code).toBe('invalid_token')
  })

  it('another account sees whom it is for (403) and cannot accept it; a signed-out submit goes to sign-in', async () => {
    const invitee = await seedUser()
    const intruder = await seedUser()
    const { t, path, token } = await invited(invitee.email)
    const page = await open(path, intruder.cookie)
    expect(page.res.status).toBe(403)
    expect(page.html).toContain('data-testid="invitation-wrong-account"')
    expect(page.html).toContain(invitee.email)
    expect(page.html).toContain(intruder.email)
    expect(page.html).not.toContain('invitation-accept')
    // Even with a valid CSRF token of its own browser (from the invitee-less /account page).
    const account = await open('/account', intruder.cookie)
    const csrf = csrfOf(account.res, account.html)
    const res = await submit(token, intruder, csrf)
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('data-testid="invitation-wrong-account"')
    expect((await rolesOf(t.id))[intruder.id]).toBeUndefined()

    const signedOut = await call('/tenants/invitations/accept', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }).toString(),
    })
    expect(signedOut.status).toBe(303)
    expect(signedOut.headers.get('location')).toBe(`/login?return_to=${encodeURIComponent(path)}`)
  })

  it('expired, used by someone else, unknown or malformed: a clear page, nothing to accept', async () => {
    const invitee = await seedUser()
    const { t, path } = await invited(invitee.email)
    await testDb().execute(
      sql`update tenant_invitations set expires_at = now() - interval '1 second' where tenant_id = ${t.id}::uuid`,
    )
    const expired = await open(path, invitee.cookie)
    expect(expired.res.status).toBe(400)
    expect(expired.html).toContain('Invitation expired')
    expect(expired.html).not.toContain('invitation-accept')

    const other = await seedUser()
    const used = await invited(other.email)
    const accepted = await call(
      '/tenants/invitations/accept',
      jsonRequest('POST', { token: used.token }, other.cookie),
    )
    expect(accepted.status).toBe(200)
    const usedPage = await open(used.path, invitee.cookie)
    expect(usedPage.res.status).toBe(400)
    expect(usedPage.html).toContain('Invitation already used')

    for (const bad of ['?token=unknown-token', '?token=%3Cscript%3E', '']) {
      const page = await open(`/tenants/invitations/accept${bad}`)
      expect(page.res.status, bad).toBe(400)
      expect(page.html).toContain('Invitation not found')
      expect(page.html).not.toContain('<script>')
    }
  })

  it('escapes the tenant name and the invited address', async () => {
    const invitee = await seedUser()
    const { t, path } = await invited(invitee.email)
    await testDb().execute(
      sql`update tenants set name = '<img src=x onerror=alert(1)>' where id = ${t.id}::uuid`,
    )
    const page = await open(path, invitee.cookie)
    expect(page.res.status).toBe(200)
    expect(page.html).not.toContain('<img src=x')
    expect(page.html).toContain('&lt;img src=x onerror=alert(1)&gt;')
  })
})
