import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, loginThrottles } from '../../db/schema'
import { STRONG_PASSWORD, seedUser, signIn, uniqueEmail } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { call, describeResponse, postJson, realPostgres } from '../helpers/worker'

/** LOGIN_MAX_FAILURES_PER_ACCOUNT and SIGNUP_MAX_PER_IP at their defaults. */
const ACCOUNT_LIMIT = 5
const SIGNUP_LIMIT = 10

/** An address of the benchmarking range (RFC 2544) no other test uses. */
function uniqueIp(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3))
  return `198.${18 + ((bytes[0] ?? 0) % 2)}.${bytes[1]}.${bytes[2]}`
}

function changePassword(cookie: string, current: string, next: string, ip?: string): Promise<Response> {
  return call('/auth/change-password', {
    method: 'POST',
    headers: {
      cookie,
      'content-type': 'application/json',
      ...(ip === undefined ? {} : { 'cf-connecting-ip': ip }),
    },
    body: JSON.stringify({ current_password: current, new_password: next }),
  })
}

async function eventsOf(userId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.userId, userId), eq(auditEvents.type, type)))
}

describe.skipIf(!realPostgres)('change-password shares the account counter (issue 9 #7)', () => {
  it('12 concurrent wrong current passwords: at most 5 checked, then sign-in with the right one gets 429', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        changePassword(cookie, `Wrong-Password-${i}`, 'A-Brand-New-Passphrase-7', uniqueIp()),
      ),
    )
    const statuses = burst.map((r) => r.status).sort()
    expect(statuses).toEqual([...Array(ACCOUNT_LIMIT).fill(401), ...Array(12 - ACCOUNT_LIMIT).fill(429)])
    for (const res of burst.filter((r) => r.status === 429)) {
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    const login = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(login.status, await describeResponse(login)).toBe(429)
    // The right current password is refused too, without a check, while the window lasts.
    const right = await changePassword(cookie, user.password, 'A-Brand-New-Passphrase-7')
    expect(right.status, await describeResponse(right)).toBe(429)
    const failed = await eventsOf(user.id, 'user_login_failed')
    expect(failed.filter((e) => e.metadata.reason === 'invalid_credentials')).toHaveLength(ACCOUNT_LIMIT)
  })

  it('sign-in failures count against change-password: 5 wrong sign-ins lock the current-password check', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    for (let i = 0; i < ACCOUNT_LIMIT; i++) {
      const res = await postJson('/auth/login', { email: user.email, password: `Wrong-Password-${i}` })
      expect(res.status).toBe(401)
    }
    const res = await changePassword(cookie, user.password, 'A-Brand-New-Passphrase-7')
    expect(res.status, await describeResponse(res)).toBe(429)
  })

  it('a successful change gives its claim back and records password_changed with what it ended, before answering', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    await signIn(user)
    expect((await changePassword(cookie, 'Wrong-Password-1', 'A-Brand-New-Passphrase-7')).status).toBe(401)
    const res = await changePassword(cookie, user.password, 'A-Brand-New-Passphrase-7')
    expect(res.status, await describeResponse(res)).toBe(204)
    // No polling: the event commits in the change's own batch.
    const [event] = await eventsOf(user.id, 'password_changed')
    expect(event?.metadata).toEqual({ sessions_ended: 2, refresh_tokens_revoked: 0 })
    const [counter] = await testDb()
      .select({ failures: loginThrottles.failures })
      .from(loginThrottles)
      .where(eq(loginThrottles.subject, `user:${user.id}`))
    // Its own claim is given back; the wrong current password before it stays counted.
    expect(counter?.failures).toBe(1)
  })
})

