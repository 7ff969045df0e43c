import { and, desc, eq, isNull, or, type SQL, sql } from 'drizzle-orm'
import { type Executor, type HttpDb, queryRows } from '../client'
import { retryOnDeadlock } from '../errors'
import { apiKeys, tenants, users } from '../schema'
import { type ApiKeyTier, DEFAULT_TENANT_ID, type TenantPlan } from '../schema/constants'

export type ApiKeyRow = typeof apiKeys.$inferSelect

/** The columns every read returns: never the hash. */
const PUBLIC_COLUMNS = {
  id: apiKeys.id,
  prefix: apiKeys.prefix,
  last4: apiKeys.last4,
  name: apiKeys.name,
  ownerUserId: apiKeys.ownerUserId,
  tenantId: apiKeys.tenantId,
  tier: apiKeys.tier,
  scopes: apiKeys.scopes,
  metadata: apiKeys.metadata,
  rateLimit: apiKeys.rateLimit,
  rateLimitWindowSeconds: apiKeys.rateLimitWindowSeconds,
  expiresAt: apiKeys.expiresAt,
  revokedAt: apiKeys.revokedAt,
  rotatedFrom: apiKeys.rotatedFrom,
  graceUntil: apiKeys.graceUntil,
  createdAt: apiKeys.createdAt,
  lastUsedAt: apiKeys.lastUsedAt,
}

export type ApiKeyRecord = Omit<ApiKeyRow, 'keyHash'>

/**
 * The tier the key's tenant's plan gives (issue 10), looked up by the insert itself; `requested`,
 * when set, must be that tier or nothing is written.
 */
export interface TierByPlan {
  byPlan: Readonly<Record<TenantPlan, ApiKeyTier>>
  /** The default tenant's keys' tier, whatever its plan. */
  defaultTenant: ApiKeyTier
  requested?: ApiKeyTier | undefined
}

export interface NewApiKey {
  keyHash: string
  prefix: string
  last4: string
  name: string
  /** A tier, or the tier of the owning tenant's plan. */
  tier: ApiKeyTier | TierByPlan
  scopes: readonly string[]
  metadata: Record<string, unknown>
  rateLimit: number | null
  rateLimitWindowSeconds: number
  expiresAt: Date | null
  createdAt: Date
}

/**
 * Who changed a key, for the audit row written in the same batch as the change: the event
 * exists exactly when the change does.
 */
export interface KeyAudit {
  type: 'api_key_created' | 'api_key_revoked' | 'api_key_rotated'
  actor: string
  clientId: string | null
  ip: string | null
  /** Identifiers and outcomes only; `key_id` and `prefix` are added from the key row. */
  metadata: Record<string, unknown>
}

/**
 * The audit row for a key, read from the key row the batch's previous statement wrote (its owner,
 * tenant, id and prefix); with `revokedAt`, only when that statement revoked it at that instant.
 */
function keyAuditStatement(x: Executor, keyId: string, audit: KeyAudit, revokedAt?: Date) {
  const onlyIfRevokedNow =
    revokedAt === undefined ? sql`` : sql` and revoked_at = ${revokedAt.toISOString()}::timestamptz`
  return x.execute(sql`insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
    select ${audit.type}, ${audit.actor}, owner_user_id, tenant_id, ${audit.clientId}, ${audit.ip},
      jsonb_build_object('key_id', id, 'prefix', prefix)
        || ${audit.type === 'api_key_created' ? sql`jsonb_build_object('tier', tier)` : sql`'{}'::jsonb`}
        || ${JSON.stringify(audit.metadata)}::jsonb
    from ${apiKeys} where id = ${keyId}${onlyIfRevokedNow}`)
}

function rowsOf<T>(result: unknown): T[] {
  return Array.isArray(result) ? (result as T[]) : (result as { rows: T[] }).rows
}

