import { and, eq, like } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, loginThrottles } from '../../db/schema'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { describeResponse, postJson, realPostgres } from '../helpers/worker'

/** LOGIN_MAX_FAILURES_PER_ACCOUNT and LOGIN_MAX_FAILURES_PER_IP as wrangler.toml sets them. */
const ACCOUNT_LIMIT = 5
const IP_LIMIT = 50

/** An address of the benchmarking range (RFC 2544) no other test uses. */
function uniqueIp(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3))
  return `198.${18 + ((bytes[0] ?? 0) % 2)}.${bytes[1]}.${bytes[2]}`
}

function login(email: string, password: string, ip: string): Promise<Response> {
  return postJson('/auth/login', { email, password }, { 'cf-connecting-ip': ip })
}

/** A password check happened behind every answer but 429: 401 (wrong) or 200 (right). */
function checked(answers: readonly Response[]): number {
  return answers.filter((r) => r.status !== 429).length
}

async function failedLoginEvents(userId: string, reason: string): Promise<number> {
  const rows = await testDb()
    .select({ metadata: auditEvents.metadata })
    .from(auditEvents)
    .where(and(eq(auditEvents.userId, userId), eq(auditEvents.type, 'user_login_failed')))
  return rows.filter((r) => r.metadata.reason === reason).length
}

describe.skipIf(!realPostgres)('sign-in throttle under concurrency (issue 9 #1)', () => {
  it('15 concurrent sign-ins (14 wrong, 1 right) check at most 5 passwords; the right one afterwards gets 429', async () => {
    const user = await seedUser()
    const ip = uniqueIp()
    const burst = await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        login(user.email, i === 7 ? user.password : `Wrong-Password-${i}`, ip),
      ),
    )
    const statuses = burst.map((r) => r.status)
    // Wrong passwords checked never pass the limit, whatever the order; the right one may be
    // checked on top (its claim is given back), never more.
    expect(statuses.filter((s) => s === 401).length, `statuses: ${statuses.join(',')}`).toBeLessThanOrEqual(
      ACCOUNT_LIMIT,
    )
    expect(checked(burst), `statuses: ${statuses.join(',')}`).toBeLessThanOrEqual(ACCOUNT_LIMIT + 1)
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(15 - ACCOUNT_LIMIT - 1)
    for (const res of burst.filter((r) => r.status === 429)) {
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    // Each refusal's audit row is written before its answer: no more failed checks than allowed.
    expect(await failedLoginEvents(user.id, 'invalid_credentials')).toBe(
      statuses.filter((s) => s === 401).length,
    )

    const after = await login(user.email, user.password, uniqueIp())
    expect(after.status, await describeResponse(after)).toBe(429)
    expect(Number(after.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(Number(after.headers.get('retry-after'))).toBeLessThanOrEqual(900)
  })

  it('12 concurrent wrong passwords: exactly 5 are checked, 7 refused without a check', async () => {
    const user = await seedUser()
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(user.email, `Wrong-Password-${i}`, uniqueIp())),
    )
    const statuses = burst.map((r) => r.status).sort()
    expect(statuses).toEqual([...Array(ACCOUNT_LIMIT).fill(401), ...Array(12 - ACCOUNT_LIMIT).fill(429)])
    expect(await failedLoginEvents(user.id, 'invalid_credentials')).toBe(ACCOUNT_LIMIT)
    expect(await failedLoginEvents(user.id, 'throttled')).toBe(12 - ACCOUNT_LIMIT)
  })

  it('an unknown address is throttled the same way, whatever its case', async () => {
    const email = uniqueEmail()
    const ip = uniqueIp()
    const burst = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        login(i % 2 === 0 ? email : email.toUpperCase(), `Wrong-Password-${i}`, ip),
      ),
    )
    expect(burst.map((r) => r.status).sort()).toEqual([...Array(5).fill(401), ...Array(3).fill(429)])
    // The unknown address is kept only as a hash (a password typed into the email field is not stored).
    const rows = await testDb()
      .select({ subject: loginThrottles.subject })
      .from(loginThrottles)
      .where(like(loginThrottles.subject, 'email:%'))
    expect(rows.some((r) => r.subject.includes(email.split('@')[0] ?? email))).toBe(false)
  })

  it(`per address: a burst at an address with ${IP_LIMIT - 5} failures checks exactly 5 more passwords`, async () => {
    const ip = uniqueIp()
    const now = Date.now()
    await testDb()
      .insert(loginThrottles)
      .values({
        subject: `ip:${ip}`,
        failures: IP_LIMIT - 5,
        windowStartedAt: new Date(now),
        expiresAt: new Date(now + 900_000),
      })
    const tag = unique('ipburst')
    const burst = await Promise.all(
      Array.from({ length: 12 }, (_, i) => login(`${tag}-${i}@example.test`, `Wrong-Password-${i}`, ip)),
    )
    expect(burst.map((r) => r.status).sort()).toEqual([...Array(5).fill(401), ...Array(7).fill(429)])
    const after = await login(uniqueEmail(), 'Wrong-Password-x', ip)
    expect(after.status).toBe(429)
  })

  it('a success gives back only its own claim: 4 typos, the right password, then 1 more typo is checked', async () => {
    const user = await seedUser()
    const ip = uniqueIp()
    for (let i = 0; i < ACCOUNT_LIMIT - 1; i++) {
      expect((await login(user.email, `Wrong-Password-${i}`, ip)).status).toBe(401)
    }
    expect((await login(user.email, user.password, ip)).status).toBe(200)
    // The earlier typos still count in their window: one more wrong password reaches the limit.
    expect((await login(user.email, 'Wrong-Password-x', ip)).status).toBe(401)
    expect((await login(user.email, 'Wrong-Password-y', ip)).status).toBe(429)
    expect((await login(user.email, user.password, ip)).status).toBe(429)
  })
})

