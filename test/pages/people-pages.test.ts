import { and, eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, emailOutbox, users } from '../../db/schema'
import {
  renderEmailChangedNotice,
  renderEmailChangeEmail,
  renderInvitationEmail,
  renderPasswordResetEmail,
  renderVerificationEmail,
} from '../../functions/email/templates'
import { relativeTime } from '../../functions/pages/words'
import { STRONG_PASSWORD, seedUser, sessionCookieOf, uniqueEmail } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import {
  adminClient,
  authorize,
  codeRequest,
  csrfOf,
  DEVICE_GRANT,
  deviceStart,
  pkce,
  postForm,
  webClient,
} from '../helpers/oauth'
import { call, callWith, describeResponse } from '../helpers/worker'

type Vars = Record<string, string | undefined>

/** Opens a form page and returns what a browser would post back with it. */
async function open(path: string, vars?: Vars) {
  const res = vars === undefined ? await call(path) : await callWith(vars, path)
  const page = await res.text()
  expect(res.status, page).toBe(200)
  const csrf = csrfOf(res, page)
  return { res, page, csrf }
}

async function post(path: string, fields: Record<string, string>, cookie: string, vars?: Vars) {
  const init: RequestInit = {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `portcullis_csrf=${cookie}` },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  }
  return vars === undefined ? call(path, init) : callWith(vars, path, init)
}

/** Every sign-up here comes from a new address, so SIGNUP_MAX_PER_IP never interferes. */
function anIp(): string {
  return `198.51.100.${Math.floor(Math.random() * 250) + 1}`
}

async function signUp(fields: Record<string, string>, vars?: Vars) {
  const { csrf } = await open('/signup', vars)
  return post('/signup', { csrf_token: csrf.field, ...fields }, csrf.cookie, {
    ...vars,
    SIGNUP_MAX_PER_IP: '1000',
  })
}

describe('/login words', () => {
  it('links to forgot-password and sign-up instead of naming an API', async () => {
    const { page } = await open('/login?return_to=%2Foauth%2Fauthorize%3Fa%3D1')
    expect(page).not.toContain('POST /auth/password-reset')
    expect(page).toContain('href="/forgot-password"')
    expect(page).toContain('href="/signup?return_to=%2Foauth%2Fauthorize%3Fa%3D1"')
  })
})

