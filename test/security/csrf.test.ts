import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { seedUser as seedAccount } from '../helpers/accounts'
import { randomToken, type SeededUser, seedUser, webClient } from '../helpers/oauth'
import { call, callWith, describeResponse } from '../helpers/worker'

const HTTPS = { ISSUER: 'https://localhost' }
const FORM = 'application/x-www-form-urlencoded'

/** The browser state a page leaves: its CSRF cookie (`name=value`) and the form's token. */
interface FormState {
  csrfCookie: string
  token: string
}

function scrape(res: Response, page: string): FormState {
  const csrfCookie = res.headers.getSetCookie().find((c) => /^(__Host-)?portcullis_csrf=/.test(c)) ?? ''
  return {
    csrfCookie: csrfCookie.split(';')[0] ?? '',
    token: /name="csrf_token" value="([^"]+)"/.exec(page)?.[1] ?? '',
  }
}

async function open(path: string, cookie = ''): Promise<FormState> {
  const res = await call(path, cookie === '' ? {} : { headers: { cookie } })
  expect(res.status, await describeResponse(res)).toBe(200)
  return scrape(res, await res.text())
}

function post(path: string, fields: Record<string, string>, cookie: string): Promise<Response> {
  return call(path, {
    method: 'POST',
    headers: { 'content-type': FORM, cookie },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  })
}

async function expectCsrfRefused(res: Response): Promise<void> {
  expect(res.status, await describeResponse(res)).toBe(403)
  const body = await res.text()
  // The login page re-renders itself ("This form expired"); the other forms answer csrf_failed,
  // which /oauth/consent spells access_denied (still 403).
  expect(body, body).toMatch(/form (has )?expired|"error":"access_denied"/i)
}

/** A code for the device page: a fresh device authorization. */
async function deviceUserCode(): Promise<string> {
  const client = await webClient({
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
    token_endpoint_auth_method: 'none',
    scope: 'openid',
  })
  const res = await call('/oauth/device_authorization', {
    method: 'POST',
    headers: { 'content-type': FORM },
    body: new URLSearchParams({ client_id: client.client_id, scope: 'openid' }).toString(),
  })
  expect(res.status, await describeResponse(res)).toBe(200)
  return ((await res.json()) as { user_code: string }).user_code
}

describe('CSRF tokens are signed and bound (issue 9 item 13)', () => {
  it('refuses a pair an attacker chose: a planted cookie and the same value as the field', async () => {
    const user = await seedAccount()
    const planted = randomToken(32)
    const res = await post(
      '/login',
      { email: user.email, password: user.password, csrf_token: planted },
      `portcullis_csrf=${planted}`,
    )
    await expectCsrfRefused(res)
    expect(res.headers.getSetCookie().some((c) => c.startsWith('portcullis_session='))).toBe(false)
  })

  it('refuses a token issued to another browser', async () => {
    const user = await seedAccount()
    const attacker = await open('/login')
    const victim = await open('/login')
    expect(victim.token).not.toBe(attacker.token)
    const res = await post(
      '/login',
      { email: user.email, password: user.password, csrf_token: attacker.token },
      victim.csrfCookie,
    )
    await expectCsrfRefused(res)
  })

  it('the token is not the cookie: echoing the cookie value back is refused', async () => {
    const user = await seedAccount()
    const page = await open('/login')
    const cookieValue = page.csrfCookie.split('=')[1] ?? ''
    expect(page.token).not.toBe(cookieValue)
    const res = await post(
      '/login',
      { email: user.email, password: user.password, csrf_token: cookieValue },
      page.csrfCookie,
    )
    await expectCsrfRefused(res)
  })

  it('binds the token to the session: a token rendered for one session fails for another', async () => {
    const [alice, mallory] = await Promise.all([seedUser(), seedUser()])
    const userCode = await deviceUserCode()
    const forMallory = await open(`/device?user_code=${encodeURIComponent(userCode)}`, mallory.cookie)
    // Same browser secret, same token, but the victim's session: refused.
    const res = await post(
      '/device',
      { user_code: userCode, decision: 'approve', csrf_token: forMallory.token },
      `${alice.cookie}; ${forMallory.csrfCookie}`,
    )
    await expectCsrfRefused(res)
    // Mallory's own session with the same pair is accepted.
    const own = await post(
      '/device',
      { user_code: userCode, decision: 'deny', csrf_token: forMallory.token },
      `${mallory.cookie}; ${forMallory.csrfCookie}`,
    )
    expect(own.status, await describeResponse(own)).toBe(200)
  })

  it('a token from before sign-in does not work after it (consent, logout)', async () => {
    const user = await seedAccount()
    const login = await open('/login')
    const signedIn = await post(
      '/login',
      { email: user.email, password: user.password, csrf_token: login.token },
      login.csrfCookie,
    )
    expect(signedIn.status, await describeResponse(signedIn)).toBe(303)
    const session = signedIn.headers
      .getSetCookie()
      .find((c) => c.startsWith('portcullis_session='))
      ?.split(';')[0]
    const cookie = `${session}; ${login.csrfCookie}`
    await expectCsrfRefused(await post('/logout', { csrf_token: login.token }, cookie))
    await expectCsrfRefused(
      await post('/oauth/consent', { csrf_token: login.token, decision: 'approve' }, cookie),
    )
    const home = await open('/', cookie)
    expect((await post('/logout', { csrf_token: home.token }, cookie)).status).toBe(303)
  })

  it.each([
    ['/login', { email: 'a@example.test', password: 'x' }],
    ['/logout', {}],
    ['/oauth/consent', { decision: 'approve' }],
    ['/device', { user_code: 'BCDF-GHJK', decision: 'approve' }],
    ['/auth/verify-email', { token: 'x' }],
    ['/auth/password-reset/confirm', { token: 'x', password: 'Correct-Horse-Battery-9' }],
  ])('%s refuses a well-formed token from another browser', async (path, fields) => {
    const user = await seedUser()
    const other = await open('/login')
    const mine = await open('/login')
    const res = await post(path, { ...fields, csrf_token: other.token }, `${user.cookie}; ${mine.csrfCookie}`)
    await expectCsrfRefused(res)
  })

  it('rejects a token with a flipped character, and accepts the untouched one', async () => {
    const user: SeededUser = await seedUser()
    const home = await open('/', user.cookie)
    const cookie = `${user.cookie}; ${home.csrfCookie}`
    // The first character: the last one of 43 carries two bits the decoder ignores.
    const first = home.token.startsWith('A') ? 'B' : 'A'
    await expectCsrfRefused(await post('/logout', { csrf_token: `${first}${home.token.slice(1)}` }, cookie))
    expect((await post('/logout', { csrf_token: home.token }, cookie)).status).toBe(303)
  })

  it('tokens signed under the previous MASTER_KEY still verify after a rotation; a foreign key’s do not', async () => {
    const oldKey = env.MASTER_KEY ?? ''
    const newKey = `k2:${randomToken(32)}`
    const user = await seedUser()
    const page = await callWith({ MASTER_KEY: oldKey }, '/', { headers: { cookie: user.cookie } })
    const state = scrape(page, await page.text())
    const cookie = `${user.cookie}; ${state.csrfCookie}`
    const foreign = await callWith({ MASTER_KEY: newKey }, '/logout', {
      method: 'POST',
      headers: { 'content-type': FORM, cookie },
      body: new URLSearchParams({ csrf_token: state.token }).toString(),
      redirect: 'manual',
    })
    await expectCsrfRefused(foreign)
    const rotated = await callWith({ MASTER_KEY: `${newKey},${oldKey}` }, '/logout', {
      method: 'POST',
      headers: { 'content-type': FORM, cookie },
      body: new URLSearchParams({ csrf_token: state.token }).toString(),
      redirect: 'manual',
    })
    expect(rotated.status, await describeResponse(rotated)).toBe(303)
  })
})

