import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { users } from './users'

/**
 * One row per federated sign-in in flight (issue 13): the SHA-256 of its `state`, the provider
 * and where to go afterwards. The PKCE verifier and nonce are not stored: both are HMACs of the
 * state under MASTER_KEY, recomputed at the callback. Single use (deleted by the callback that
 * consumes it), short-lived (FEDERATION_STATE_TTL); the purge deletes expired rows.
 */
export const federatedLoginStates = pgTable(
  'federated_login_states',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    stateHash: text('state_hash').notNull().unique(),
    provider: text('provider').notNull(),
    returnTo: text('return_to').notNull(),
    /** Set when a signed-in user started the flow to connect this provider to their account. */
    linkUserId: uuid('link_user_id').references(() => users.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('federated_login_states_expires_at_idx').on(t.expiresAt)],
)

/**
 * An upstream identity linked to an account, keyed by (provider, subject): GitHub's numeric user
 * id or the OpenID provider's `sub`, never a login name or an email.
 */
export const externalIdentities = pgTable(
  'external_identities',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    provider: text('provider').notNull(),
    subject: text('subject').notNull(),
    /** The provider's verified email when linked (display only; never used to match again). */
    email: text('email'),
    /** GitHub login or preferred_username (display only). */
    username: text('username'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('external_identities_provider_subject_uq').on(t.provider, t.subject),
    index('external_identities_user_idx').on(t.userId),
  ],
)
