import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, emailOutbox, emailVerifications, sessions, users } from '../../db/schema'
import { STRONG_PASSWORD, seedUser, sessionCookieOf, signIn, uniqueEmail, userRow } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { until } from '../helpers/poll'
import { call, callWith, describeResponse, postJson } from '../helpers/worker'

describe('POST /auth/register', () => {
  it('hashes with the production argon2id parameters when ARGON2_* are left at their defaults', async () => {
    const email = uniqueEmail()
    const production = {
      ARGON2_MEMORY_KIB: undefined,
      ARGON2_ITERATIONS: undefined,
      ARGON2_PARALLELISM: undefined,
    }
    const res = await callWith(production, '/auth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: STRONG_PASSWORD }),
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    const { user } = (await res.json()) as { user: { id: string } }
    expect((await userRow(user.id))?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
    // And a sign-in under those parameters verifies it.
    const login = await callWith(production, '/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password: STRONG_PASSWORD }),
    })
    expect(login.status, await describeResponse(login)).toBe(200)
  })

  it('creates an active user, queues a verification email and audits it', async () => {
    const email = uniqueEmail()
    const res = await postJson('/auth/register', {
      email: `  ${email}  `,
      password: STRONG_PASSWORD,
      display_name: 'Ada',
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    const body = (await res.json()) as { user: Record<string, unknown> }
    expect(body.user).toEqual({
      id: expect.any(String),
      email,
      display_name: 'Ada',
      status: 'active',
      email_verified: false,
      is_admin: false,
      created_at: expect.any(String),
    })
    const id = body.user.id as string
    const row = await userRow(id)
    // The suite's configured (cheap) parameters: vitest.config.ts TEST_ARGON2.
    expect(row?.passwordHash).toMatch(/^\$argon2id\$v=19\$m=128,t=1,p=1\$/)
    const [verification] = await testDb()
      .select()
      .from(emailVerifications)
      .where(eq(emailVerifications.userId, id))
    expect(verification?.tokenHash).toMatch(/^[0-9a-f]{64}$/)
    const audit = await until(async () => {
      const [event] = await testDb().select().from(auditEvents).where(eq(auditEvents.userId, id))
      return event
    })
    expect(audit.type).toBe('user_registered')
    // Development delivery logs the message, then clears the body (and the token in it).
    const sent = await until(async () => {
      const [message] = await testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, email))
      return message?.sentAt === null ? undefined : message
    })
    expect(sent.bodyText).toBeNull()
  })

  it('refuses a duplicate email regardless of case', async () => {
    const user = await seedUser()
    const res = await postJson('/auth/register', {
      email: user.email.toUpperCase(),
      password: STRONG_PASSWORD,
    })
    expect(res.status, await describeResponse(res)).toBe(409)
    expect(await res.json()).toMatchObject({ code: 'email_taken' })
  })

  it.each([
    ['short', 'Ab1!xyz'],
    ['common', 'Password123'],
  ])('refuses a weak password (%s)', async (_label, password) => {
    const email = uniqueEmail()
    const res = await postJson('/auth/register', { email, password })
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ code: 'weak_password' })
    expect(await testDb().select().from(users).where(eq(users.email, email))).toHaveLength(0)
  })

  it.each([
    [{ password: STRONG_PASSWORD }, 'email'],
    [{ email: `${'x'.repeat(250)}@a.io`, password: STRONG_PASSWORD }, 'email'],
    [{ email: 'not-an-email', password: STRONG_PASSWORD }, 'email'],
    [{ email: 'a@b.io' }, 'password'],
    [{ email: 'a@b.io', password: 'x'.repeat(257) }, 'password'],
    [{ email: 'a@b.io', password: 12345678 }, 'password'],
    [{ email: 'a@b.io', password: STRONG_PASSWORD, display_name: 'n'.repeat(101) }, 'display_name'],
  ])('answers 400 validation_failed naming the field for %j', async (body, field) => {
    const res = await postJson('/auth/register', body)
    expect(res.status, await describeResponse(res)).toBe(400)
    const problem = (await res.json()) as { code: string; errors: { field: string }[] }
    expect(problem.code).toBe('validation_failed')
    expect(problem.errors.map((e) => e.field)).toContain(field)
  })

  it('answers malformed JSON with 400', async () => {
    const res = await call('/auth/register', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"email": ',
    })
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
  })

  it('stores SQL metacharacters literally', async () => {
    const email = `o'brien--${uniqueEmail()}`
    const res = await postJson('/auth/register', {
      email,
      password: STRONG_PASSWORD,
      display_name: "Robert'); DROP TABLE users;--",
    })
    expect(res.status, await describeResponse(res)).toBe(201)
    const body = (await res.json()) as { user: { email: string; display_name: string } }
    expect(body.user).toMatchObject({ email, display_name: "Robert'); DROP TABLE users;--" })
  })
})