describe('__Host- cookies with an https issuer (issue 9 item 13)', () => {
  it('names the CSRF and session cookies __Host-, Secure, Path=/, no Domain', async () => {
    const user = await seedAccount()
    const page = await callWith(HTTPS, '/login')
    const setCsrf = page.headers.getSetCookie().find((c) => c.startsWith('__Host-portcullis_csrf='))
    expect(setCsrf, page.headers.getSetCookie().join('\n')).toBeDefined()
    expect(setCsrf).toMatch(/; Secure/i)
    expect(setCsrf).toMatch(/; Path=\/(;|$)/)
    expect(setCsrf).not.toMatch(/Domain=/i)
    const state = scrape(page, await page.text())
    const res = await callWith(HTTPS, '/login', {
      method: 'POST',
      headers: { 'content-type': FORM, cookie: state.csrfCookie },
      body: new URLSearchParams({
        email: user.email,
        password: user.password,
        csrf_token: state.token,
      }).toString(),
      redirect: 'manual',
    })
    expect(res.status, await describeResponse(res)).toBe(303)
    const setSession = res.headers.getSetCookie().find((c) => c.startsWith('__Host-portcullis_session='))
    expect(setSession, res.headers.getSetCookie().join('\n')).toBeDefined()
    expect(setSession).toMatch(/; Secure/i)
    expect(setSession).toMatch(/; Path=\/(;|$)/)
    expect(setSession).not.toMatch(/Domain=/i)
    expect(res.headers.getSetCookie().some((c) => c.startsWith('portcullis_session='))).toBe(false)

    const token = setSession?.split(';')[0]?.split('=')[1] ?? ''
    const withHost = await callWith(HTTPS, '/auth/session', {
      headers: { cookie: `__Host-portcullis_session=${token}` },
    })
    expect(withHost.status, await describeResponse(withHost)).toBe(200)
    // An unprefixed cookie (which a sibling subdomain could have set) is not the session.
    const plain = await callWith(HTTPS, '/auth/session', {
      headers: { cookie: `portcullis_session=${token}` },
    })
    expect(plain.status).toBe(401)
  })

  it('documents the __Host- session cookie in OpenAPI', async () => {
    const res = await callWith(HTTPS, '/openapi.json')
    const doc = (await res.json()) as { components: { securitySchemes: { sessionCookie: { name: string } } } }
    expect(doc.components.securitySchemes.sessionCookie.name).toBe('__Host-portcullis_session')
  })

  it('signs out with the __Host- session through the landing page form', async () => {
    const user = await seedUser()
    const cookie = user.cookie.replace('portcullis_session=', '__Host-portcullis_session=')
    const home = await callWith(HTTPS, '/', { headers: { cookie } })
    const state = scrape(home, await home.text())
    expect(state.csrfCookie.startsWith('__Host-portcullis_csrf=')).toBe(true)
    const out = await callWith(HTTPS, '/logout', {
      method: 'POST',
      headers: { 'content-type': FORM, cookie: `${cookie}; ${state.csrfCookie}` },
      body: new URLSearchParams({ csrf_token: state.token }).toString(),
      redirect: 'manual',
    })
    expect(out.status, await describeResponse(out)).toBe(303)
    const cleared = out.headers.getSetCookie().find((c) => c.startsWith('__Host-portcullis_session='))
    expect(cleared).toMatch(/Max-Age=0/i)
  })
})
