import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { passkeys, sessions } from '../../db/schema'
import { uniqueEmail } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { accountPost, codeAt, secondStep } from '../helpers/mfa'
import { cookieOf, githubUser, sessionUser, signIn, usersWithEmail } from './flow'

describe('federated sign-in and two-factor (issue 14)', () => {
  it('under REQUIRE_TWO_FACTOR a new account gets the enrolment page, not a session', async () => {
    const email = uniqueEmail()
    const res = await signIn('github', githubUser(email), { REQUIRE_TWO_FACTOR: 'true' })
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    expect(page).toContain('action="/login/enrol"')
    expect(page).toMatch(/<svg class="qr"/)
    const [user] = await usersWithEmail(email)
    expect(user).toBeDefined()
    expect(
      await testDb()
        .select()
        .from(sessions)
        .where(eq(sessions.userId, user?.id ?? '')),
    ).toHaveLength(0)
  })

  it('with TOTP on, the provider is the first step: the code finishes the sign-in (amr otp+mfa)', async () => {
    const email = uniqueEmail()
    const github = githubUser(email)
    const first = await signIn('github', github)
    const me = await sessionUser(first)
    const cookie = `portcullis_session=${cookieOf(first, 'portcullis_session')}`
    const signed = { id: me.id, tenantId: '', email, password: '', cookie, headers: { cookie } }
    const setup = await (await accountPost(signed, '/account/totp/start', {})).text()
    const secret = /secret=([A-Z2-7]+)/.exec(setup)?.[1] ?? ''
    expect(
      (await accountPost(signed, '/account/totp/confirm', { code: await codeAt(secret, 0) })).status,
    ).toBe(200)

    const again = await signIn('github', github)
    const page = await again.text()
    expect(again.status, page).toBe(200)
    expect(cookieOf(again, 'portcullis_session')).toBeUndefined()
    expect(page).toContain('action="/login/mfa"')
    const mfaToken = /name="mfa_token" value="([^"]+)"/.exec(page)?.[1] ?? ''
    const done = await secondStep(mfaToken, await codeAt(secret, 1))
    expect(done.status).toBe(200)
    const token = cookieOf(done, 'portcullis_session') ?? ''
    const rows = await testDb().select().from(sessions).where(eq(sessions.userId, me.id))
    const latest = rows.find((row) => row.amr.includes('mfa'))
    expect(latest?.amr).toEqual(['otp', 'mfa'])
    expect(token).not.toBe('')
  })

  it('under REQUIRE_TWO_FACTOR an account with a passkey gets the second step, not the enrolment', async () => {
    const email = uniqueEmail()
    const github = githubUser(email)
    const me = await sessionUser(await signIn('github', github))
    await testDb()
      .insert(passkeys)
      .values({ userId: me.id, credentialId: `cred-${me.id}`, publicKey: 'pk', name: 'Laptop' })
    const res = await signIn('github', github, { REQUIRE_TWO_FACTOR: 'true' })
    const page = await res.text()
    expect(res.status, page).toBe(200)
    expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
    expect(page).toContain('action="/login/mfa"')
    expect(page).not.toContain('action="/login/enrol"')
  })
})