describe('/signup', () => {
  it('serves a CSRF-protected form that refuses framing', async () => {
    const { res, page, csrf } = await open('/signup')
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(page).toContain('name="email"')
    expect(page).toContain('autocomplete="new-password"')
    expect(csrf.field).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('refuses a post without the CSRF token and creates nothing', async () => {
    const email = uniqueEmail()
    const res = await post('/signup', { email, password: STRONG_PASSWORD, csrf_token: 'x' }, 'y')
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('This form expired')
    const rows = await testDb().select().from(users).where(eq(users.email, email))
    expect(rows).toHaveLength(0)
  })

  it('creates an account, signs it in (303 to return_to) and audits user_registered', async () => {
    const email = uniqueEmail()
    const res = await signUp({
      email,
      password: STRONG_PASSWORD,
      display_name: 'Ada',
      return_to: '/?welcome=1',
    })
    expect(res.status, await describeResponse(res)).toBe(303)
    expect(res.headers.get('location')).toBe('/?welcome=1')
    const session = sessionCookieOf(res)
    expect(session).toBeDefined()
    const home = await call('/', { headers: { cookie: `portcullis_session=${session}` } })
    expect(await home.text()).toContain('Welcome, Ada')
    const [user] = await testDb().select().from(users).where(eq(users.email, email))
    expect(user?.status).toBe('active')
    const audit = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.type, 'user_registered'), eq(auditEvents.userId, user?.id ?? '')))
    expect(audit).toHaveLength(1)
    const mail = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, email))
    expect(mail[0]?.template).toBe('verify_email')
  })

  it('says "check your email" and signs nobody in under REQUIRE_EMAIL_VERIFICATION', async () => {
    const email = uniqueEmail()
    const res = await signUp({ email, password: STRONG_PASSWORD }, { REQUIRE_EMAIL_VERIFICATION: 'true' })
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(page).toContain('Check your email')
    expect(page).toContain(email)
    expect(sessionCookieOf(res)).toBeUndefined()
  })

  it('says the account waits for approval under REQUIRE_APPROVAL (and it is pending)', async () => {
    const email = uniqueEmail()
    const res = await signUp({ email, password: STRONG_PASSWORD }, { REQUIRE_APPROVAL: 'true' })
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(page).toContain('waiting for approval')
    expect(sessionCookieOf(res)).toBeUndefined()
    const [user] = await testDb().select().from(users).where(eq(users.email, email))
    expect(user?.status).toBe('pending')
  })

  it('shows the form again for a weak password, a taken address and a bad email, escaping what was typed', async () => {
    const weak = await signUp({ email: uniqueEmail(), password: 'short' })
    expect(weak.status).toBe(400)
    expect(await weak.text()).toContain('at least')
    const existing = await seedUser()
    const taken = await signUp({ email: existing.email, password: STRONG_PASSWORD })
    expect(taken.status).toBe(409)
    expect(await taken.text()).toContain('already exists')
    const bad = await signUp({ email: '"><script>alert(1)</script>', password: STRONG_PASSWORD })
    const page = await bad.text()
    expect(bad.status).toBe(400)
    expect(page).toContain('Enter a valid email address')
    expect(page).not.toContain('<script>alert(1)</script>')
    expect(page).toContain('&lt;script&gt;')
  })

  it('counts sign-ups per IP like the API (a 429 page over SIGNUP_MAX_PER_IP)', async () => {
    const ip = anIp()
    const vars = { SIGNUP_MAX_PER_IP: '1' }
    const attempt = async () => {
      const { csrf } = await open('/signup', vars)
      return callWith(vars, '/signup', {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          cookie: `portcullis_csrf=${csrf.cookie}`,
          'cf-connecting-ip': ip,
        },
        body: new URLSearchParams({
          csrf_token: csrf.field,
          email: uniqueEmail(),
          password: STRONG_PASSWORD,
        }).toString(),
        redirect: 'manual',
      })
    }
    const first = await attempt()
    expect(first.status, await describeResponse(first)).toBe(303)
    const second = await attempt()
    expect(second.status).toBe(429)
    expect(second.headers.get('retry-after')).toMatch(/^\d+$/)
    expect(await second.text()).toContain('Too many sign-ups')
  })
})

describe('/signup/resend and the unverified sign-in', () => {
  it('offers a new link when sign-in needs a confirmed address, and sends it only to an unverified account', async () => {
    const vars = { REQUIRE_EMAIL_VERIFICATION: 'true' }
    const email = uniqueEmail()
    const created = await signUp({ email, password: STRONG_PASSWORD }, vars)
    expect(created.status).toBe(200)
    const login = await open('/login', vars)
    const refused = await post(
      '/login',
      { csrf_token: login.csrf.field, email, password: STRONG_PASSWORD },
      login.csrf.cookie,
      vars,
    )
    const refusedPage = await refused.text()
    expect(refused.status).toBe(403)
    expect(refusedPage).toContain('href="/signup/resend"')

    await testDb()
      .update(emailOutbox)
      .set({ createdAt: new Date(0) })
      .where(eq(emailOutbox.toAddress, email))
    const form = await open('/signup/resend', vars)
    // The per-user cooldown (one message a minute) still applies: move the first token back.
    await testDb().execute(
      sql`update email_verifications set created_at = now() - interval '2 minutes' where email = ${email}`,
    )
    const sent = await post('/signup/resend', { csrf_token: form.csrf.field, email }, form.csrf.cookie, vars)
    const sentPage = await sent.text()
    expect(sent.status, sentPage).toBe(200)
    const mail = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, email))
    expect(mail.filter((m) => m.template === 'verify_email')).toHaveLength(2)

    const verified = await seedUser()
    const other = await post(
      '/signup/resend',
      { csrf_token: form.csrf.field, email: verified.email },
      form.csrf.cookie,
      vars,
    )
    expect((await other.text()).replace(verified.email, email)).toBe(sentPage)
    const none = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, verified.email))
    expect(none).toHaveLength(0)
  })
})

