import { and, eq } from 'drizzle-orm'
import { expect } from 'vitest'
import { apiKeyQuotaCounters, apiKeys, apiKeyUsage } from '../../db/schema'
import { type SeededUser, seedUser as seedAccount } from './accounts'
import { testDb, unique } from './db'
import { adminHeaders, call, describeResponse, postJson } from './worker'

export type { SeededUser } from './accounts'

/** A user with a live session: the suite's one seedUser (test/helpers/accounts.ts). */
export function seedUser(options: { isAdmin?: boolean } = {}): Promise<SeededUser> {
  return seedAccount({ email: `${unique('apikeys')}@example.test`, session: true, ...options })
}

export interface CreatedKey {
  id: string
  key: string
  prefix: string
  last4: string
  name: string
  tier: string
  scopes: string[]
  metadata: Record<string, unknown>
  expires_at: string | null
  created_at: string
  owner_id: string
  status: string
  rotated_from: string | null
  grace_until: string | null
}

/** Creates a key through the API as `headers` (a user's session, or the admin token). */
export async function createKey(headers: Record<string, string>, body: Record<string, unknown> = {}) {
  const res = await postJson('/api-keys', { name: unique('key'), ...body }, headers)
  expect(res.status, await describeResponse(res)).toBe(201)
  return (await res.json()) as CreatedKey
}

/** An admin-created key for a fresh user (tier and rate limit settable). */
export async function createKeyAsAdmin(body: Record<string, unknown> = {}) {
  const owner = body.owner_id === undefined ? await seedUser() : undefined
  return createKey(adminHeaders(), { owner_id: owner?.id, ...body })
}

export interface VerifyAnswer {
  valid: boolean
  code: string
  key_id: string | null
  owner_id: string | null
  tenant_id: string | null
  tier: string | null
  scopes: string[] | null
  metadata: Record<string, unknown> | null
  quota: { limit: number | null; remaining: number | null; reset_at: string | null } | null
  ratelimit: { limit: number | null; remaining: number | null; reset_at: string | null } | null
}

export async function verify(body: unknown, headers: Record<string, string> = adminHeaders()) {
  const res = await postJson('/api-keys/verify', body, headers)
  return res
}

export async function verifyKey(key: string, endpoint?: string): Promise<VerifyAnswer> {
  const res = await verify(endpoint === undefined ? { key } : { key, endpoint })
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await res.json()) as VerifyAnswer
}

export function getJson(path: string, headers: Record<string, string>) {
  return call(path, { headers })
}

// One poller and one round-trip reader for the whole suite; re-exported for existing imports.
export { eventually } from './poll'
export { type RoundTrips, roundTrips } from './round-trips'

export async function usageRows(keyId: string) {
  return testDb().select().from(apiKeyUsage).where(eq(apiKeyUsage.keyId, keyId))
}

export async function keyRow(keyId: string) {
  const [row] = await testDb().select().from(apiKeys).where(eq(apiKeys.id, keyId))
  return row
}

export function startOfUtcMonth(now = new Date()): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))
}

/**
 * Runs a test body whose expectations name the current UTC month (quota period, reset_at),
 * computed here and by the Worker each from its own clock. If the month turned while it ran
 * and the body failed, it runs once more inside the new month; any other failure stands.
 */
export async function inOneUtcMonth<T>(body: () => Promise<T>): Promise<T> {
  const before = startOfUtcMonth().getTime()
  try {
    return await body()
  } catch (error) {
    if (startOfUtcMonth().getTime() === before) {
      throw error
    }
    return body()
  }
}

/** Sets this month's quota counter of a key (as if it had been used `used` times). */
export async function setQuotaUsed(keyId: string, used: number, periodStart = startOfUtcMonth()) {
  await testDb()
    .insert(apiKeyQuotaCounters)
    .values({ keyId, periodStart, used })
    .onConflictDoUpdate({
      target: [apiKeyQuotaCounters.keyId, apiKeyQuotaCounters.periodStart],
      set: { used },
    })
}

export async function quotaUsed(keyId: string, periodStart = startOfUtcMonth()): Promise<number | undefined> {
  const [row] = await testDb()
    .select({ used: apiKeyQuotaCounters.used })
    .from(apiKeyQuotaCounters)
    .where(and(eq(apiKeyQuotaCounters.keyId, keyId), eq(apiKeyQuotaCounters.periodStart, periodStart)))
  return row?.used
}