/** The `tier` of an insert whose tenant is the SQL `tenantId`: the given one, or its plan's. */
function tierOf(tier: NewApiKey['tier'], tenantId: SQL): { value: SQL; allowed: SQL } {
  if (typeof tier === 'string') {
    return { value: sql`${tier}`, allowed: sql`true` }
  }
  const value = sql`(select case when t.id = ${DEFAULT_TENANT_ID}::uuid then ${tier.defaultTenant}::text
      else ${JSON.stringify(tier.byPlan)}::jsonb ->> t.plan end from ${tenants} t where t.id = ${tenantId})`
  return {
    value,
    allowed: tier.requested === undefined ? sql`true` : sql`${tier.requested} = ${value}`,
  }
}

/** `insert … select` of a key for `ownerUserId` and `tenantId` (SQL), returning the record. */
function insertKeySql(id: string, key: NewApiKey, ownerUserId: SQL, tenantId: SQL, from: SQL): SQL {
  const tier = tierOf(key.tier, tenantId)
  return sql`insert into ${apiKeys} (id, key_hash, prefix, last4, name, owner_user_id, tenant_id, tier, scopes,
      metadata, rate_limit, rate_limit_window_seconds, expires_at, created_at)
    select ${id}::uuid, ${key.keyHash}, ${key.prefix}, ${key.last4}, ${key.name}, ${ownerUserId}, ${tenantId},
      ${tier.value}, ${textArray(key.scopes)}, ${JSON.stringify(key.metadata)}::jsonb, ${key.rateLimit}::int,
      ${key.rateLimitWindowSeconds}::int, ${key.expiresAt?.toISOString() ?? null}::timestamptz,
      ${key.createdAt.toISOString()}::timestamptz
    ${from} and ${tier.allowed}
    returning ${RECORD_JSON} as record`
}

/**
 * Inserts a key for a known owner and tenant (the caller's own), with its `api_key_created`
 * audit row. One round trip (a batch, so both commit or neither). Undefined (nothing written)
 * only when a requested tier is not the one the tenant's plan gives.
 */
export async function insertApiKey(
  db: HttpDb,
  owner: { userId: string; tenantId: string },
  key: NewApiKey,
  audit: KeyAudit,
): Promise<ApiKeyRecord | undefined> {
  const id = crypto.randomUUID()
  const [inserted] = await db.batch([
    db.execute(
      insertKeySql(id, key, sql`${owner.userId}::uuid`, sql`${owner.tenantId}::uuid`, sql`where true`),
    ),
    keyAuditStatement(db, id, audit),
  ])
  const row = rowsOf<{ record: RawApiKey }>(inserted)[0]
  return row === undefined ? undefined : fromRaw(row.record)
}

/**
 * Inserts a key owned by `ownerUserId`, taking the tenant from the user row in the same
 * statement, with its audit row. Undefined (and nothing written) when no such user exists.
 * One round trip.
 */
export async function insertApiKeyForUser(
  db: HttpDb,
  ownerUserId: string,
  key: NewApiKey,
  audit: KeyAudit,
): Promise<ApiKeyRecord | undefined> {
  const id = crypto.randomUUID()
  const [inserted] = await db.batch([
    db.execute(
      insertKeySql(
        id,
        key,
        sql`${users.id}`,
        sql`${users.tenantId}`,
        sql`from ${users} where ${users.id} = ${ownerUserId}`,
      ),
    ),
    keyAuditStatement(db, id, audit),
  ])
  const row = rowsOf<{ record: RawApiKey }>(inserted)[0]
  return row === undefined ? undefined : fromRaw(row.record)
}

/** A key by id, restricted to `ownerUserId` unless that is undefined (admin). One round trip. */
export async function findApiKey(
  x: Executor,
  id: string,
  ownerUserId: string | undefined,
): Promise<ApiKeyRecord | undefined> {
  const [row] = await x
    .select(PUBLIC_COLUMNS)
    .from(apiKeys)
    .where(and(eq(apiKeys.id, id), ownerFilter(ownerUserId)))
    .limit(1)
  return row
}

export interface ApiKeyListOptions {
  /** Undefined lists every owner's keys (admin). */
  ownerUserId: string | undefined
  limit: number
  /** Keyset position: the last row of the previous page. */
  after: { createdAt: string; id: string } | undefined
  includeRevoked: boolean
  now: Date
}

