import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { mfaChallenges, sessions, userTotp } from '../../db/schema'
import { base32Encode, totpCode } from '../../functions/crypto/totp'
import { seedUser, sessionCookieOf } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { accountPost, codeAt, enrol, firstStep, secondStep, wrongCode } from '../helpers/mfa'
import { csrfOf, exchangeCode, obtainCode, postForm, verifyIdToken, webClient } from '../helpers/oauth'
import { call, postJson } from '../helpers/worker'

const LIMIT = 5 // LOGIN_MAX_FAILURES_PER_ACCOUNT in wrangler.toml

async function sessionCount(userId: string): Promise<number> {
  return (await testDb().select().from(sessions).where(eq(sessions.userId, userId))).length
}

describe('TOTP two-factor sign-in', () => {
  it('computes RFC 6238 appendix B codes (SHA-1, truncated to 6 digits)', async () => {
    const secret = base32Encode(new TextEncoder().encode('12345678901234567890'))
    // RFC 6238 B: 94287082 at T=59, 07081804 at 1111111109, 14050471 at 1111111111, 89005924 at 1234567890.
    expect(await totpCode(secret, Math.floor(59 / 30))).toBe('287082')
    expect(await totpCode(secret, Math.floor(1111111109 / 30))).toBe('081804')
    expect(await totpCode(secret, Math.floor(1111111111 / 30))).toBe('050471')
    expect(await totpCode(secret, Math.floor(1234567890 / 30))).toBe('005924')
  })

  it('stores the secret sealed, asks for a code before any session, and refuses a replayed code', async () => {
    const user = await seedUser({ session: true })
    const { secret, confirmedStep } = await enrol(user)
    const [row] = await testDb().select().from(userTotp).where(eq(userTotp.userId, user.id))
    expect(row?.confirmedAt).not.toBeNull()
    expect(row?.secretSealed).not.toContain(secret)

    const before = await sessionCount(user.id)
    const token = await firstStep(user)
    expect(await sessionCount(user.id)).toBe(before)
    // The confirming code's step is spent: it cannot sign in, even when the clock has moved to
    // the next step since; the step after the current one's code can.
    expect((await secondStep(token, await totpCode(secret, confirmedStep))).status).toBe(401)
    const code = await codeAt(secret, 1)
    const ok = await secondStep(token, code)
    expect(ok.status).toBe(200)
    expect(sessionCookieOf(ok)).toBeDefined()
    expect(await sessionCount(user.id)).toBe(before + 1)
    // The mfa_token is spent with the sign-in.
    expect((await secondStep(token, await codeAt(secret, 1))).status).toBe(401)
    // The same code again, through a fresh first step: refused (its step is used).
    const again = await secondStep(await firstStep(user), code)
    expect(again.status).toBe(401)
    expect(((await again.json()) as { code?: string }).code ?? 'invalid_mfa_code').toMatch(/invalid_mfa_code/)
  })

  it('refuses a wrong code, an unknown and an expired mfa_token, and issues no session', async () => {
    const user = await seedUser({ session: true })
    const { secret } = await enrol(user)
    const before = await sessionCount(user.id)
    const token = await firstStep(user)
    expect((await secondStep(token, '12345')).status).toBe(401)
    expect((await secondStep('not-a-token', await codeAt(secret, 1))).status).toBe(401)
    await testDb()
      .update(mfaChallenges)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(and(eq(mfaChallenges.userId, user.id)))
    const expired = await secondStep(token, await codeAt(secret, 1))
    expect(expired.status).toBe(401)
    expect(sessionCookieOf(expired)).toBeUndefined()
    expect(await sessionCount(user.id)).toBe(before)
  })

  it('throttles the second step like the password: a burst of 15 wrong codes checks at most the limit', async () => {
    const user = await seedUser({ session: true })
    const { secret } = await enrol(user)
    const token = await firstStep(user)
    const right = await codeAt(secret, 1)
    const wrong = await wrongCode(secret)
    const answers = await Promise.all(Array.from({ length: 15 }, () => secondStep(token, wrong)))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(LIMIT)
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(15 - LIMIT)
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true)
    // Over the limit even the right code is not checked.
    const blocked = await secondStep(token, right)
    expect(blocked.status).toBe(429)
    expect(sessionCookieOf(blocked)).toBeUndefined()
  })

  it('a recovery code signs in once, however many use it at the same time', async () => {
    const user = await seedUser({ session: true })
    const { recovery } = await enrol(user)
    const tokens: string[] = []
    for (let i = 0; i < 10; i++) {
      tokens.push(await firstStep(user))
    }
    const code = recovery[0] ?? ''
    const answers = await Promise.all(tokens.map((t) => secondStep(t, code.toUpperCase())))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.every((s) => s === 200 || s === 401 || s === 429)).toBe(true)
  })

  it('puts amr in the ID token: pwd for a password, pwd+otp after the code', async () => {
    const client = await webClient({ scope: 'openid email offline_access' })
    const plain = await seedUser({ session: true })
    const plainLogin = await postJson('/auth/login', { email: plain.email, password: plain.password })
    const plainUser = { ...plain, cookie: `portcullis_session=${sessionCookieOf(plainLogin)}` }
    const plainTokens = (await (await exchangeCode(client, await obtainCode(client, plainUser))).json()) as {
      id_token?: string
    }
    const plainClaims = await verifyIdToken(plainTokens.id_token, { clientId: client.client_id })
    expect(plainClaims.amr).toEqual(['pwd'])

    const user = await seedUser({ session: true })
    const { secret } = await enrol(user)
    const ok = await secondStep(await firstStep(user), await codeAt(secret, 1))
    expect(ok.status).toBe(200)
    const signed = { ...user, cookie: `portcullis_session=${sessionCookieOf(ok)}` }
    const tokens = (await (await exchangeCode(client, await obtainCode(client, signed))).json()) as {
      id_token?: string
    }
    const claims = await verifyIdToken(tokens.id_token, { clientId: client.client_id, subject: user.id })
    expect(claims.amr).toEqual(['pwd', 'otp', 'mfa'])
  })

  it('the HTML sign-in asks for the code on a second page, then signs in', async () => {
    const user = await seedUser({ session: true })
    const { secret } = await enrol(user)
    const page = await call('/login')
    const csrf = csrfOf(page, await page.text())
    const jar = { cookie: `portcullis_csrf=${csrf.cookie}` }
    const first = await postForm(
      '/login',
      { csrf_token: csrf.field, email: user.email, password: user.password, return_to: '/account' },
      jar,
    )
    const html = await first.text()
    expect(first.status).toBe(200)
    expect(sessionCookieOf(first)).toBeUndefined()
    const mfaToken = /name="mfa_token" value="([^"]+)"/.exec(html)?.[1] ?? ''
    const field = /name="csrf_token" value="([^"]+)"/.exec(html)?.[1] ?? ''
    expect(mfaToken).not.toBe('')
    const bad = await postForm(
      '/login/mfa',
      { csrf_token: field, mfa_token: mfaToken, code: 'zzzzzz', return_to: '/account' },
      jar,
    )
    expect(bad.status).toBe(401)
    expect(sessionCookieOf(bad)).toBeUndefined()
    const done = await call('/login/mfa', {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...jar },
      body: new URLSearchParams({
        csrf_token: field,
        mfa_token: mfaToken,
        code: await codeAt(secret, 1),
        return_to: '/account',
      }).toString(),
    })
    expect(done.status).toBe(303)
    expect(done.headers.get('location')).toMatch(/\/account$/)
    expect(sessionCookieOf(done)).toBeDefined()
  })

  it('turning TOTP off needs the password or a code, and then the password alone signs in', async () => {
    const user = await seedUser({ session: true })
    await enrol(user)
    const refused = await accountPost(user, '/account/totp/disable', { current_password: 'not-it', code: '' })
    expect(refused.status).toBe(400)
    expect(await firstStep(user)).not.toBe('')
    const off = await accountPost(user, '/account/totp/disable', {
      current_password: user.password,
      code: '',
    })
    expect(off.status).toBe(200)
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status).toBe(200)
    expect(sessionCookieOf(res)).toBeDefined()
  })
})