describe('/forgot-password', () => {
  it('queues a reset link for an account and answers the same page for an unknown address', async () => {
    const user = await seedUser()
    const { csrf } = await open('/forgot-password')
    const known = await post('/forgot-password', { csrf_token: csrf.field, email: user.email }, csrf.cookie)
    const knownPage = await known.text()
    expect(known.status, knownPage).toBe(200)
    expect(knownPage).toContain('expires in 1 hour')
    const unknownEmail = uniqueEmail()
    const unknown = await post(
      '/forgot-password',
      { csrf_token: csrf.field, email: unknownEmail },
      csrf.cookie,
    )
    const unknownPage = await unknown.text()
    expect(unknown.status).toBe(200)
    expect(unknownPage.replace(unknownEmail, user.email)).toBe(knownPage)
    const mail = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, user.email))
    expect(mail.map((m) => m.template)).toContain('password_reset')
    const none = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, unknownEmail))
    expect(none).toHaveLength(0)
  })

  it('refuses a post without the CSRF token and sends nothing', async () => {
    const user = await seedUser()
    const res = await post('/forgot-password', { csrf_token: 'nope', email: user.email }, 'nope')
    expect(res.status).toBe(403)
    const mail = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, user.email))
    expect(mail).toHaveLength(0)
  })
})

describe('browser error page for /oauth/authorize', () => {
  it('shows HTML to a browser and JSON to an API client for an unknown client', async () => {
    const path =
      '/oauth/authorize?client_id=no-such-client&response_type=code&redirect_uri=https%3A%2F%2Fevil.example%2Fcb'
    const browser = await call(path, { headers: { accept: 'text/html,application/xhtml+xml' } })
    expect(browser.status).toBe(400)
    expect(browser.headers.get('content-type')).toMatch(/^text\/html/)
    expect(browser.headers.get('location')).toBeNull()
    const page = await browser.text()
    expect(page).toContain('This sign-in link does not work')
    expect(page).not.toContain('evil.example')
    const api = await call(path, { headers: { accept: 'application/json' } })
    expect(api.status).toBe(400)
    expect(api.headers.get('content-type')).toMatch(/json/)
    expect(((await api.json()) as { error: string }).error).toBe('invalid_request')
  })
})

describe('branding', () => {
  it('uses BRAND_* on pages and refuses an accent colour that is not a hex colour', async () => {
    const vars = {
      BRAND_NAME: 'Acme <Accounts>',
      BRAND_ACCENT_COLOR: '#FF0088',
      BRAND_SUPPORT_EMAIL: 'help@acme.example',
    }
    const res = await callWith(vars, '/login')
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(page).toContain('<title>Sign in · Acme &lt;Accounts&gt;</title>')
    expect(page).toContain('--accent: #ff0088;')
    expect(page).toContain('mailto:help@acme.example')
    expect(page).not.toContain('Portcullis')
    const bad = await callWith({ BRAND_ACCENT_COLOR: 'red;} body{display:none' }, '/login', {
      headers: { accept: 'text/html' },
    })
    expect(bad.status).toBe(500)
    expect(await bad.text()).not.toContain('display:none')
  })

  it('puts the brand in every mail template', () => {
    const brand = {
      name: 'Acme Accounts',
      logoUrl: 'https://acme.example/logo.png',
      accentColor: '#123abc',
      supportEmail: 'help@acme.example',
    }
    const mails = [
      renderVerificationEmail('https://id.acme.example/v?t=1', 86_400, brand),
      renderPasswordResetEmail('https://id.acme.example/r?t=1', 3600, brand),
      renderInvitationEmail('Team', 'member', 'https://id.acme.example/i?t=1', 3600, brand),
      renderEmailChangeEmail('https://id.acme.example/account/email/confirm?token=1', 86_400, brand),
      renderEmailChangedNotice('new@acme.example', brand, 'https://id.acme.example'),
    ]
    for (const mail of mails) {
      expect(mail.text).toContain('Acme Accounts')
      expect(mail.text).toContain('help@acme.example')
      expect(mail.html).toContain('background:#123abc')
      expect(mail.html).toContain('src="https://acme.example/logo.png"')
      expect(`${mail.text}${mail.html}`).not.toContain('Portcullis')
    }
  })
})

