import { sql } from 'drizzle-orm'
import {
  type AnyPgColumn,
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core'
import { API_KEY_TIERS, DEFAULT_TENANT_ID, inList } from './constants'
import { tenants } from './tenants'
import { users } from './users'

export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    keyHash: text('key_hash').notNull().unique(),
    /** Shown in lists so people can tell keys apart, e.g. `pk_live_3xQ`. */
    prefix: text('prefix').notNull(),
    last4: text('last4').notNull(),
    name: text('name').notNull(),
    ownerUserId: uuid('owner_user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id')
      .notNull()
      .default(DEFAULT_TENANT_ID)
      .references(() => tenants.id, { onDelete: 'cascade' }),
    tier: text('tier', { enum: API_KEY_TIERS }).notNull().default('trial'),
    scopes: text('scopes').array().notNull().default(sql`'{}'::text[]`),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    /** Requests allowed per `rateLimitWindowSeconds`; null means no per-key rate limit. */
    rateLimit: integer('rate_limit'),
    rateLimitWindowSeconds: integer('rate_limit_window_seconds').notNull().default(60),
    expiresAt: timestamp('expires_at', { withTimezone: true }),
    /** Set by DELETE: the row stays as a tombstone so the key verifies as REVOKED. */
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    rotatedFrom: uuid('rotated_from').references((): AnyPgColumn => apiKeys.id, { onDelete: 'set null' }),
    /** After a rotation the old key keeps verifying until this instant. */
    graceUntil: timestamp('grace_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  },
  (t) => [
    index('api_keys_owner_created_idx').on(t.ownerUserId, t.createdAt),
    index('api_keys_tenant_idx').on(t.tenantId),
    check('api_keys_tier_ck', sql`${t.tier} in (${sql.raw(inList(API_KEY_TIERS))})`),
    check('api_keys_rate_limit_ck', sql`${t.rateLimit} is null or ${t.rateLimit} > 0`),
    check('api_keys_rate_window_ck', sql`${t.rateLimitWindowSeconds} > 0`),
  ],
)

/** Monthly quota counters: one row per key and UTC month, bumped by the verify statement. */
export const apiKeyQuotaCounters = pgTable(
  'api_key_quota_counters',
  {
    keyId: uuid('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    periodStart: timestamp('period_start', { withTimezone: true }).notNull(),
    used: bigint('used', { mode: 'number' }).notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.keyId, t.periodStart] }),
    index('api_key_quota_period_idx').on(t.periodStart),
  ],
)

/** Fixed-window rate-limit counter, one row per key. */
export const apiKeyRateWindows = pgTable('api_key_rate_windows', {
  keyId: uuid('key_id')
    .primaryKey()
    .references(() => apiKeys.id, { onDelete: 'cascade' }),
  windowStart: timestamp('window_start', { withTimezone: true }).notNull(),
  count: integer('count').notNull().default(0),
})

export const apiKeyUsage = pgTable(
  'api_key_usage',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    keyId: uuid('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    /** The endpoint or tool name the resource server reported. */
    endpoint: text('endpoint'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    success: boolean('success').notNull(),
    /** The verify outcome (VALID, QUOTA_EXCEEDED, ...). */
    code: text('code').notNull(),
    responseTimeMs: integer('response_time_ms'),
    error: text('error'),
  },
  (t) => [
    index('api_key_usage_key_created_idx').on(t.keyId, t.createdAt),
    index('api_key_usage_created_at_idx').on(t.createdAt),
  ],
)

/**
 * Usage counters per key, UTC hour and endpoint ('' when the caller named none), bumped by the
 * verify statement itself, so reading a month of usage costs the same at any raw-row count.
 */
export const apiKeyUsageCounters = pgTable(
  'api_key_usage_counters',
  {
    keyId: uuid('key_id')
      .notNull()
      .references(() => apiKeys.id, { onDelete: 'cascade' }),
    hourStart: timestamp('hour_start', { withTimezone: true }).notNull(),
    endpoint: text('endpoint').notNull().default(''),
    success: bigint('success', { mode: 'number' }).notNull().default(0),
    failure: bigint('failure', { mode: 'number' }).notNull().default(0),
  },
  (t) => [
    primaryKey({ columns: [t.keyId, t.hourStart, t.endpoint] }),
    index('api_key_usage_counters_hour_idx').on(t.hourStart),
  ],
)

/**
 * Service keys (issue 10): secrets a platform admin or a tenant's owner/admin issues to an
 * internal service (a resource server) so it can call `POST /api-keys/verify` and
 * `POST /oauth/introspect` with `Authorization: Bearer psk_…`. Stored as the SHA-256 of the key,
 * shown once. `tenant_id` null: platform-issued (sees every tenant's keys); otherwise the key
 * verifies and introspects only that tenant's objects.
 */
export const serviceKeys = pgTable(
  'service_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    keyHash: text('key_hash').notNull().unique(),
    /** `psk_live_` plus the first characters of the secret, e.g. `psk_live_3xQa`. */
    prefix: text('prefix').notNull(),
    last4: text('last4').notNull(),
    serviceName: text('service_name').notNull(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    /** The service's verifies never spend the API keys' rate-limit windows (quota still counts). */
    skipRateLimit: boolean('skip_rate_limit').notNull().default(false),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    /** `user:<id>` or `admin`, as audit rows name actors. */
    createdBy: text('created_by').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('service_keys_tenant_created_idx').on(t.tenantId, t.createdAt)],
)
