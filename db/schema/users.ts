import { sql } from 'drizzle-orm'
import {
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core'
import { DEFAULT_TENANT_ID, inList, MFA_CHALLENGE_PURPOSES, USER_STATUSES } from './constants'
import { tenants } from './tenants'

export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .default(DEFAULT_TENANT_ID)
      .references(() => tenants.id, { onDelete: 'restrict' }),
    email: text('email').notNull(),
    /** argon2id PHC string (or an imported bcrypt hash until the next login upgrades it). */
    passwordHash: text('password_hash').notNull(),
    displayName: text('display_name'),
    status: text('status', { enum: USER_STATUSES }).notNull().default('active'),
    emailVerifiedAt: timestamp('email_verified_at', { withTimezone: true }),
    isAdmin: boolean('is_admin').notNull().default(false),
    profile: jsonb('profile').$type<Record<string, unknown>>().notNull().default({}),
    lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
    /**
     * Access tokens issued (`iat`) in this second or before are dead: set by password reset and
     * change, logout-all and suspension. Null: no such event yet.
     */
    tokensValidAfter: timestamp('tokens_valid_after', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // Email is unique per tenant, case-insensitively.
    uniqueIndex('users_tenant_email_uq').on(t.tenantId, sql`lower(${t.email})`),
    index('users_status_created_idx').on(t.status, t.createdAt),
    check('users_status_ck', sql`${t.status} in (${sql.raw(inList(USER_STATUSES))})`),
  ],
)

export const sessions = pgTable(
  'sessions',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    remember: boolean('remember').notNull().default(false),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }).notNull().defaultNow(),
    userAgent: text('user_agent'),
    ip: text('ip'),
    /** How the user proved who they are (OIDC `amr`): `pwd`, plus `otp` after a second factor. */
    amr: text('amr').array().notNull().default(sql`'{pwd}'::text[]`),
  },
  (t) => [index('sessions_user_idx').on(t.userId), index('sessions_expires_at_idx').on(t.expiresAt)],
)

export const emailVerifications = pgTable(
  'email_verifications',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    email: text('email').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('email_verifications_user_idx').on(t.userId),
    index('email_verifications_expires_at_idx').on(t.expiresAt),
  ],
)

export const passwordResets = pgTable(
  'password_resets',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('password_resets_user_idx').on(t.userId),
    index('password_resets_expires_at_idx').on(t.expiresAt),
  ],
)

/**
 * Attempt counters for throttling, one row per subject and fixed window, claimed by an atomic
 * upsert before the guarded work (`claimAttemptsStatement` lists the subjects: `user:<id>`,
 * `email:<tenant>:<sha256>`, `ip:`, `register-ip:`, `device-user:`, `device-ip:` ...).
 * `failures` is the number of attempts claimed in the window, less those given back.
 */
export const loginThrottles = pgTable(
  'login_throttles',
  {
    subject: text('subject').primaryKey(),
    failures: integer('failures').notNull().default(0),
    windowStartedAt: timestamp('window_started_at', { withTimezone: true }).notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('login_throttles_expires_at_idx').on(t.expiresAt)],
)

/** A user's TOTP factor (RFC 6238). Active once `confirmedAt` is set by a first valid code. */
export const userTotp = pgTable('user_totp', {
  userId: uuid('user_id')
    .primaryKey()
    .references(() => users.id, { onDelete: 'cascade' }),
  /** `Sealed` under MASTER_KEY (context `totp:<user id>`): masterKeyId and ciphertext. */
  masterKeyId: text('master_key_id').notNull(),
  secretSealed: text('secret_sealed').notNull(),
  confirmedAt: timestamp('confirmed_at', { withTimezone: true }),
  /** The last time step a code was accepted for: a code is accepted only for a later step. */
  lastStep: bigint('last_step', { mode: 'number' }).notNull().default(0),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
})

/** Single-use recovery codes (SHA-256 of the code); `usedAt` set once, atomically. */
export const recoveryCodes = pgTable(
  'recovery_codes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    codeHash: text('code_hash').notNull().unique(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('recovery_codes_user_idx').on(t.userId)],
)

/** A sign-in whose password was right, waiting for its second factor (token stored hashed). */
export const mfaChallenges = pgTable(
  'mfa_challenges',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    remember: boolean('remember').notNull().default(false),
    via: text('via').notNull(),
    /**
     * `second_factor`: the user has a factor and must present it. `enrol`: a two-factor policy
     * applies and the user has none yet; only enrolling one finishes this sign-in.
     */
    purpose: text('purpose', { enum: MFA_CHALLENGE_PURPOSES }).notNull().default('second_factor'),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('mfa_challenges_expires_at_idx').on(t.expiresAt),
    check('mfa_challenges_purpose_ck', sql`${t.purpose} in (${sql.raw(inList(MFA_CHALLENGE_PURPOSES))})`),
  ],
)

/**
 * A pending change of a user's email address: the link mailed to the new address carries the
 * token (stored as its SHA-256); the address changes only when it is followed, once, in time.
 */
export const emailChanges = pgTable(
  'email_changes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    newEmail: text('new_email').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('email_changes_user_idx').on(t.userId),
    index('email_changes_expires_at_idx').on(t.expiresAt),
  ],
)
