import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, sessions } from '../../db/schema'
import { timeStep, totpCode } from '../../functions/crypto/totp'
import { type SeededUser, seedUser, sessionCookieOf } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { accountPost, codeAt, firstStep, secondStep, wrongCode } from '../helpers/mfa'
import { authorize, codeRequest, csrfOf, pkce, postForm, webClient } from '../helpers/oauth'
import { call, postJson, useBindings } from '../helpers/worker'

useBindings({ REQUIRE_TWO_FACTOR: 'true' })

/** The HTML sign-in as a browser does it: the page after the password, and its CSRF cookie. */
async function passwordStep(user: SeededUser) {
  const page = await call('/login')
  const csrf = csrfOf(page, await page.text())
  const jar = `portcullis_csrf=${csrf.cookie}`
  const res = await postForm(
    '/login',
    { csrf_token: csrf.field, email: user.email, password: user.password, return_to: '/account' },
    { cookie: jar },
  )
  const html = await res.text()
  const next = csrfOf(res, html)
  return {
    res,
    html,
    jar: next.cookie === '' ? jar : `portcullis_csrf=${next.cookie}`,
    csrf: next.field || csrf.field,
  }
}

function enrolPost(jar: string, fields: Record<string, string>) {
  return postForm('/login/enrol', fields, { cookie: jar })
}

async function sessionsOf(userId: string) {
  return testDb().select().from(sessions).where(eq(sessions.userId, userId))
}

describe('REQUIRE_TWO_FACTOR', () => {
  it('sends a user without a factor to enrol before any session, then signs in with pwd+otp+mfa', async () => {
    const user = await seedUser()
    const first = await passwordStep(user)
    expect(first.res.status).toBe(200)
    expect(sessionCookieOf(first.res)).toBeUndefined()
    expect(first.html).toContain('action="/login/enrol"')
    expect(first.html).toMatch(/<svg class="qr"/)
    const mfaToken = /name="mfa_token" value="([^"]+)"/.exec(first.html)?.[1] ?? ''
    const uri = /href="(otpauth:\/\/totp\/[^"]+)"/.exec(first.html)?.[1]?.replace(/&amp;/g, '&') ?? ''
    const secret = new URL(uri).searchParams.get('secret') ?? ''
    expect(secret).toMatch(/^[A-Z2-7]{32}$/)
    const right = await totpCode(secret, timeStep(new Date()))
    const wrong = await enrolPost(first.jar, {
      csrf_token: first.csrf,
      mfa_token: mfaToken,
      code: await wrongCode(secret),
      return_to: '/account',
    })
    expect(wrong.status).toBe(400)
    expect(sessionCookieOf(wrong)).toBeUndefined()
    expect(await sessionsOf(user.id)).toHaveLength(0)
    // Without the CSRF token nothing happens.
    const forged = await enrolPost('', { mfa_token: mfaToken, code: right, return_to: '/account' })
    expect(sessionCookieOf(forged)).toBeUndefined()

    const done = await enrolPost(first.jar, {
      csrf_token: first.csrf,
      mfa_token: mfaToken,
      code: right,
      return_to: '/account',
    })
    const page = await done.text()
    expect(done.status, page).toBe(200)
    expect(sessionCookieOf(done)).toBeDefined()
    expect([...page.matchAll(/<li><code>[a-z2-7]{5}-[a-z2-7]{5}<\/code><\/li>/g)]).toHaveLength(10)
    expect(page).toContain('href="/account"')
    const [session] = await sessionsOf(user.id)
    expect(session?.amr).toEqual(['pwd', 'otp', 'mfa'])
    const enabled = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'mfa_enabled')))
    expect(enabled).toHaveLength(1)
    // The pending sign-in is spent: it cannot finish twice.
    const again = await enrolPost(first.jar, {
      csrf_token: first.csrf,
      mfa_token: mfaToken,
      code: await codeAt(secret, 1),
      return_to: '/account',
    })
    expect(again.status).toBe(401)
    expect(await sessionsOf(user.id)).toHaveLength(1)
    // From now on the password alone is not enough.
    expect((await secondStep(await firstStep(user), await codeAt(secret, 1))).status).toBe(200)
  })

  it('answers the JSON sign-in of a user without a factor with 403 mfa_enrolment_required and no session', async () => {
    const user = await seedUser()
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status).toBe(403)
    expect(((await res.json()) as { code: string }).code).toBe('mfa_enrolment_required')
    expect(sessionCookieOf(res)).toBeUndefined()
    expect(await sessionsOf(user.id)).toHaveLength(0)
  })

  it('does not let an enrolment-only sign-in finish the second step, nor a second-step one enrol', async () => {
    const user = await seedUser()
    const enrolOnly = await passwordStep(user)
    const token = /name="mfa_token" value="([^"]+)"/.exec(enrolOnly.html)?.[1] ?? ''
    expect((await secondStep(token, '123456')).status).toBe(401)
    const other = await seedUser({ session: true })
    // A two-factor session (the policy treats a one-factor one as signed out on /account).
    await testDb()
      .update(sessions)
      .set({ amr: ['pwd', 'otp', 'mfa'] })
      .where(eq(sessions.userId, other.id))
    const setup = await (await accountPost(other, '/account/totp/start', {})).text()
    const secret = /secret=([A-Z2-7]+)/.exec(setup)?.[1] ?? ''
    expect(
      (await accountPost(other, '/account/totp/confirm', { code: await codeAt(secret, 0) })).status,
    ).toBe(200)
    const secondOnly = await firstStep(other)
    const res = await enrolPost(enrolOnly.jar, {
      csrf_token: enrolOnly.csrf,
      mfa_token: secondOnly,
      code: '123456',
      return_to: '/',
    })
    expect(res.status).toBe(401)
    expect(sessionCookieOf(res)).toBeUndefined()
  })

  it('sends a one-factor session from before the policy back to sign in before authorizing', async () => {
    const client = await webClient({ scope: 'openid', first_party: true })
    const user = await seedUser({ session: true })
    const p = await pkce()
    const res = await authorize(
      codeRequest(client, p, {
        scope: 'openid',
        state: 'st',
      }),
      user.cookie,
    )
    expect(res.status).toBe(302)
    expect(new URL(res.headers.get('location') ?? '', 'http://x').pathname).toBe('/login')
  })

  it('treats a one-factor session as signed out on /account and /device', async () => {
    const user = await seedUser({ session: true })
    const account = await call('/account', { headers: user.headers, redirect: 'manual' })
    expect(account.status).toBe(303)
    expect(account.headers.get('location')).toContain('/login')
    const device = await call('/device', { headers: user.headers, redirect: 'manual' })
    expect(device.status).toBe(302)
    expect(device.headers.get('location')).toContain('/login')
  })
})