export interface ApiKeyListPage {
  rows: (ApiKeyRecord & { cursorCreatedAt: string })[]
  hasMore: boolean
}

/**
 * Newest first, keyset-paginated on (created_at, id) through `api_keys_owner_created_idx`.
 * Revoked keys and rotated keys past their grace period are left out unless asked for.
 * One round trip.
 */
export async function listApiKeys(x: Executor, options: ApiKeyListOptions): Promise<ApiKeyListPage> {
  const conditions: (SQL | undefined)[] = [ownerFilter(options.ownerUserId)]
  if (!options.includeRevoked) {
    conditions.push(
      isNull(apiKeys.revokedAt),
      or(isNull(apiKeys.graceUntil), sql`${apiKeys.graceUntil} > ${options.now.toISOString()}::timestamptz`),
    )
  }
  if (options.after !== undefined) {
    conditions.push(
      sql`(${apiKeys.createdAt}, ${apiKeys.id}) < (${options.after.createdAt}::timestamptz, ${options.after.id}::uuid)`,
    )
  }
  const rows = await x
    .select({ ...PUBLIC_COLUMNS, cursorCreatedAt: sql<string>`${apiKeys.createdAt}::text` })
    .from(apiKeys)
    .where(and(...conditions))
    .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id))
    .limit(options.limit + 1)
  return { rows: rows.slice(0, options.limit), hasMore: rows.length > options.limit }
}

/**
 * Revokes a key (the row stays as a tombstone so it verifies as REVOKED). Idempotent: a key
 * already revoked keeps its first revocation time, and only the revocation that happened now
 * writes its `api_key_revoked` audit row (same batch). Undefined when the caller cannot see the
 * key. One round trip.
 */
