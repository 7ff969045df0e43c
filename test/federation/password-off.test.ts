import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { checkConfig } from '../../functions/config'
import type { Bindings } from '../../functions/env'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { callWith } from '../helpers/worker'
import { cookieOf, FED, githubUser, sessionUser, signIn, usersWithEmail } from './flow'

/** A deployment where people sign in only through providers. */
const OFF = { ...FED, PASSWORD_LOGIN: 'off' }

function postJson(path: string, body: unknown, vars: Record<string, string> = OFF) {
  return callWith(vars, path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

async function expectDisabled(res: Response) {
  expect(res.status).toBe(403)
  expect(res.headers.get('content-type')).toContain('application/problem+json')
  const problem = (await res.json()) as { code: string; detail: string }
  expect(problem.code).toBe('password_login_disabled')
  expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
}

describe('PASSWORD_LOGIN=off', () => {
  it('/login shows only the provider buttons: no password form, no reset or sign-up links', async () => {
    const page = await (await callWith(OFF, '/login?return_to=%2Fafter')).text()
    expect(page).toContain('Continue with GitHub')
    expect(page).toContain('/federated/github/start?return_to=%2Fafter')
    expect(page).not.toContain('type="password"')
    expect(page).not.toContain('action="/login"')
    expect(page).not.toContain('/forgot-password')
    expect(page).not.toContain('/signup')
    // With passwords on (the default) the form is there, next to the buttons.
    const on = await (await callWith(FED, '/login')).text()
    expect(on).toContain('type="password"')
    expect(on).toContain('Continue with GitHub')
  })

  it('the JSON password endpoints refuse with password_login_disabled, even with the right password', async () => {
    const user = await seedUser()
    await expectDisabled(await postJson('/auth/login', { email: user.email, password: user.password }))
    await expectDisabled(await postJson('/auth/login/mfa', { mfa_token: 'x', code: '123456' }))
    const email = uniqueEmail()
    await expectDisabled(await postJson('/auth/register', { email, password: 'Correct-Horse-Battery-9' }))
    expect(await usersWithEmail(email)).toHaveLength(0)
    await expectDisabled(await postJson('/auth/password-reset', { email: user.email }))
    await expectDisabled(
      await postJson('/auth/password-reset/confirm', { token: 'x', password: 'Another-Horse-42' }),
    )
    await expectDisabled(
      await postJson('/auth/change-password', { current_password: 'x', new_password: 'y' }),
    )
    // The same password works once passwords are on again.
    const on = await postJson('/auth/login', { email: user.email, password: user.password }, FED)
    expect(on.status).toBe(200)
  })

  it('the password pages answer a clear 403 page', async () => {
    const user = await seedUser()
    for (const [method, path] of [
      ['POST', '/login'],
      ['POST', '/login/mfa'],
      ['GET', '/signup'],
      ['POST', '/signup'],
      ['GET', '/forgot-password'],
      ['POST', '/forgot-password'],
      ['GET', '/auth/password-reset/confirm?token=abc'],
    ] as const) {
      const res = await callWith(OFF, path, {
        method,
        redirect: 'manual',
        ...(method === 'POST'
          ? {
              headers: { 'content-type': 'application/x-www-form-urlencoded' },
              body: new URLSearchParams({ email: user.email, password: user.password }).toString(),
            }
          : {}),
      })
      expect(res.status, `${method} ${path}`).toBe(403)
      expect(res.headers.get('content-type')).toContain('text/html')
      expect(await res.text()).toContain('does not use passwords')
      expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    }
  })

  it('/account offers no password change', async () => {
    const user = await seedUser({ session: true })
    const off = await (await callWith(OFF, '/account', { headers: { cookie: user.cookie } })).text()
    expect(off).toContain('Sign-in providers')
    expect(off).not.toContain('action="/account/password"')
    const on = await (await callWith(FED, '/account', { headers: { cookie: user.cookie } })).text()
    expect(on).toContain('action="/account/password"')
  })

  it('federated sign-in still works', async () => {
    const email = uniqueEmail()
    const res = await signIn('github', githubUser(email), { PASSWORD_LOGIN: 'off' })
    expect(res.status).toBe(303)
    expect((await sessionUser(res)).email).toBe(email)
  })

  it('any other value is a configuration error naming PASSWORD_LOGIN', () => {
    const vars = { ...(env as unknown as Bindings), PASSWORD_LOGIN: 'no' } as Bindings
    expect(checkConfig(vars).problems.map((p) => p.variable)).toContain('PASSWORD_LOGIN')
    expect(checkConfig({ ...vars, PASSWORD_LOGIN: 'off' }).problems.map((p) => p.variable)).not.toContain(
      'PASSWORD_LOGIN',
    )
  })
})
