import { createExecutionContext, createScheduledController, waitOnExecutionContext } from 'cloudflare:test'
import { eq, inArray, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import * as s from '../../db/schema'
import worker from '../../functions/index'
import { purgeExpired } from '../../scheduled/purge'
import { PURGE_RULES } from '../../scheduled/rules'
import { testDb, unique } from '../helpers/db'
import {
  adminHeaders,
  call,
  describeResponse,
  fileEnv,
  realPostgres,
  useIsolatedDatabase,
} from '../helpers/worker'

// A purge, the cron's outbox delivery and POST /admin/purge (real clock) act on every row of a
// database: this file gets a database of its own so files running in parallel keep theirs.
useIsolatedDatabase('purge')

// The purge deletes by comparing with the `now` it is given. Seeding around an instant in
// 2001 keeps these tests away from rows other suites create around the real clock.
const NOW = new Date('2001-06-01T00:00:00Z')
const DAY = 86_400_000
const at = (offsetDays: number) => new Date(NOW.getTime() + offsetDays * DAY)
// Raw usage rows keep their own (shorter) retention beside the counters'.
const WINDOW = { now: NOW, usageRetentionDays: 90, usageDetailRetentionDays: 30, auditRetentionDays: 365 }
const hash = () => `${unique('h')}-${crypto.randomUUID()}`

interface Seeded {
  /** Ids (or keys) of rows that must survive, per table. */
  live: Record<string, string[]>
  expired: Record<string, number>
}

/** A user and an API key of theirs, created long before NOW. */
async function seedUserWithKey(name: string): Promise<{ user: { id: string }; key: { id: string } }> {
  const db = testDb()
  const [user] = await db
    .insert(s.users)
    .values({ email: `${unique(name)}@example.com`, passwordHash: 'x', createdAt: at(-900) })
    .returning({ id: s.users.id })
  const [key] = await db
    .insert(s.apiKeys)
    .values({ keyHash: hash(), prefix: 'pk_test_x', last4: 'abcd', name, ownerUserId: user?.id ?? '' })
    .returning({ id: s.apiKeys.id })
  if (user === undefined || key === undefined) {
    throw new Error('seed failed')
  }
  return { user, key }
}

/** One user, client and key, then expired and live rows in every table the purge touches. */
async function seedEveryTarget(): Promise<Seeded> {
  const db = testDb()
  const { user, key } = await seedUserWithKey('purge')
  const [client] = await db
    .insert(s.oauthClients)
    .values({
      clientId: unique('client'),
      tokenEndpointAuthMethod: 'none',
      redirectUris: ['https://a.example/cb'],
    })
    .returning({ id: s.oauthClients.id })
  if (client === undefined) {
    throw new Error('seed failed')
  }
  const live: Record<string, string[]> = {}
  const keep = (table: string, id: string | undefined) => {
    live[table] = [...(live[table] ?? []), id ?? '']
  }
  const codes = await db
    .insert(s.authorizationCodes)
    .values(
      [at(-1), at(-1), at(1)].map((expiresAt, i) => ({
        codeHash: hash(),
        clientId: client.id,
        userId: user.id,
        redirectUri: 'https://a.example/cb',
        codeChallenge: 'c'.repeat(43),
        authTime: at(-2),
        expiresAt,
        // A consumed code that has not expired stays, so a replay is still recognised.
        consumedAt: i === 2 ? at(-0.5) : null,
      })),
    )
    .returning({ id: s.authorizationCodes.id, expiresAt: s.authorizationCodes.expiresAt })
  keep('authorization_codes', codes.find((c) => c.expiresAt > NOW)?.id)

  const sessions = await db
    .insert(s.sessions)
    .values([at(-0.01), at(0.01)].map((expiresAt) => ({ tokenHash: hash(), userId: user.id, expiresAt })))
    .returning({ id: s.sessions.id, expiresAt: s.sessions.expiresAt })
  keep('sessions', sessions.find((r) => r.expiresAt > NOW)?.id)

  const family = crypto.randomUUID()
  const refresh = await db
    .insert(s.refreshTokens)
    .values(
      [
        // expired past the grace period
        { expiresAt: at(-2), revokedAt: null },
        // revoked past the grace period
        { expiresAt: at(20), revokedAt: at(-3) },
        // expired, but within the grace period
        { expiresAt: at(-0.5), revokedAt: null },
        // revoked recently
        { expiresAt: at(20), revokedAt: at(-0.5) },
        // live
        { expiresAt: at(20), revokedAt: null },
      ].map((r) => ({ ...r, tokenHash: hash(), familyId: family, clientId: client.id, userId: user.id })),
    )
    .returning({ id: s.refreshTokens.id })
  for (const r of refresh.slice(2)) {
    keep('refresh_tokens', r.id)
  }

  const devices = await db
    .insert(s.deviceCodes)
    .values(
      [at(-1), at(1)].map((expiresAt) => ({
        deviceCodeHash: hash(),
        userCodeHash: hash(),
        clientId: client.id,
        expiresAt,
      })),
    )
    .returning({ id: s.deviceCodes.id, expiresAt: s.deviceCodes.expiresAt })
  keep('device_codes', devices.find((r) => r.expiresAt > NOW)?.id)

  const verifications = await db
    .insert(s.emailVerifications)
    .values(
      [at(-1), at(1)].map((expiresAt) => ({ tokenHash: hash(), userId: user.id, email: 'a@b.c', expiresAt })),
    )
    .returning({ id: s.emailVerifications.id, expiresAt: s.emailVerifications.expiresAt })
  keep('email_verifications', verifications.find((r) => r.expiresAt > NOW)?.id)

  const resets = await db
    .insert(s.passwordResets)
    .values([at(-1), at(1)].map((expiresAt) => ({ tokenHash: hash(), userId: user.id, expiresAt })))
    .returning({ id: s.passwordResets.id, expiresAt: s.passwordResets.expiresAt })
  keep('password_resets', resets.find((r) => r.expiresAt > NOW)?.id)

  const changes = await db
    .insert(s.emailChanges)
    .values(
      [at(-1), at(1)].map((expiresAt) => ({
        tokenHash: hash(),
        userId: user.id,
        newEmail: 'n@b.c',
        expiresAt,
      })),
    )
    .returning({ id: s.emailChanges.id, expiresAt: s.emailChanges.expiresAt })
  keep('email_changes', changes.find((r) => r.expiresAt > NOW)?.id)

  const jtiLive = unique('jti')
  await db.insert(s.revokedAccessTokens).values([
    { jti: unique('jti'), expiresAt: at(-0.1) },
    { jti: jtiLive, expiresAt: at(0.1) },
  ])
  keep('revoked_access_tokens', jtiLive)

  const throttleLive = unique('ip:')
  await db.insert(s.loginThrottles).values([
    { subject: unique('ip:'), failures: 3, windowStartedAt: at(-1), expiresAt: at(-0.5) },
    { subject: throttleLive, failures: 3, windowStartedAt: at(0), expiresAt: at(0.01) },
  ])
  keep('login_throttles', throttleLive)

  const proofLive = hash()
  await db.insert(s.usedProofJtis).values([
    { jtiHash: hash(), expiresAt: at(-0.01) },
    { jtiHash: proofLive, expiresAt: at(0.01) },
  ])
  keep('used_proof_jtis', proofLive)

  const pars = await db
    .insert(s.pushedAuthorizationRequests)
    .values(
      [at(-0.01), at(0.01)].map((expiresAt) => ({
        requestUriHash: hash(),
        clientId: client.id,
        params: { response_type: 'code' },
        expiresAt,
      })),
    )
    .returning({ id: s.pushedAuthorizationRequests.id, expiresAt: s.pushedAuthorizationRequests.expiresAt })
  keep('pushed_authorization_requests', pars.find((r) => r.expiresAt > NOW)?.id)

  const flows = await db
    .insert(s.federatedLoginStates)
    .values(
      [at(-0.01), at(0.01)].map((expiresAt) => ({
        stateHash: hash(),
        provider: 'github',
        returnTo: '/',
        expiresAt,
      })),
    )
    .returning({ id: s.federatedLoginStates.id, expiresAt: s.federatedLoginStates.expiresAt })
  keep('federated_login_states', flows.find((r) => r.expiresAt > NOW)?.id)

  const invitations = await db
    .insert(s.tenantInvitations)
    .values(
      [at(-0.01), at(0.01)].map((expiresAt) => ({
        tenantId: s.DEFAULT_TENANT_ID,
        email: 'a@b.c',
        tokenHash: hash(),
        invitedBy: 'admin',
        expiresAt,
      })),
    )
    .returning({ id: s.tenantInvitations.id, expiresAt: s.tenantInvitations.expiresAt })
  keep('tenant_invitations', invitations.find((r) => r.expiresAt > NOW)?.id)

  const challenges = await db
    .insert(s.mfaChallenges)
    .values(
      [at(-0.01), at(0.01)].map((expiresAt) => ({
        tokenHash: hash(),
        userId: user.id,
        via: 'api',
        expiresAt,
      })),
    )
    .returning({ id: s.mfaChallenges.id, expiresAt: s.mfaChallenges.expiresAt })
  keep('mfa_challenges', challenges.find((r) => r.expiresAt > NOW)?.id)

  const answered = await db
    .insert(s.webauthnChallenges)
    .values(
      [at(-0.01), at(0.01)].map((expiresAt) => ({
        challengeHash: hash(),
        purpose: 'sign_in' as const,
        expiresAt,
      })),
    )
    .returning({ id: s.webauthnChallenges.id, expiresAt: s.webauthnChallenges.expiresAt })
  keep('webauthn_challenges', answered.find((r) => r.expiresAt > NOW)?.id)

  const usage = await db
    .insert(s.apiKeyUsage)
    .values(
      // Past the detail retention (30 days) though within the counters' (90): it goes too.
      [at(-91), at(-31), at(-29)].map((createdAt) => ({
        keyId: key.id,
        createdAt,
        success: true,
        code: 'VALID',
      })),
    )
    .returning({ id: s.apiKeyUsage.id, createdAt: s.apiKeyUsage.createdAt })
  keep('api_key_usage', usage.find((r) => r.createdAt > at(-30))?.id)

  const counters = await db
    .insert(s.apiKeyUsageCounters)
    .values(
      [at(-91), at(-89)].map((hourStart, i) => ({
        keyId: key.id,
        hourStart,
        endpoint: `purge-${i}-${crypto.randomUUID()}`,
        success: 1,
      })),
    )
    .returning({ endpoint: s.apiKeyUsageCounters.endpoint, hourStart: s.apiKeyUsageCounters.hourStart })
  keep('api_key_usage_counters', counters.find((r) => r.hourStart > at(-90))?.endpoint)

  const clientCounters = await db
    .insert(s.oauthClientUsageCounters)
    .values(
      [at(-91), at(-89)].map((hourStart, i) => ({
        clientId: client.id,
        hourStart,
        grantType: `purge-${i}-${crypto.randomUUID()}`,
        success: 1,
        lastUsedAt: hourStart,
      })),
    )
    .returning({
      grantType: s.oauthClientUsageCounters.grantType,
      hourStart: s.oauthClientUsageCounters.hourStart,
    })
  keep('oauth_client_usage_counters', clientCounters.find((r) => r.hourStart > at(-90))?.grantType)

  const audit = await db
    .insert(s.auditEvents)
    .values(
      [at(-366), at(-364)].map((createdAt) => ({
        type: 'user_login',
        actor: 'system',
        userId: user.id,
        createdAt,
      })),
    )
    .returning({ id: s.auditEvents.id, createdAt: s.auditEvents.createdAt })
  keep('audit_events', audit.find((r) => r.createdAt > at(-365))?.id)

  const mail = await db
    .insert(s.emailOutbox)
    .values(
      [
        { sentAt: at(-8) },
        // delivered recently, and not delivered yet: both stay
        { sentAt: at(-6) },
        { sentAt: null },
      ].map((r) => ({ ...r, toAddress: 'a@b.c', template: 'verify', subject: 'Hi', createdAt: at(-10) })),
    )
    .returning({ id: s.emailOutbox.id })
  for (const m of mail.slice(1)) {
    keep('email_outbox', m.id)
  }

  return {
    live,
    expired: {
      authorization_codes: 2,
      sessions: 1,
      refresh_tokens: 2,
      device_codes: 1,
      email_verifications: 1,
      password_resets: 1,
      email_changes: 1,
      revoked_access_tokens: 1,
      login_throttles: 1,
      used_proof_jtis: 1,
      pushed_authorization_requests: 1,
      federated_login_states: 1,
      tenant_invitations: 1,
      mfa_challenges: 1,
      webauthn_challenges: 1,
      api_key_usage: 2,
      api_key_usage_counters: 1,
      oauth_client_usage_counters: 1,
      audit_events: 1,
      email_outbox: 1,
    },
  }
}

const KEY_COLUMN: Record<string, string> = {
  revoked_access_tokens: 'jti',
  login_throttles: 'subject',
  used_proof_jtis: 'jti_hash',
  api_key_usage_counters: 'endpoint',
  oauth_client_usage_counters: 'grant_type',
}

async function surviving(table: string, keys: string[]): Promise<number> {
  const column = KEY_COLUMN[table] ?? 'id'
  const [row] = await queryRows<{ n: number }>(
    testDb(),
    sql`select count(*)::int as n from ${sql.identifier(table)} where ${sql.identifier(column)}::text in (${sql.join(
      keys.map((k) => sql`${k}`),
      sql`, `,
    )})`,
  )
  return row?.n ?? 0
}

async function leftExpired(): Promise<number> {
  let total = 0
  for (const rule of PURGE_RULES) {
    const [row] = await queryRows<{ n: number }>(
      testDb(),
      sql`select count(*)::int as n from ${sql.identifier(rule.table)} where ${rule.expired(WINDOW)}`,
    )
    total += row?.n ?? 0
  }
  return total
}

describe('purge', () => {
  it('has a rule for every table whose rows expire (derived from the live schema)', async () => {
    // Tables with an expiry column whose rows are kept on purpose, and why.
    const kept: Record<string, string> = {
      api_keys: 'an expired key stays so verify answers EXPIRED (and its usage history keeps its owner)',
      signing_keys: 'retired keys are managed by rotation, not by the purge',
      service_keys:
        'issued by hand and few; an expired or revoked key stays listed (include_revoked) as the record of what each service held',
    }
    const rows = await queryRows<{ table_name: string }>(
      testDb(),
      sql`select distinct table_name from information_schema.columns
          where table_schema = 'public' and column_name = 'expires_at'`,
    )
    const expiring = rows.map((r) => r.table_name).filter((t) => kept[t] === undefined)
    const ruled = PURGE_RULES.map((r) => r.table)
    expect(expiring.length).toBeGreaterThan(0)
    for (const table of expiring) {
      expect(ruled, `${table} has expires_at but no purge rule`).toContain(table)
    }
    // Retention by age: the append-only logs.
    expect(ruled).toEqual(expect.arrayContaining(['api_key_usage', 'audit_events', 'email_outbox']))
    expect(new Set(ruled).size, 'one rule per table').toBe(ruled.length)
  })

  it('deletes exactly the expired rows of every table and keeps the live ones', async () => {
    const seeded = await seedEveryTarget()
    const report = await purgeExpired(testDb(), WINDOW)
    expect(report.done).toBe(true)
    expect(report.deleted).toEqual(seeded.expired)
    for (const [table, keys] of Object.entries(seeded.live)) {
      expect(await surviving(table, keys), table).toBe(keys.length)
    }
    expect(await leftExpired()).toBe(0)
  })

  it('with USAGE_DETAIL_RETENTION_DAYS=0 deletes every raw usage row and keeps the counters', async () => {
    const db = testDb()
    const keyId = (await seedUserWithKey('detail')).key.id
    await db.insert(s.apiKeyUsage).values([
      { keyId, createdAt: at(-1), success: true, code: 'VALID' },
      { keyId, createdAt: new Date(NOW.getTime() - 1), success: false, code: 'RATE_LIMITED' },
    ])
    const endpoint = `detail-${crypto.randomUUID()}`
    await db.insert(s.apiKeyUsageCounters).values({ keyId, hourStart: at(-1), endpoint, success: 1 })
    const report = await purgeExpired(db, { ...WINDOW, usageDetailRetentionDays: 0 })
    expect(report.deleted.api_key_usage).toBeGreaterThanOrEqual(2)
    expect(await db.select().from(s.apiKeyUsage).where(eq(s.apiKeyUsage.keyId, keyId))).toHaveLength(0)
    expect(await surviving('api_key_usage_counters', [endpoint])).toBe(1)
  })

  it('is a no-op when nothing has expired, and idempotent', async () => {
    const before = new Date('1990-01-01T00:00:00Z')
    const report = await purgeExpired(testDb(), { ...WINDOW, now: before })
    expect(Object.values(report.deleted).every((n) => n === 0)).toBe(true)
    expect(report.done).toBe(true)
    await seedEveryTarget()
    await purgeExpired(testDb(), WINDOW)
    const again = await purgeExpired(testDb(), WINDOW)
    expect(Object.values(again.deleted).every((n) => n === 0)).toBe(true)
  })

  it('works in bounded batches and stops at its time budget', async () => {
    const db = testDb()
    const [user] = await db
      .insert(s.users)
      .values({ email: `${unique('batch')}@example.com`, passwordHash: 'x' })
      .returning({ id: s.users.id })
    const userId = user?.id ?? ''
    await db
      .insert(s.sessions)
      .values(Array.from({ length: 10 }, () => ({ tokenHash: hash(), userId, expiresAt: at(-1) })))
    let statements = 0
    // Each call of the clock is one loop turn; the budget of 2 ticks allows two batches.
    const clock = () => statements++
    const partial = await purgeExpired(db, { ...WINDOW, batchRows: 3, timeBudgetMs: 3, clock })
    expect(partial.done).toBe(false)
    const left = await db.select({ id: s.sessions.id }).from(s.sessions).where(eq(s.sessions.userId, userId))
    expect(left.length).toBeGreaterThan(0)
    expect(left.length).toBeLessThan(10)
    const rest = await purgeExpired(db, { ...WINDOW, batchRows: 3 })
    expect(rest.done).toBe(true)
    expect(await db.select().from(s.sessions).where(eq(s.sessions.userId, userId))).toHaveLength(0)
  })

  it.skipIf(!realPostgres)(
    'two concurrent runs neither fail nor count a row twice (real Postgres)',
    async () => {
      const db = testDb()
      const [user] = await db
        .insert(s.users)
        .values({ email: `${unique('race')}@example.com`, passwordHash: 'x' })
        .returning({ id: s.users.id })
      const userId = user?.id ?? ''
      const expiredIds = await db
        .insert(s.sessions)
        .values(Array.from({ length: 200 }, () => ({ tokenHash: hash(), userId, expiresAt: at(-1) })))
        .returning({ id: s.sessions.id })
      const runs = await Promise.all([
        purgeExpired(db, { ...WINDOW, batchRows: 7 }),
        purgeExpired(db, { ...WINDOW, batchRows: 7 }),
      ])
      const deleted = runs.reduce((sum, r) => sum + (r.deleted.sessions ?? 0), 0)
      expect(deleted).toBe(200)
      const left = await db
        .select({ id: s.sessions.id })
        .from(s.sessions)
        .where(
          inArray(
            s.sessions.id,
            expiredIds.map((r) => r.id),
          ),
        )
      expect(left).toHaveLength(0)
    },
  )
})

describe('cron trigger', () => {
  it('runs the purge at the scheduled time', async () => {
    const seeded = await seedEveryTarget()
    const ctx = createExecutionContext()
    // The retention WINDOW uses, as a deployment would configure it.
    const env = {
      ...fileEnv(),
      USAGE_RETENTION_DAYS: '90',
      USAGE_DETAIL_RETENTION_DAYS: '30',
      AUDIT_RETENTION_DAYS: '365',
    }
    await worker.scheduled(createScheduledController({ scheduledTime: NOW, cron: '*/15 * * * *' }), env, ctx)
    await waitOnExecutionContext(ctx)
    expect(await leftExpired()).toBe(0)
    for (const [table, keys] of Object.entries(seeded.live)) {
      expect(await surviving(table, keys), table).toBe(keys.length)
    }
  })
})

describe('POST /admin/purge', () => {
  it('runs the purge on the real clock and reports counts per table', async () => {
    const db = testDb()
    const [user] = await db
      .insert(s.users)
      .values({ email: `${unique('admin-purge')}@example.com`, passwordHash: 'x' })
      .returning({ id: s.users.id })
    const userId = user?.id ?? ''
    const [expired, live] = await db
      .insert(s.sessions)
      .values([
        { tokenHash: hash(), userId, expiresAt: new Date(Date.now() - 60_000) },
        { tokenHash: hash(), userId, expiresAt: new Date(Date.now() + 3_600_000) },
      ])
      .returning({ id: s.sessions.id })
    const res = await call('/admin/purge', { method: 'POST', headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as { deleted: Record<string, number>; duration_ms: number; done: boolean }
    expect(Object.keys(body.deleted).sort()).toEqual(PURGE_RULES.map((r) => r.table).sort())
    expect(body.done).toBe(true)
    expect(body.deleted.sessions).toBeGreaterThanOrEqual(1)
    expect(Number.isInteger(body.duration_ms)).toBe(true)
    expect(body.duration_ms).toBeGreaterThanOrEqual(0)
    expect(body.duration_ms).toBeLessThan(30_000)
    const left = await db
      .select({ id: s.sessions.id })
      .from(s.sessions)
      .where(inArray(s.sessions.id, [expired?.id ?? '', live?.id ?? '']))
    expect(left.map((r) => r.id)).toEqual([live?.id])
  })

  it('refuses callers without the admin token', async () => {
    const res = await call('/admin/purge', { method: 'POST', headers: { authorization: 'Bearer nope' } })
    expect(res.status).toBe(401)
  })
})