describe('words on the consent, device and home pages', () => {
  it('the consent page names the signed-in account and scopes in words', async () => {
    const user = await seedUser({ session: true })
    const client = await webClient()
    const p = await pkce()
    const res = await authorize(
      codeRequest(client, p, {
        scope: 'openid email offline_access',
      }),
      user.cookie,
    )
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(page).toMatch(new RegExp(`data-testid="consent-account">${user.email.replace(/[.+]/g, '\\$&')}<`))
    expect(page).toContain('See your email address')
    expect(page).toContain('Use another account')
  })

  it('the device page lists the requested scopes in words', async () => {
    const user = await seedUser({ session: true })
    const client = await adminClient({
      grant_types: [DEVICE_GRANT, 'refresh_token'],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    })
    const device = await deviceStart(client.client_id)
    const form = await call(`/device?user_code=${encodeURIComponent(device.user_code)}`, {
      headers: { cookie: user.cookie },
    })
    const csrf = csrfOf(form, await form.text())
    const res = await postForm(
      '/device',
      { user_code: device.user_code, csrf_token: csrf.field },
      { cookie: `${user.cookie}; portcullis_csrf=${csrf.cookie}` },
    )
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(page).toContain('<li>Stay signed in (refresh tokens)</li>')
    expect(page).toContain('<li>Know who you are</li>')
    expect(page).not.toContain('offline_access')
  })

  it('the home page says when the session expires in words, not ISO', async () => {
    const user = await seedUser({ session: true })
    const res = await call('/', { headers: { cookie: user.cookie } })
    const page = await res.text()
    expect(page).toMatch(
      /Your session expires\s*<time datetime="[^"]+" title="[^"]+">in (1 hour|\d+ hours|\d+ minutes)<\/time>/,
    )
    expect(page).not.toMatch(/expires \d{4}-/)
  })
})

describe('relativeTime', () => {
  it.each([
    [7200, 'in 2 hours'],
    [90 * 60, 'in 2 hours'],
    [59, 'just now'],
    [-60, '1 minute ago'],
    [-3 * 86_400, '3 days ago'],
    [30 * 86_400, 'in 1 month'],
  ])('%i seconds → %s', (seconds, words) => {
    const now = new Date('2026-01-01T00:00:00Z')
    expect(relativeTime(new Date(now.getTime() + seconds * 1000), now)).toBe(words)
  })
})

describe('form posts to /auth/* from our own pages', () => {
  // Found by the Chromium test: under Referrer-Policy no-referrer the browser sends Origin: null.
  it('accepts Origin: null when Sec-Fetch-Site says same-origin, and refuses it cross-site', async () => {
    const { csrf } = await open('/auth/verify-email?token=not-a-real-token')
    const submit = (fetchSite: string) =>
      call('/auth/verify-email', {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          cookie: `portcullis_csrf=${csrf.cookie}`,
          origin: 'null',
          'sec-fetch-site': fetchSite,
        },
        body: new URLSearchParams({ csrf_token: csrf.field, token: 'not-a-real-token' }).toString(),
      })
    const own = await submit('same-origin')
    expect(own.status).toBe(400)
    expect(await own.text()).toContain('This link no longer works')
    const foreign = await submit('cross-site')
    expect(foreign.status).toBe(403)
    expect(((await foreign.json()) as { code: string }).code).toBe('csrf_failed')
  })
})
