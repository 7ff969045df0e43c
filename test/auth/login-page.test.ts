import { describe, expect, it } from 'vitest'
import { seedUser, sessionCookieOf } from '../helpers/accounts'
import { call, describeResponse } from '../helpers/worker'

/** GET /login; the CSRF cookie and token a browser would hold. */
async function openLogin(returnTo?: string) {
  const res = await call(
    `/login${returnTo === undefined ? '' : `?return_to=${encodeURIComponent(returnTo)}`}`,
  )
  expect(res.status).toBe(200)
  const page = await res.text()
  const csrfCookie =
    res.headers
      .getSetCookie()
      .find((c) => c.startsWith('portcullis_csrf='))
      ?.split(';')[0] ?? ''
  const token = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1] ?? ''
  const hiddenReturnTo = /name="return_to" value="([^"]*)"/.exec(page)?.[1]
  return { res, page, csrfCookie, token, hiddenReturnTo }
}

function submit(fields: Record<string, string>, cookie: string) {
  return call('/login', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
    body: new URLSearchParams(fields).toString(),
    redirect: 'manual',
  })
}

describe('/login', () => {
  it('serves a form with email, password, return_to and csrf_token that refuses framing', async () => {
    const { res, page, token, hiddenReturnTo } = await openLogin('/oauth/authorize?client_id=x&state=y')
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
    expect(page).toContain('name="email"')
    expect(page).toContain('name="password"')
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(hiddenReturnTo).toBe('/oauth/authorize?client_id=x&amp;state=y')
  })

  it('signs in and redirects (303) to a same-origin return_to with a session', async () => {
    const user = await seedUser()
    const { csrfCookie, token } = await openLogin()
    const res = await submit(
      {
        email: user.email,
        password: user.password,
        csrf_token: token,
        return_to: '/oauth/authorize?a=1&b=2',
      },
      csrfCookie,
    )
    expect(res.status, await describeResponse(res)).toBe(303)
    expect(res.headers.get('location')).toBe('/oauth/authorize?a=1&b=2')
    const session = sessionCookieOf(res)
    expect(session).toBeDefined()
    const home = await call('/', { headers: { cookie: `portcullis_session=${session}` } })
    expect(await home.text()).toContain(user.email)
  })

  it.each([
    'https://evil.example/steal',
    '//evil.example/steal',
    '/\\evil.example',
    'javascript:alert(1)',
    '/%0d%0aSet-Cookie:x',
  ])('never follows return_to %s off the origin', async (returnTo) => {
    const user = await seedUser()
    const { csrfCookie, token } = await openLogin()
    const res = await submit(
      { email: user.email, password: user.password, csrf_token: token, return_to: returnTo },
      csrfCookie,
    )
    expect(res.status).toBe(303)
    const location = res.headers.get('location') ?? ''
    expect(location.startsWith('/')).toBe(true)
    expect(location.startsWith('//')).toBe(false)
    expect(new URL(location, 'http://portcullis.test').origin).toBe('http://portcullis.test')
  })

  it('refuses a post without the CSRF pair, and signs nobody in', async () => {
    const user = await seedUser()
    const { token } = await openLogin()
    const noCookie = await submit({ email: user.email, password: user.password, csrf_token: token }, '')
    expect(noCookie.status).toBe(403)
    expect(sessionCookieOf(noCookie)).toBeUndefined()
    const { csrfCookie } = await openLogin()
    const noField = await submit({ email: user.email, password: user.password }, csrfCookie)
    expect(noField.status).toBe(403)
    expect(sessionCookieOf(noField)).toBeUndefined()
  })

  it('re-renders the form with the same error for a wrong password and an unknown email', async () => {
    const user = await seedUser()
    const { csrfCookie, token } = await openLogin()
    const wrong = await submit(
      { email: user.email, password: 'Wrong-Password-1', csrf_token: token },
      csrfCookie,
    )
    const unknown = await submit(
      { email: `x${user.email}`, password: 'Wrong-Password-1', csrf_token: token },
      csrfCookie,
    )
    expect(wrong.status).toBe(401)
    expect(unknown.status).toBe(401)
    const message = (html: string) => /role="alert">([^<]*)</.exec(html)?.[1]
    const shown = message(await wrong.text())
    // A message is shown at all (undefined === undefined would pass), and the same one for both.
    expect(shown).toBeTruthy()
    expect(shown?.trim().length).toBeGreaterThan(0)
    expect(message(await unknown.text())).toBe(shown)
  })

  it('escapes what it echoes back', async () => {
    const { csrfCookie, token } = await openLogin()
    const res = await submit(
      { email: '"><script>alert(1)</script>@x.io', password: 'Wrong-Password-1', csrf_token: token },
      csrfCookie,
    )
    const html = await res.text()
    // Refused as a sign-in (the address is malformed or unknown), re-rendered with the value escaped.
    expect([400, 401], html.slice(0, 200)).toContain(res.status)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(html).not.toContain('<script>alert(1)</script>')
    expect(html).toContain('&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;@x.io')
  })

  it('signs out from the landing page', async () => {
    const user = await seedUser()
    const { csrfCookie, token } = await openLogin()
    const res = await submit({ email: user.email, password: user.password, csrf_token: token }, csrfCookie)
    const cookie = `portcullis_session=${sessionCookieOf(res)}; ${csrfCookie}`
    // The form token is bound to the session: the landing page's form, not the login page's.
    const home = await call('/', { headers: { cookie } })
    const homeToken = /name="csrf_token" value="([^"]+)"/.exec(await home.text())?.[1] ?? ''
    const out = await call('/logout', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
      body: new URLSearchParams({ csrf_token: homeToken }).toString(),
      redirect: 'manual',
    })
    expect(out.status).toBe(303)
    expect((await call('/auth/session', { headers: { cookie } })).status).toBe(401)
  })
})