export async function revokeApiKey(
  db: HttpDb,
  id: string,
  ownerUserId: string | undefined,
  now: Date,
  audit: KeyAudit,
): Promise<{ record: ApiKeyRecord; revokedNow: boolean } | undefined> {
  const [updated] = await db.batch([
    db
      .update(apiKeys)
      .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, ${now.toISOString()}::timestamptz)` })
      .where(and(eq(apiKeys.id, id), ownerFilter(ownerUserId)))
      .returning(PUBLIC_COLUMNS),
    keyAuditStatement(db, id, audit, now),
  ])
  const record = updated[0]
  if (record === undefined) {
    return undefined
  }
  return { record, revokedNow: record.revokedAt?.getTime() === now.getTime() }
}

export type RotateOutcome =
  | { kind: 'rotated'; old: ApiKeyRecord; created: ApiKeyRecord }
  | { kind: 'not_found' }
  | { kind: 'not_rotatable'; reason: 'revoked' | 'expired' | 'already_rotated' }

/**
 * Rotates a live key in one statement: the old key gets `grace_until` (it keeps verifying until
 * then) and a new key copies its owner, name, tier, scopes, metadata, limits and expiry.
 * The new key's `rotated_from` names the first key of the rotation lineage, whose quota and
 * rate-limit counters every key of the lineage shares, so rotating never resets a quota.
 * The new key's `api_key_rotated` audit row commits in the same batch. One round trip (two
 * when the key cannot be rotated, to say why).
 */
export async function rotateApiKey(
  db: HttpDb,
  id: string,
  ownerUserId: string | undefined,
  replacement: { keyHash: string; prefix: string; last4: string },
  now: Date,
  graceUntil: Date,
  audit: KeyAudit,
): Promise<RotateOutcome> {
  const nowIso = now.toISOString()
  const newId = crypto.randomUUID()
  const [rotated] = await db.batch([
    db.execute(sql`with old as (
          update ${apiKeys} set grace_until = ${graceUntil.toISOString()}::timestamptz
          where ${and(eq(apiKeys.id, id), ownerFilter(ownerUserId))}
            and revoked_at is null and grace_until is null
            and (expires_at is null or expires_at > ${nowIso}::timestamptz)
          returning *
        ), created as (
          insert into ${apiKeys} (id, key_hash, prefix, last4, name, owner_user_id, tenant_id, tier, scopes,
            metadata, rate_limit, rate_limit_window_seconds, expires_at, rotated_from, created_at)
          select ${newId}::uuid, ${replacement.keyHash}, ${replacement.prefix}, ${replacement.last4}, name, owner_user_id,
            tenant_id, tier, scopes, metadata, rate_limit, rate_limit_window_seconds, expires_at,
            coalesce(rotated_from, id), ${nowIso}::timestamptz
          from old
          returning *
        )
        select to_jsonb(old.*) - 'key_hash' as old, to_jsonb(created.*) - 'key_hash' as created
        from old, created`),
    keyAuditStatement(db, newId, audit),
  ])
  const row = rowsOf<{ old: RawApiKey; created: RawApiKey }>(rotated)[0]
  if (row !== undefined) {
    return { kind: 'rotated', old: fromRaw(row.old), created: fromRaw(row.created) }
  }
  const existing = await findApiKey(db, id, ownerUserId)
  if (existing === undefined) {
    return { kind: 'not_found' }
  }
  const reason =
    existing.revokedAt !== null ? 'revoked' : existing.graceUntil !== null ? 'already_rotated' : 'expired'
  return { kind: 'not_rotatable', reason }
}

function ownerFilter(ownerUserId: string | undefined): SQL | undefined {
  return ownerUserId === undefined ? undefined : eq(apiKeys.ownerUserId, ownerUserId)
}

// A text[] parameter: drizzle would expand a JS array into a row constructor.
function textArray(values: readonly string[]): SQL {
  return sql`array(select jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`
}

const RECORD_JSON = sql.raw(`to_jsonb(api_keys.*) - 'key_hash'`)

/** A row as `to_jsonb` renders it: snake_case keys, timestamps as ISO 8601 strings. */
interface RawApiKey {
  id: string
  prefix: string
  last4: string
  name: string
  owner_user_id: string
  tenant_id: string
  tier: ApiKeyTier
  scopes: string[]
  metadata: Record<string, unknown>
  rate_limit: number | null
  rate_limit_window_seconds: number
  expires_at: string | null
  revoked_at: string | null
  rotated_from: string | null
  grace_until: string | null
  created_at: string
  last_used_at: string | null
}

function fromRaw(raw: RawApiKey): ApiKeyRecord {
  const date = (value: string | null): Date | null => (value === null ? null : new Date(value))
  return {
    id: raw.id,
    prefix: raw.prefix,
    last4: raw.last4,
    name: raw.name,
    ownerUserId: raw.owner_user_id,
    tenantId: raw.tenant_id,
    tier: raw.tier,
    scopes: raw.scopes,
    metadata: raw.metadata,
    rateLimit: raw.rate_limit,
    rateLimitWindowSeconds: raw.rate_limit_window_seconds,
    expiresAt: date(raw.expires_at),
    revokedAt: date(raw.revoked_at),
    rotatedFrom: raw.rotated_from,
    graceUntil: date(raw.grace_until),
    createdAt: new Date(raw.created_at),
    lastUsedAt: date(raw.last_used_at),
  }
}

/**
 * `last_used_at` is kept to this resolution: a busy key's row is rewritten at most once per
 * interval, not on every verify (less write amplification and less time holding its row lock).
 */
export const LAST_USED_RESOLUTION_SECONDS = 60

/** Verify outcomes the statement decides (MALFORMED never reaches the database). */
export type KeyCheckCode = 'VALID' | 'REVOKED' | 'EXPIRED' | 'DISABLED' | 'QUOTA_EXCEEDED' | 'RATE_LIMITED'

export interface KeyCheckInput {
  keyHash: string
  now: Date
  /**
   * Also write the raw `api_key_usage` row (optional detail, USAGE_DETAIL_RETENTION_DAYS > 0); the
   * hourly counter counts every call either way.
   */
  recordDetail: boolean
  /** Start of the current UTC month: the quota period. */
  periodStart: Date
  /** Monthly quota per tier; null is unlimited. */
  tierQuotas: Readonly<Record<ApiKeyTier, number | null>>
  /**
   * The tenant-wide monthly quota per plan (null: none), for tenants whose own `monthly_quota` is
   * null. Its UTC month is computed by the statement from `now`.
   */
  tenantQuotas: Readonly<Record<TenantPlan, number | null>>
  /**
   * The database half of the caller's own credential check (e.g. "this access token is not
   * revoked"), folded into the same statement so verify stays one round trip. When it is false
   * nothing is counted and the outcome is `callerRefused`.
   */
  callerGuard?: SQL
  /**
   * The SHA-256 of the caller's service key (issue 10), instead of `callerGuard`: the statement
   * finds the live service key by hash in a CTE (not revoked, not expired, its tenant active) and
   * refuses like a revoked caller token when there is none. A tenant's service key sees only its
   * tenant's API keys (others are not found); `skip_rate_limit` leaves the rate window uncharged.
   */
  serviceKeyHash?: string
  /**
   * A DPoP proof the caller presented (RFC 9449 §11.1), whose `jti` the statement spends first
   * (an insert into `used_proof_jtis` that does nothing on conflict): the verify proceeds only
   * when that insert won, so a replayed proof (concurrent ones included: they serialise on the
   * primary key) charges nothing and the outcome is `proofReplayed`.
   */
  proofJti?: { jtiHash: string; expiresAt: Date }
  /** What the resource server says was called; validated text (no NUL), at most 200 characters. */
  endpoint: string | null
  /** Milliseconds the Worker spent on this request before sending the statement. */
  elapsedMs: number
}

export type KeyCheckOutcome =
  | { proofReplayed: true }
  | { proofReplayed?: false; callerRefused: true }
  | {
      proofReplayed?: false
      callerRefused: false
      row: KeyCheckRow | undefined
      /** No row, but some key has this hash (outside the service key's tenant): never cache as unknown. */
      hiddenKey: boolean
    }

/** What the verify statement saw and did; absent when no key has this hash. */
export interface KeyCheckRow {
  id: string
  ownerUserId: string
  tenantId: string
  tier: ApiKeyTier
  scopes: string[]
  metadata: Record<string, unknown>
  /** The verdict, as recorded in the usage row and counters. */
  code: KeyCheckCode
  quotaLimit: number | null
  /** Counter value in the statement's snapshot, before this call (0 when no row yet). */
  quotaUsedBefore: number
  /** Counter value after this call's increment; null when this call was not counted. */
  quotaUsedAfter: number | null
  rateLimit: number | null
  /** Window count in the statement's snapshot, before this call. */
  windowCountBefore: number
  /** Window count after this call's increment; null when not counted (or no rate limit). */
  windowCountAfter: number | null
  /** End of the rate-limit window this call fell in, epoch milliseconds. */
  windowResetAtMs: number
  /** The tenant-wide monthly quota; null when the tenant has none (nothing is counted then). */
  tenantQuotaLimit: number | null
  /** The tenant's counter in the statement's snapshot, before this call. */
  tenantUsedBefore: number
  /** The tenant's counter after this call's increment; null when not counted. */
  tenantUsedAfter: number | null
}

interface RawKeyCheckRow {
  proof_ok: boolean
  caller_ok: boolean
  id: string | null
  owner_user_id: string
  tenant_id: string
  tier: ApiKeyTier
  scopes: string[]
  metadata: Record<string, unknown>
  code: KeyCheckCode
  quota_limit: string | number | null
  used_before: string | number | null
  used_after: string | number | null
  rate_limit: number | null
  window_count_before: number
  window_count_after: number | null
  window_reset_at_ms: string | number
  tenant_quota_limit: string | number | null
  tenant_used_before: string | number | null
  tenant_used_after: string | number | null
  recorded: string | number
  hidden_key: boolean | null
}

/**
 * The whole of verify in ONE statement, writes included (one round trip in all on the HTTP
 * driver, and all-or-nothing: if any part fails, nothing of it happened): spends a DPoP caller's
 * proof `jti`, finds the key by hash, decides whether it is live, charges the rate window, the
 * tenant-wide and the key's monthly quota with conditional upserts (concurrent calls never
 * overshoot a limit) and records the outcome (hourly counter, `last_used_at`, and the raw usage
 * row unless `recordDetail` is false).
 *
 * The statement calls `portcullis_verify_api_key` (migration 0019 explains its order and
 * locking; 0025 made the raw row optional): as a PL/pgSQL function its plan is prepared once per
 * database backend, where the same SQL sent as text was parsed and planned on every call (about
 * 80% of its database time). The caller's own check (`callerGuard`) is evaluated by this
 * statement as the function's `p_caller_ok` argument, so it still rides in the same round trip.
 */
export async function checkAndChargeKey(x: Executor, input: KeyCheckInput): Promise<KeyCheckOutcome> {
  const now = input.now.toISOString()
  const proof = input.proofJti
  const elapsedMs = Math.max(0, Math.min(Math.round(input.elapsedMs), 2_000_000_000))
  // A key's first call of a month inserts its quota row after the tenant's counter is locked,
  // so racing first calls of two keys of one tenant can deadlock; the victim runs again.
  const [row] = await retryOnDeadlock(() =>
    queryRows<RawKeyCheckRow & Record<string, unknown>>(
      x,
      sql`select * from portcullis_verify_api_key(
          p_key_hash => ${input.keyHash}::text,
          p_now => ${now}::timestamptz,
          p_period_start => ${input.periodStart.toISOString()}::timestamptz,
          p_tier_quotas => ${JSON.stringify(input.tierQuotas)}::jsonb,
          p_tenant_quotas => ${JSON.stringify(input.tenantQuotas)}::jsonb,
          p_endpoint => ${input.endpoint}::text,
          p_elapsed_ms => ${elapsedMs}::int,
          p_caller_ok => ${input.callerGuard === undefined ? sql`true` : sql`(${input.callerGuard})`},
          p_service_key_hash => ${input.serviceKeyHash ?? null}::text,
          p_proof_jti_hash => ${proof?.jtiHash ?? null}::text,
          p_proof_expires_at => ${proof?.expiresAt.toISOString() ?? null}::timestamptz,
          p_last_used_resolution_seconds => ${LAST_USED_RESOLUTION_SECONDS}::int,
          p_record_detail => ${input.recordDetail}::boolean)`,
    ),
  )
  if (row === undefined || row.proof_ok !== true) {
    return row === undefined ? { callerRefused: true } : { proofReplayed: true }
  }
  if (row.caller_ok !== true) {
    return { callerRefused: true }
  }
  if (row.id === null) {
    return { callerRefused: false, row: undefined, hiddenKey: row.hidden_key === true }
  }
  if (Number(row.recorded) !== 1) {
    // Cannot happen (one key row, one counter upsert); refuse to report a call nobody recorded.
    throw new Error('verify statement recorded no usage')
  }
  const count = (value: string | number | null): number | null => (value === null ? null : Number(value))
  const id = row.id
  return {
    callerRefused: false,
    hiddenKey: false,
    row: {
      id,
      ownerUserId: row.owner_user_id,
      tenantId: row.tenant_id,
      tier: row.tier,
      scopes: row.scopes,
      metadata: row.metadata,
      code: row.code,
      quotaLimit: count(row.quota_limit),
      quotaUsedBefore: count(row.used_before) ?? 0,
      quotaUsedAfter: count(row.used_after),
      rateLimit: row.rate_limit,
      windowCountBefore: Number(row.window_count_before),
      windowCountAfter: count(row.window_count_after),
      windowResetAtMs: Number(row.window_reset_at_ms),
      tenantQuotaLimit: count(row.tenant_quota_limit),
      tenantUsedBefore: count(row.tenant_used_before) ?? 0,
      tenantUsedAfter: count(row.tenant_used_after),
    },
  }
}
