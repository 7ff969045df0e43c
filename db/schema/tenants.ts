import { sql } from 'drizzle-orm'
import {
  bigint,
  boolean,
  check,
  index,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core'
import { inList, TENANT_PLANS, TENANT_ROLES } from './constants'
import { users } from './users'

export const tenants = pgTable(
  'tenants',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    slug: text('slug').notNull().unique(),
    name: text('name').notNull(),
    plan: text('plan', { enum: TENANT_PLANS }).notNull().default('free'),
    active: boolean('active').notNull().default(true),
    /**
     * Verify calls all the tenant's keys may make per UTC month together; null follows the plan
     * (TENANT_MONTHLY_QUOTAS). Charged inside the verify statement (tenant_quota_counters).
     */
    monthlyQuota: bigint('monthly_quota', { mode: 'number' }),
    /**
     * Set when the tenant is deactivated: access tokens its clients got at or before this second
     * stay dead after a reactivation (as the ended sessions and refresh tokens do).
     */
    tokensValidAfter: timestamp('tokens_valid_after', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check('tenants_plan_ck', sql`${t.plan} in (${sql.raw(inList(TENANT_PLANS))})`),
    check('tenants_monthly_quota_ck', sql`${t.monthlyQuota} is null or ${t.monthlyQuota} >= 0`),
  ],
)

/**
 * The tenant-wide monthly quota's counter: one row per tenant and UTC month (a new month is a new
 * row, no reset job), upserted by the verify statement only when the tenant has a quota.
 */
export const tenantQuotaCounters = pgTable(
  'tenant_quota_counters',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    periodStart: timestamp('period_start', { withTimezone: true }).notNull(),
    used: bigint('used', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.periodStart] })],
)

export const tenantMembers = pgTable(
  'tenant_members',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: text('role', { enum: TENANT_ROLES }).notNull().default('member'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.userId] }),
    index('tenant_members_user_idx').on(t.userId),
    check('tenant_members_role_ck', sql`${t.role} in (${sql.raw(inList(TENANT_ROLES))})`),
  ],
)

/**
 * Invitations to join a tenant by email: the raw token goes out in the mail, only its SHA-256 is
 * stored. Single use (`accepted_at`), expiring; the purge deletes expired rows.
 */
export const tenantInvitations = pgTable(
  'tenant_invitations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    email: text('email').notNull(),
    role: text('role', { enum: TENANT_ROLES }).notNull().default('member'),
    tokenHash: text('token_hash').notNull().unique(),
    /** `user:<id>` or `admin`: who sent it. */
    invitedBy: text('invited_by').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    acceptedAt: timestamp('accepted_at', { withTimezone: true }),
    acceptedBy: uuid('accepted_by').references(() => users.id, { onDelete: 'set null' }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('tenant_invitations_tenant_idx').on(t.tenantId, t.createdAt),
    index('tenant_invitations_expires_at_idx').on(t.expiresAt),
    check('tenant_invitations_role_ck', sql`${t.role} in (${sql.raw(inList(TENANT_ROLES))})`),
  ],
)
