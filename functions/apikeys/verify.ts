import type { SQL } from 'drizzle-orm'
import type { Executor } from '../../db/client'
import { checkAndChargeKey, type KeyCheckRow } from '../../db/queries/apikeys'
import type { ApiKeyTier } from '../../db/schema/constants'
import { sha256Hex } from '../crypto/hash'
import { ProblemError } from '../errors/problem'
import { parseApiKey } from './key-format'

export const VERIFY_CODES = [
  'VALID',
  'NOT_FOUND',
  'REVOKED',
  'EXPIRED',
  'QUOTA_EXCEEDED',
  'RATE_LIMITED',
  'MALFORMED',
] as const
export type VerifyCode = (typeof VERIFY_CODES)[number]

export interface QuotaState {
  /** Null: unlimited (enterprise). */
  limit: number | null
  /** Calls left this month after this one; null when unlimited. */
  remaining: number | null
  /** Start of the next UTC month. */
  resetAt: Date
}

export interface RateLimitState {
  /** Null: the key has no rate limit. */
  limit: number | null
  remaining: number | null
  resetAt: Date | null
}

export interface VerifiedKey {
  keyId: string
  ownerId: string
  tenantId: string
  tier: ApiKeyTier
  scopes: string[]
  metadata: Record<string, unknown>
  quota: QuotaState
  ratelimit: RateLimitState
}

/**
 * The outcome of a verify. `key` is present for VALID and for a genuine key refused by its
 * limits (QUOTA_EXCEEDED, RATE_LIMITED); `keyId` whenever a key row was found, for the usage
 * record.
 */
export type VerifyResult =
  | { valid: true; code: 'VALID'; key: VerifiedKey; keyId: string }
  | { valid: false; code: 'QUOTA_EXCEEDED' | 'RATE_LIMITED'; key: VerifiedKey; keyId: string }
  | { valid: false; code: 'REVOKED' | 'EXPIRED'; keyId: string }
  | { valid: false; code: 'NOT_FOUND' | 'MALFORMED' }

export interface VerifyOptions {
  tierQuotas: Readonly<Record<ApiKeyTier, number | null>>
  now: Date
  /** The caller's pending credential check (see KeyCheckInput.callerGuard). */
  callerGuard?: SQL | undefined
}

/**
 * Verifies a presented API key and counts it against its rate limit and monthly quota.
 * Round trips: 0 for a malformed key (shape and checksum are checked first), else exactly 1.
 * Writes nobody waits for (usage row, last_used_at) are the caller's, via `waitUntil`.
 */
export async function verifyApiKey(
  x: Executor,
  options: VerifyOptions,
  presented: string,
): Promise<VerifyResult> {
  const parsed = parseApiKey(presented)
  if (parsed.kind === 'malformed') {
    return { valid: false, code: 'MALFORMED' }
  }
  const periodStart = startOfUtcMonth(options.now)
  const outcome = await checkAndChargeKey(x, {
    keyHash: await sha256Hex(parsed.key),
    now: options.now,
    periodStart,
    tierQuotas: options.tierQuotas,
    ...(options.callerGuard === undefined ? {} : { callerGuard: options.callerGuard }),
  })
  if (outcome.callerRefused) {
    throw new ProblemError('unauthenticated', {
      detail: 'The bearer token is not valid',
      headers: { 'www-authenticate': 'Bearer realm="portcullis", error="invalid_token"' },
    })
  }
  const row = outcome.row
  if (row === undefined) {
    return { valid: false, code: 'NOT_FOUND' }
  }
  if (row.dead !== null) {
    return { valid: false, code: row.dead, keyId: row.id }
  }
  const key = describeKey(row, nextUtcMonth(periodStart))
  if (row.quotaUsedAfter !== null) {
    return { valid: true, code: 'VALID', key, keyId: row.id }
  }
  const quotaSpent = row.quotaLimit !== null && row.quotaUsedBefore >= row.quotaLimit
  // The window refused the call, unless the window was skipped because the quota was spent.
  const rateRefused = row.rateLimit !== null && row.windowCountAfter === null && !quotaSpent
  // The snapshot may trail the counters under concurrency: a refused limit has nothing left.
  if (rateRefused) {
    return {
      valid: false,
      code: 'RATE_LIMITED',
      key: { ...key, ratelimit: { ...key.ratelimit, remaining: 0 } },
      keyId: row.id,
    }
  }
  return {
    valid: false,
    code: 'QUOTA_EXCEEDED',
    key: { ...key, quota: { ...key.quota, remaining: 0 } },
    keyId: row.id,
  }
}

function describeKey(row: KeyCheckRow, quotaResetAt: Date): VerifiedKey {
  const used = row.quotaUsedAfter ?? row.quotaUsedBefore
  return {
    keyId: row.id,
    ownerId: row.ownerUserId,
    tenantId: row.tenantId,
    tier: row.tier,
    scopes: row.scopes,
    metadata: row.metadata,
    quota: {
      limit: row.quotaLimit,
      remaining: row.quotaLimit === null ? null : Math.max(0, row.quotaLimit - used),
      resetAt: quotaResetAt,
    },
    ratelimit:
      row.rateLimit === null
        ? { limit: null, remaining: null, resetAt: null }
        : {
            limit: row.rateLimit,
            remaining: Math.max(0, row.rateLimit - (row.windowCountAfter ?? row.windowCountBefore)),
            resetAt: new Date(row.windowResetAtMs),
          },
  }
}

export function startOfUtcMonth(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))
}

export function nextUtcMonth(periodStart: Date): Date {
  return new Date(Date.UTC(periodStart.getUTCFullYear(), periodStart.getUTCMonth() + 1, 1))
}