describe('POST /auth/login', () => {
  it('signs in, sets the session cookie and upgrades the stored hash to the configured parameters', async () => {
    const user = await seedUser()
    const res = await postJson('/auth/login', { email: user.email.toUpperCase(), password: user.password })
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as { user: { id: string }; session: { expires_at: string } }
    expect(body.user.id).toBe(user.id)
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('portcullis_session='))
    expect(cookie).toMatch(/HttpOnly/i)
    expect(cookie).toMatch(/SameSite=Lax/i)
    expect(cookie).toMatch(/Path=\//)
    expect(cookie).not.toMatch(/Max-Age/i)
    expect(cookie).not.toMatch(/Secure/i)
    const ttl = new Date(body.session.expires_at).getTime() - Date.now()
    expect(ttl).toBeGreaterThan(7100_000)
    expect(ttl).toBeLessThanOrEqual(7200_000)
    expect((await userRow(user.id))?.passwordHash).toMatch(/m=128,t=1,p=1/)
    // The stored session is the hash of the cookie, never the cookie.
    const token = sessionCookieOf(res) ?? ''
    const rows = await testDb().select().from(sessions).where(eq(sessions.userId, user.id))
    expect(rows).toHaveLength(1)
    expect(rows[0]?.tokenHash).not.toBe(token)
  })

  it('gives remember-me a persistent cookie and the long lifetime', async () => {
    const user = await seedUser()
    const res = await postJson('/auth/login', { email: user.email, password: user.password, remember: true })
    expect(res.status).toBe(200)
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith('portcullis_session='))
    expect(cookie).toMatch(/Max-Age=2592000/)
  })

  it('upgrades an imported bcrypt hash to argon2id on the next login', async () => {
    const user = await seedUser({
      password: 'imported-Passw0rd!',
      passwordHash: '$2a$04$/uaF/uaF/uaF/uaF/uaF/uhtraHh5TiChad1W0qW1fOz5/2.hGSja',
    })
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect((await userRow(user.id))?.passwordHash).toMatch(/^\$argon2id\$/)
    const again = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(again.status).toBe(200)
  })

  it('answers wrong password and unknown email identically', async () => {
    const user = await seedUser()
    const wrong = await postJson('/auth/login', { email: user.email, password: 'Not-The-Password-1' })
    const unknown = await postJson('/auth/login', { email: uniqueEmail(), password: 'Not-The-Password-1' })
    expect(wrong.status).toBe(401)
    expect(unknown.status).toBe(401)
    const [a, b] = [
      (await wrong.json()) as Record<string, unknown>,
      (await unknown.json()) as Record<string, unknown>,
    ]
    expect(a).toEqual({ ...b, instance: a.instance })
    expect(a.code).toBe('invalid_credentials')
    expect(sessionCookieOf(wrong)).toBeUndefined()
  })

  it.each([
    ['pending', 'account_pending'],
    ['suspended', 'account_suspended'],
  ] as const)('refuses a %s user with 403 %s after the password checks out', async (status, code) => {
    const user = await seedUser({ status })
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await res.json()).toMatchObject({ code })
    expect(sessionCookieOf(res)).toBeUndefined()
    const wrong = await postJson('/auth/login', { email: user.email, password: 'Not-The-Password-1' })
    expect(wrong.status).toBe(401)
  })

  it('throttles an account after 5 failures with 429 and Retry-After, and releases when the window ends', async () => {
    const user = await seedUser()
    for (let i = 0; i < 5; i++) {
      const res = await postJson('/auth/login', { email: user.email, password: `Wrong-Password-${i}` })
      expect(res.status, await describeResponse(res)).toBe(401)
    }
    const blocked = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(blocked.status, await describeResponse(blocked)).toBe(429)
    expect(await blocked.json()).toMatchObject({ code: 'rate_limited' })
    const retryAfter = Number(blocked.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThan(800)
    expect(retryAfter).toBeLessThanOrEqual(900)
    // The window runs out (moved into the past rather than waiting 15 minutes).
    const { loginThrottles } = await import('../../db/schema')
    await testDb()
      .update(loginThrottles)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(loginThrottles.subject, `user:${user.id}`))
    const released = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(released.status, await describeResponse(released)).toBe(200)
  })

  it('throttles unknown emails the same way (no enumeration through 429)', async () => {
    const email = uniqueEmail()
    for (let i = 0; i < 5; i++) {
      expect((await postJson('/auth/login', { email, password: `Wrong-Password-${i}` })).status).toBe(401)
    }
    expect((await postJson('/auth/login', { email, password: 'Wrong-Password-x' })).status).toBe(429)
  })

  it.each([
    [{}, 'email'],
    [{ email: 'a@b.io' }, 'password'],
    [{ email: 'a@b.io', password: 'x', remember: 'yes' }, 'remember'],
  ])('answers 400 naming the field for %j', async (body, field) => {
    const res = await postJson('/auth/login', body)
    expect(res.status).toBe(400)
    const problem = (await res.json()) as { errors: { field: string }[] }
    expect(problem.errors.map((e) => e.field)).toContain(field)
  })
})