describe.skipIf(!realPostgres)('one email normalisation (issue 9 #4)', () => {
  it('a dotted İ spelling shares the account counter of the address it signs in to', async () => {
    const local = unique('kim')
    const user = await seedUser({ email: `${local}@example.test` })
    const dotted = `${local.replace('k', 'K').replace('i', 'İ')}@example.test`
    const ip = uniqueIp()
    // The spelling finds the account (Postgres folds İ to i) ...
    const sameAccount = await login(dotted, user.password, ip)
    expect(sameAccount.status, await describeResponse(sameAccount)).toBe(200)
    // ... so its failures count against it: 3 + 2 wrong across both spellings lock it.
    for (let i = 0; i < 3; i++) {
      expect((await login(dotted, `Wrong-Password-${i}`, ip)).status).toBe(401)
    }
    for (let i = 0; i < 2; i++) {
      expect((await login(user.email, `Wrong-Password-${i}`, ip)).status).toBe(401)
    }
    const locked = await login(dotted, user.password, ip)
    expect(locked.status, await describeResponse(locked)).toBe(429)
    expect((await login(user.email, user.password, ip)).status).toBe(429)
    const [row] = await testDb()
      .select({ failures: loginThrottles.failures })
      .from(loginThrottles)
      .where(eq(loginThrottles.subject, `user:${user.id}`))
    expect(row?.failures).toBe(7)
  })

  it('a decomposed é signs in to the account registered with the composed one', async () => {
    const composed = `${unique('jos\u00e9')}@example.test`
    const register = await postJson('/auth/register', {
      email: composed,
      password: 'Correct-Horse-Battery-9',
    })
    expect(register.status, await describeResponse(register)).toBe(201)
    const taken = await postJson('/auth/register', {
      email: composed.normalize('NFD'),
      password: 'Correct-Horse-Battery-9',
    })
    expect(taken.status, await describeResponse(taken)).toBe(409)
  })
})
