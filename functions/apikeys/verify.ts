import type { SQL } from 'drizzle-orm'
import type { Executor } from '../../db/client'
import { checkAndChargeKey, type KeyCheckRow } from '../../db/queries/apikeys'
import { spendProofJti } from '../../db/queries/proof-jtis'
import type { ApiKeyTier, TenantPlan } from '../../db/schema/constants'
import { sha256Hex } from '../crypto/hash'
import { ProblemError } from '../errors/problem'
import { dpopReplayed } from '../middleware/access-credential'
import { unauthenticated } from '../middleware/authenticate'
import type { DpopProof } from '../tokens/dpop'
import { parseApiKey } from './key-format'

export const VERIFY_CODES = [
  'VALID',
  'NOT_FOUND',
  'REVOKED',
  'EXPIRED',
  'QUOTA_EXCEEDED',
  'RATE_LIMITED',
  'MALFORMED',
  /** The key is live but its owner is not active (pending, suspended) or its tenant is disabled. */
  'DISABLED',
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
  /** The tenant-wide monthly quota all the tenant's keys share; null when the tenant has none. */
  tenantQuota: QuotaState | null
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
  | { valid: false; code: 'REVOKED' | 'EXPIRED' | 'DISABLED'; keyId: string }
  | { valid: false; code: 'NOT_FOUND' | 'MALFORMED' }

export interface VerifyOptions {
  tierQuotas: Readonly<Record<ApiKeyTier, number | null>>
  /** TENANT_MONTHLY_QUOTAS: the tenant-wide quota per plan, for tenants without their own. */
  tenantQuotas: Readonly<Record<TenantPlan, number | null>>
  now: Date
  /** The caller's pending credential check (see KeyCheckInput.callerGuard). */
  callerGuard?: SQL | undefined
  /** The caller's service key hash (see KeyCheckInput.serviceKeyHash), checked in the same statement. */
  serviceKeyHash?: string | undefined
  /** The caller's checked DPoP proof, whose `jti` the verify statement spends before anything else. */
  proof?: DpopProof | undefined
  /** The endpoint or tool name to record with the call (validated text). */
  endpoint: string | null
  /** When the request arrived, epoch milliseconds (for the usage row's response time). */
  startedAtMs: number
  /** Write the raw usage row beside the hourly counter (USAGE_DETAIL_RETENTION_DAYS > 0). */
  recordDetail: boolean
}

/** Distinct unknown key hashes remembered per isolate. */
export const UNKNOWN_KEY_CACHE_ENTRIES = 10_000

// A well-formed key whose hash matched no row. Keys are 256 random bits minted only by us, so a
// hash that was unknown cannot start to exist: caching the miss can never hide a live key, and
// revocation state is never cached. Insertion order makes eviction oldest-first.
const unknownKeyHashes = new Set<string>()

function rememberUnknown(keyHash: string): void {
  if (unknownKeyHashes.size >= UNKNOWN_KEY_CACHE_ENTRIES) {
    const oldest = unknownKeyHashes.values().next()
    if (!oldest.done) {
      unknownKeyHashes.delete(oldest.value)
    }
  }
  unknownKeyHashes.add(keyHash)
}

/** How many unknown key hashes this isolate remembers (for tests and the bench). */
export function unknownKeyCacheSize(): number {
  return unknownKeyHashes.size
}

/**
 * Verifies a presented API key, counts it against its rate limit and monthly quota and records
 * the call (usage row, hourly counter, last_used_at). Round trips, in all: 0 for a malformed key
 * (shape and checksum are checked first) and for a key this isolate already found unknown, else
 * exactly 1 (nothing deferred), a DPoP caller's proof spent in it. A DPoP caller asking about a
 * remembered unknown key spends its proof alone (1), so no proof is ever accepted twice.
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
  const keyHash = await sha256Hex(parsed.key)
  // A remembered miss spends no statement, so a caller token's database half is not re-read for
  // it: a caller whose token was revoked meanwhile learns again that a key it already asked about
  // does not exist, and nothing else (no charge, no key data). Every other answer rides with the
  // caller check in one statement.
  const proof = options.proof
  if (unknownKeyHashes.has(keyHash)) {
    if (proof !== undefined && !(await spendProofJti(x, proof.jtiHash, proof.expiresAt))) {
      throw replayRefused()
    }
    return { valid: false, code: 'NOT_FOUND' }
  }
  const periodStart = startOfUtcMonth(options.now)
  const outcome = await checkAndChargeKey(x, {
    keyHash,
    now: options.now,
    periodStart,
    tierQuotas: options.tierQuotas,
    tenantQuotas: options.tenantQuotas,
    endpoint: options.endpoint,
    elapsedMs: Date.now() - options.startedAtMs,
    recordDetail: options.recordDetail,
    ...(options.callerGuard === undefined ? {} : { callerGuard: options.callerGuard }),
    ...(options.serviceKeyHash === undefined ? {} : { serviceKeyHash: options.serviceKeyHash }),
    ...(proof === undefined ? {} : { proofJti: { jtiHash: proof.jtiHash, expiresAt: proof.expiresAt } }),
  })
  if (outcome.proofReplayed === true) {
    throw replayRefused()
  }
  if (outcome.callerRefused) {
    throw new ProblemError('unauthenticated', {
      detail: 'The bearer token is not valid',
      headers: { 'www-authenticate': 'Bearer realm="portcullis", error="invalid_token"' },
    })
  }
  const row = outcome.row
  if (row === undefined) {
    // A key outside a tenant service key's tenant exists: only a hash no row has is an unknown.
    if (!outcome.hiddenKey) {
      rememberUnknown(keyHash)
    }
    return { valid: false, code: 'NOT_FOUND' }
  }
  if (row.code === 'REVOKED' || row.code === 'EXPIRED' || row.code === 'DISABLED') {
    return { valid: false, code: row.code, keyId: row.id }
  }
  const key = describeKey(row, nextUtcMonth(periodStart))
  if (row.code === 'VALID') {
    return { valid: true, code: 'VALID', key, keyId: row.id }
  }
  // The snapshot may trail the counters under concurrency: a refused limit has nothing left.
  if (row.code === 'RATE_LIMITED') {
    return {
      valid: false,
      code: 'RATE_LIMITED',
      key: { ...key, ratelimit: { ...key.ratelimit, remaining: 0 } },
      keyId: row.id,
    }
  }
  // Whichever quota refused has nothing left: the tenant's when the key's own still had room.
  const tenantRefused =
    key.tenantQuota !== null && (row.quotaLimit === null || row.quotaUsedBefore < row.quotaLimit)
  return {
    valid: false,
    code: 'QUOTA_EXCEEDED',
    key: tenantRefused
      ? { ...key, tenantQuota: key.tenantQuota === null ? null : { ...key.tenantQuota, remaining: 0 } }
      : { ...key, quota: { ...key.quota, remaining: 0 } },
    keyId: row.id,
  }
}

/** A spent proof's refusal, as the caller check answers it (401, DPoP challenge, invalid_dpop_proof). */
function replayRefused(): ProblemError {
  return unauthenticated('The bearer token is not valid', 'invalid_token', dpopReplayed())
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
    tenantQuota:
      row.tenantQuotaLimit === null
        ? null
        : {
            limit: row.tenantQuotaLimit,
            remaining: Math.max(0, row.tenantQuotaLimit - (row.tenantUsedAfter ?? row.tenantUsedBefore)),
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