describe.skipIf(!realPostgres)('registration is throttled per address (issue 9 #16)', () => {
  it(`a burst of 12 attempts at a taken address: ${SIGNUP_LIMIT - 1} answer 409, the rest 429 + Retry-After`, async () => {
    const ip = uniqueIp()
    const email = uniqueEmail()
    const first = await postJson(
      '/auth/register',
      { email, password: STRONG_PASSWORD },
      { 'cf-connecting-ip': ip },
    )
    expect(first.status, await describeResponse(first)).toBe(201)
    const burst = await Promise.all(
      Array.from({ length: 12 }, () =>
        postJson('/auth/register', { email, password: STRONG_PASSWORD }, { 'cf-connecting-ip': ip }),
      ),
    )
    const statuses = burst.map((r) => r.status).sort()
    expect(statuses).toEqual([
      ...Array(SIGNUP_LIMIT - 1).fill(409),
      ...Array(12 - SIGNUP_LIMIT + 1).fill(429),
    ])
    const refused = burst.find((r) => r.status === 429)
    expect(await refused?.json()).toMatchObject({ code: 'rate_limited' })
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(3500)
    // Another address is not affected.
    const elsewhere = await postJson(
      '/auth/register',
      { email: uniqueEmail(), password: STRONG_PASSWORD },
      { 'cf-connecting-ip': uniqueIp() },
    )
    expect(elsewhere.status).toBe(201)
  })
})

describe.skipIf(!realPostgres)('account events commit with the change they record', () => {
  it('user_registered and user_login exist as soon as the answer does', async () => {
    const email = uniqueEmail()
    const ip = uniqueIp()
    const res = await postJson(
      '/auth/register',
      { email, password: STRONG_PASSWORD },
      { 'cf-connecting-ip': ip },
    )
    expect(res.status, await describeResponse(res)).toBe(201)
    const { user } = (await res.json()) as { user: { id: string } }
    expect(await eventsOf(user.id, 'user_registered')).toMatchObject([{ ip, metadata: { status: 'active' } }])
    const login = await postJson(
      '/auth/login',
      { email, password: STRONG_PASSWORD },
      { 'cf-connecting-ip': ip },
    )
    expect(login.status, await describeResponse(login)).toBe(200)
    expect(await eventsOf(user.id, 'user_login')).toMatchObject([{ ip, metadata: { via: 'api' } }])
  })

  it('user_logout (one session, and every session with counts) exists as soon as the answer does', async () => {
    const user = await seedUser()
    const first = await signIn(user)
    const second = await signIn(user)
    const third = await signIn(user)
    expect((await call('/auth/logout', { method: 'POST', headers: { cookie: first } })).status).toBe(204)
    expect(await eventsOf(user.id, 'user_logout')).toMatchObject([{ metadata: { all: false } }])
    // A session already ended records nothing more.
    expect((await call('/auth/logout', { method: 'POST', headers: { cookie: first } })).status).toBe(204)
    expect(await eventsOf(user.id, 'user_logout')).toHaveLength(1)
    expect((await call('/auth/logout-all', { method: 'POST', headers: { cookie: second } })).status).toBe(204)
    const events = await eventsOf(user.id, 'user_logout')
    expect(events.map((e) => e.metadata)).toContainEqual({ all: true, sessions: 2, refresh_tokens: 0 })
    expect((await call('/auth/session', { headers: { cookie: third } })).status).toBe(401)
  })

  it('a refused sign-in is recorded before the answer, with its reason', async () => {
    const user = await seedUser({ status: 'suspended' })
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status).toBe(403)
    expect(await eventsOf(user.id, 'user_login_failed')).toMatchObject([
      { metadata: { reason: 'account_suspended' } },
    ])
    // The password was right: the claim is given back, the account is not nearer its limit.
    const [counter] = await testDb()
      .select({ failures: loginThrottles.failures })
      .from(loginThrottles)
      .where(eq(loginThrottles.subject, `user:${user.id}`))
    expect(counter?.failures).toBe(0)
  })

  it('PATCH /auth/me and a password-reset request are recorded before the answer', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const patch = await call('/auth/me', {
      method: 'PATCH',
      headers: { cookie, 'content-type': 'application/json' },
      body: JSON.stringify({ display_name: 'Kim' }),
    })
    expect(patch.status, await describeResponse(patch)).toBe(200)
    expect(await eventsOf(user.id, 'user_updated')).toHaveLength(1)
    const reset = await postJson('/auth/password-reset', { email: user.email.toUpperCase() })
    expect(reset.status).toBe(202)
    expect(await eventsOf(user.id, 'password_reset_requested')).toHaveLength(1)
    // Within the cooldown no second link is issued, and nothing more is recorded.
    expect((await postJson('/auth/password-reset', { email: user.email })).status).toBe(202)
    expect(await eventsOf(user.id, 'password_reset_requested')).toHaveLength(1)
  })
})
