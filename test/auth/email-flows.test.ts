import { env } from 'cloudflare:test'
import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { createDb } from '../../db/client'
import { auditEvents, emailOutbox, emailVerifications, passwordResets, sessions } from '../../db/schema'
import { parseConfig } from '../../functions/config'
import { sha256Hex } from '../../functions/crypto/hash'
import { deliverPendingEmail } from '../../functions/email/deliver'
import { STRONG_PASSWORD, seedUser, signIn, uniqueEmail, userRow } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { call, callWith, describeResponse, postJson } from '../helpers/worker'

/** Seeds a token row directly: the raw token and its hash, as the API would mail and store them. */
async function seedVerification(userId: string, email: string, expiresInSeconds = 3600) {
  const token = crypto.randomUUID() + crypto.randomUUID()
  await testDb()
    .insert(emailVerifications)
    .values({
      tokenHash: await sha256Hex(token),
      userId,
      email,
      expiresAt: new Date(Date.now() + expiresInSeconds * 1000),
    })
  return token
}

async function seedReset(userId: string, expiresInSeconds = 3600) {
  const token = crypto.randomUUID() + crypto.randomUUID()
  await testDb()
    .insert(passwordResets)
    .values({
      tokenHash: await sha256Hex(token),
      userId,
      expiresAt: new Date(Date.now() + expiresInSeconds * 1000),
    })
  return token
}

/** The app with other configuration, the way a deployment with those vars would answer. */
const withVars = (vars: Record<string, string>, path: string, init: RequestInit) => callWith(vars, path, init)

const json = (body: unknown): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
})

describe('email verification', () => {
  it('verifies with the token, once', async () => {
    const user = await seedUser({ verified: false })
    const token = await seedVerification(user.id, user.email)
    const res = await postJson('/auth/verify-email', { token })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ user: { id: user.id, email_verified: true } })
    const again = await postJson('/auth/verify-email', { token })
    expect(again.status).toBe(400)
    expect(await again.json()).toMatchObject({ code: 'invalid_token' })
  })

  it.each([
    ['forged', async () => 'forged-token-that-was-never-issued'],
    ['expired', async () => seedVerification((await seedUser({ verified: false })).id, 'x@y.io', -60)],
  ])('refuses a %s token', async (_label, make) => {
    const res = await postJson('/auth/verify-email', { token: await make() })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'invalid_token' })
  })

  it.each([[{}], [{ token: '' }], [{ token: 'x'.repeat(500) }], [{ token: 42 }]])(
    'answers %j with 400',
    async (body) => {
      const res = await postJson('/auth/verify-email', body)
      expect(res.status).toBe(400)
      expect(await res.json()).toMatchObject({ code: 'validation_failed' })
    },
  )

  it('resend answers 202 for any address and queues mail only for an unverified account, once a minute', async () => {
    const user = await seedUser({ verified: false })
    expect((await postJson('/auth/verify-email/resend', { email: user.email })).status).toBe(202)
    expect((await postJson('/auth/verify-email/resend', { email: user.email })).status).toBe(202)
    expect((await postJson('/auth/verify-email/resend', { email: uniqueEmail() })).status).toBe(202)
    const rows = await testDb()
      .select()
      .from(emailVerifications)
      .where(eq(emailVerifications.userId, user.id))
    expect(rows).toHaveLength(1)
  })

  it('blocks sign-in of an unverified user when REQUIRE_EMAIL_VERIFICATION is on', async () => {
    const user = await seedUser({ verified: false })
    const res = await withVars(
      { REQUIRE_EMAIL_VERIFICATION: 'true' },
      '/auth/login',
      json({ email: user.email, password: user.password }),
    )
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'email_unverified' })
  })

  it('registers users as pending when REQUIRE_APPROVAL is on', async () => {
    const res = await withVars(
      { REQUIRE_APPROVAL: 'true' },
      '/auth/register',
      json({ email: uniqueEmail(), password: STRONG_PASSWORD }),
    )
    expect(res.status, await describeResponse(res)).toBe(201)
    expect(await res.json()).toMatchObject({ user: { status: 'pending' } })
  })
})

describe('password reset', () => {
  it('answers 202 whether or not the email exists, and queues a message only for a real account', async () => {
    const user = await seedUser()
    const known = await postJson('/auth/password-reset', { email: user.email.toUpperCase() })
    const unknown = await postJson('/auth/password-reset', { email: uniqueEmail() })
    expect(known.status).toBe(202)
    expect(unknown.status).toBe(202)
    expect(await known.text()).toBe(await unknown.text())
    const resets = await testDb().select().from(passwordResets).where(eq(passwordResets.userId, user.id))
    expect(resets).toHaveLength(1)
    const [message] = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, user.email))
    expect(message?.subject).toBe('Reset your password')
  })

  it('sets the password, ends every session, and refuses the token a second time', async () => {
    const user = await seedUser()
    const other = await seedUser()
    const a = await signIn(user)
    const b = await signIn(user, { remember: true })
    const otherCookie = await signIn(other)
    const token = await seedReset(user.id)
    const res = await postJson('/auth/password-reset/confirm', {
      token,
      password: 'A-Brand-New-Passphrase-7',
    })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect((await call('/auth/session', { headers: { cookie: a } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: b } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: otherCookie } })).status).toBe(200)
    expect(await testDb().select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(0)
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(401)
    expect(
      (await postJson('/auth/login', { email: user.email, password: 'A-Brand-New-Passphrase-7' })).status,
    ).toBe(200)
    const reuse = await postJson('/auth/password-reset/confirm', { token, password: 'Another-Passphrase-8' })
    expect(reuse.status).toBe(400)
    expect(await reuse.json()).toMatchObject({ code: 'invalid_token' })
  })

  it.each([
    ['expired', async (userId: string) => seedReset(userId, -60)],
    ['forged', async () => 'never-issued-token'],
  ])('refuses a %s token and changes nothing', async (_label, make) => {
    const user = await seedUser()
    const before = (await userRow(user.id))?.passwordHash
    const res = await postJson('/auth/password-reset/confirm', {
      token: await make(user.id),
      password: 'A-Brand-New-Passphrase-7',
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'invalid_token' })
    expect((await userRow(user.id))?.passwordHash).toBe(before)
  })

  it('refuses a weak new password without consuming the token', async () => {
    const user = await seedUser()
    const token = await seedReset(user.id)
    const res = await postJson('/auth/password-reset/confirm', { token, password: 'password' })
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'weak_password' })
    expect(
      (await postJson('/auth/password-reset/confirm', { token, password: 'A-Brand-New-Passphrase-7' }))
        .status,
    ).toBe(200)
  })
})

