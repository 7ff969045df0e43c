import { expect } from 'vitest'
import { timeStep, totpCode } from '../../functions/crypto/totp'
import { type SeededUser, sessionCookieOf } from './accounts'
import { csrfOf, postForm } from './oauth'
import { call, postJson } from './worker'

// Two-factor helpers (issue 14): enrol like a person at /account, then sign in in two steps.

/** The code for the current time step shifted by `offset` (±1 is accepted). */
export async function codeAt(secret: string, offset: number): Promise<string> {
  return totpCode(secret, timeStep(new Date()) + offset)
}

/** A 6-digit code that is not the code of the previous, current or next step. */
export async function wrongCode(secret: string): Promise<string> {
  const valid = await Promise.all([-1, 0, 1].map((offset) => codeAt(secret, offset)))
  return ['000000', '111111', '222222', '333333'].find((code) => !valid.includes(code)) ?? '444444'
}

/** A CSRF-checked POST from the account page of this signed-in user. */
export async function accountPost(user: SeededUser, path: string, fields: Record<string, string>) {
  const page = await call('/account', { headers: user.headers })
  const { field, cookie } = csrfOf(page, await page.text())
  return postForm(
    path,
    { csrf_token: field, ...fields },
    { cookie: `${user.cookie}; portcullis_csrf=${cookie}` },
  )
}

/** Enrols TOTP through /account like a person would: the secret and the ten recovery codes. */
export async function enrol(
  user: SeededUser,
): Promise<{ secret: string; recovery: string[]; uri: string; setupHtml: string; confirmedStep: number }> {
  const setup = await accountPost(user, '/account/totp/start', {})
  const html = await setup.text()
  expect(setup.status).toBe(200)
  const uri = /href="(otpauth:\/\/totp\/[^"]+)"/.exec(html)?.[1]?.replace(/&amp;/g, '&')
  const secret = new URL(uri ?? 'x:').searchParams.get('secret') ?? ''
  expect(secret).toMatch(/^[A-Z2-7]{32}$/)
  // Not active until confirmed: the password alone still signs in.
  expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(200)
  const wrong = await accountPost(user, '/account/totp/confirm', { code: await wrongCode(secret) })
  expect(wrong.status).toBe(400)
  // The current step's code: it stays valid until the step after next, however slow the request.
  const confirmedStep = timeStep(new Date())
  const confirmed = await accountPost(user, '/account/totp/confirm', {
    code: await totpCode(secret, confirmedStep),
  })
  const page = await confirmed.text()
  expect(confirmed.status).toBe(200)
  const recovery = [...page.matchAll(/<li><code>([a-z2-7]{5}-[a-z2-7]{5})<\/code><\/li>/g)].map(
    (m) => m[1] ?? '',
  )
  expect(recovery).toHaveLength(10)
  return { secret, recovery, uri: uri ?? '', setupHtml: html, confirmedStep }
}

export async function firstStep(user: SeededUser): Promise<string> {
  const res = await postJson('/auth/login', { email: user.email, password: user.password })
  expect(res.status).toBe(200)
  expect(sessionCookieOf(res)).toBeUndefined()
  const body = (await res.json()) as { mfa_required?: boolean; mfa_token?: string }
  expect(body.mfa_required).toBe(true)
  return body.mfa_token ?? ''
}

export function secondStep(mfaToken: string, code: string) {
  return postJson('/auth/login/mfa', { mfa_token: mfaToken, code })
}
