import { describe, expect, it } from 'vitest'
import { emailVerifications, passwordResets } from '../../db/schema'
import { sha256Hex } from '../../functions/crypto/hash'
import { seedUser, userRow } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { call, describeResponse, postJson } from '../helpers/worker'

async function openPage(path: string) {
  const res = await call(path)
  const page = await res.text()
  const csrfCookie =
    res.headers
      .getSetCookie()
      .find((c) => c.startsWith('portcullis_csrf='))
      ?.split(';')[0] ?? ''
  const csrf = /name="csrf_token" value="([^"]+)"/.exec(page)?.[1] ?? ''
  return { res, page, csrfCookie, csrf }
}

function postForm(path: string, fields: Record<string, string>, cookie: string) {
  return call(path, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
    body: new URLSearchParams(fields).toString(),
  })
}

describe('email link pages', () => {
  it('the verification link opens a page; confirming there verifies the address', async () => {
    const user = await seedUser({ verified: false })
    const token = crypto.randomUUID()
    await testDb()
      .insert(emailVerifications)
      .values({
        tokenHash: await sha256Hex(token),
        userId: user.id,
        email: user.email,
        expiresAt: new Date(Date.now() + 60_000),
      })
    const { res, csrfCookie, csrf } = await openPage(`/auth/verify-email?token=${token}`)
    expect(res.status).toBe(200)
    expect((await userRow(user.id))?.emailVerifiedAt).toBeNull()
    const done = await postForm('/auth/verify-email', { token, csrf_token: csrf }, csrfCookie)
    expect(done.status, await describeResponse(done)).toBe(200)
    expect(await done.text()).toContain('Email confirmed')
    expect((await userRow(user.id))?.emailVerifiedAt).not.toBeNull()
    const again = await postForm('/auth/verify-email', { token, csrf_token: csrf }, csrfCookie)
    expect(again.status).toBe(400)
  })

  it('refuses the form without the CSRF pair', async () => {
    const res = await postForm('/auth/verify-email', { token: 'x', csrf_token: 'y' }, '')
    expect(res.status).toBe(403)
  })

  it('the reset link opens a new-password form that resets the password', async () => {
    const user = await seedUser()
    const token = crypto.randomUUID()
    await testDb()
      .insert(passwordResets)
      .values({
        tokenHash: await sha256Hex(token),
        userId: user.id,
        expiresAt: new Date(Date.now() + 60_000),
      })
    const { res, csrfCookie, csrf } = await openPage(`/auth/password-reset/confirm?token=${token}`)
    expect(res.status).toBe(200)
    const weak = await postForm(
      '/auth/password-reset/confirm',
      { token, password: 'password', csrf_token: csrf },
      csrfCookie,
    )
    expect(weak.status).toBe(400)
    const done = await postForm(
      '/auth/password-reset/confirm',
      { token, password: 'Fresh-Passphrase-From-Form-3', csrf_token: csrf },
      csrfCookie,
    )
    expect(done.status, await describeResponse(done)).toBe(200)
    expect(await done.text()).toContain('Password changed')
    expect(
      (await postJson('/auth/login', { email: user.email, password: 'Fresh-Passphrase-From-Form-3' })).status,
    ).toBe(200)
  })
})