describe('sessions', () => {
  it('GET /auth/session answers the user and session, 401 without one', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const res = await call('/auth/session', { headers: { cookie } })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ user: { id: user.id }, session: { remember: false } })
    const none = await call('/auth/session')
    expect(none.status).toBe(401)
    expect(await none.json()).toMatchObject({ code: 'unauthenticated' })
  })

  it('never accepts an expired session, even before the purge', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    await testDb()
      .update(sessions)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(sessions.userId, user.id))
    expect((await call('/auth/session', { headers: { cookie } })).status).toBe(401)
    expect((await call('/auth/logout-all', { method: 'POST', headers: { cookie } })).status).toBe(401)
  })

  it('logout ends this session only', async () => {
    const user = await seedUser()
    const first = await signIn(user)
    const second = await signIn(user)
    const res = await call('/auth/logout', { method: 'POST', headers: { cookie: first } })
    expect(res.status).toBe(204)
    expect(res.headers.getSetCookie().join()).toMatch(/portcullis_session=;/)
    expect((await call('/auth/session', { headers: { cookie: first } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: second } })).status).toBe(200)
  })

  it('logout-all ends every session of the user and none of another user', async () => {
    const user = await seedUser()
    const other = await seedUser()
    const a = await signIn(user)
    const b = await signIn(user)
    const otherCookie = await signIn(other)
    expect((await call('/auth/logout-all', { method: 'POST', headers: { cookie: a } })).status).toBe(204)
    expect((await call('/auth/session', { headers: { cookie: a } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: b } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: otherCookie } })).status).toBe(200)
  })

  it('refuses a cross-site state change', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const res = await call('/auth/logout-all', {
      method: 'POST',
      headers: { cookie, origin: 'https://evil.example' },
    })
    expect(res.status).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'csrf_failed' })
    expect((await call('/auth/session', { headers: { cookie } })).status).toBe(200)
  })

  it('answers a suspended user’s session with 403', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    await testDb().update(users).set({ status: 'suspended' }).where(eq(users.id, user.id))
    const res = await call('/auth/session', { headers: { cookie } })
    expect(res.status).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'account_suspended' })
  })
})