describe('account settings', () => {
  it('PATCH /auth/me changes the display name', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const res = await call('/auth/me', {
      method: 'PATCH',
      headers: { cookie, 'content-type': 'application/json' },
      body: JSON.stringify({ display_name: '  Grace Hopper ' }),
    })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ user: { display_name: 'Grace Hopper' } })
    const tooLong = await call('/auth/me', {
      method: 'PATCH',
      headers: { cookie, 'content-type': 'application/json' },
      body: JSON.stringify({ display_name: 'x'.repeat(101) }),
    })
    expect(tooLong.status).toBe(400)
    expect((await call('/auth/me', { method: 'PATCH', body: '{}' })).status).toBe(401)
  })

  it('change-password checks the current password, ends other sessions and keeps this browser signed in', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const other = await signIn(user)
    const change = (current: string, next: string) =>
      call('/auth/change-password', {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/json' },
        body: JSON.stringify({ current_password: current, new_password: next }),
      })
    expect((await change('Wrong-Password-1', 'A-Brand-New-Passphrase-7')).status).toBe(401)
    expect((await change(user.password, 'short')).status).toBe(400)
    const res = await change(user.password, 'A-Brand-New-Passphrase-7')
    expect(res.status, await describeResponse(res)).toBe(204)
    const fresh =
      res.headers
        .getSetCookie()
        .find((c) => c.startsWith('portcullis_session='))
        ?.split(';')[0] ?? ''
    expect((await call('/auth/session', { headers: { cookie: fresh } })).status).toBe(200)
    expect((await call('/auth/session', { headers: { cookie: other } })).status).toBe(401)
    // The audit row commits in the change's own batch: it is there when the answer is, once.
    const events = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'password_changed')))
    expect(events).toHaveLength(1)
    expect(events[0]?.metadata).toMatchObject({ sessions_ended: 2 })
  })
})

describe('email delivery', () => {
  it('keeps a message whose webhook delivery failed, with backoff, for the cron to retry', async () => {
    const to = uniqueEmail()
    const [row] = await testDb()
      .insert(emailOutbox)
      .values({
        toAddress: to,
        template: 'verify_email',
        subject: 's',
        bodyText: 'link',
        bodyHtml: '<p>link</p>',
      })
      .returning()
    const config = {
      ...parseConfig(env),
      mail: { provider: 'webhook', url: 'http://127.0.0.1:9/mail', secret: undefined },
    } as const
    const db = createDb({
      databaseUrl: env.DATABASE_URL,
      gatewayUrl: env.DB_GATEWAY_URL,
      waitUntil: () => {},
    })
    const report = await deliverPendingEmail(db.http, config, new Date(), { ids: [row?.id ?? ''] })
    expect(report).toEqual({ sent: 0, failed: 1 })
    const [after] = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, to))
    expect(after?.sentAt).toBeNull()
    expect(after?.attempts).toBe(1)
    expect(after?.bodyText).toBe('link')
    expect(after?.nextAttemptAt.getTime()).toBeGreaterThan(Date.now() + 30_000)
    // Not due yet: a second run leaves it alone.
    expect(await deliverPendingEmail(db.http, config, new Date(), { ids: [row?.id ?? ''] })).toEqual({
      sent: 0,
      failed: 0,
    })
  })
})

describe('per-IP throttling', () => {
  it('blocks an address after LOGIN_MAX_FAILURES_PER_IP failures across accounts', async () => {
    const ip = `198.51.100.${Math.floor(Math.random() * 250) + 1}`
    const vars = { LOGIN_MAX_FAILURES_PER_IP: '3' }
    const attempt = (email: string, password: string) =>
      withVars(vars, '/auth/login', {
        ...json({ email, password }),
        headers: { 'content-type': 'application/json', 'cf-connecting-ip': ip },
      })
    for (let i = 0; i < 3; i++) {
      expect((await attempt(uniqueEmail(), 'Wrong-Password-1')).status).toBe(401)
    }
    const user = await seedUser()
    const blocked = await attempt(user.email, user.password)
    expect(blocked.status, await describeResponse(blocked)).toBe(429)
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0)
    // Another address is unaffected.
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(200)
  })
})
