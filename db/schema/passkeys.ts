import { sql } from 'drizzle-orm'
import { bigint, boolean, check, index, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { inList } from './constants'
import { users } from './users'

/**
 * A user's passkey: a WebAuthn public-key credential (W3C Web Authentication, Level 3). Only
 * public material is kept: the credential id and COSE public key (base64url), the signature
 * counter the authenticator last reported, and the transports the browser named.
 */
export const passkeys = pgTable(
  'passkeys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    /** base64url of the credential id the authenticator chose (unique for this relying party). */
    credentialId: text('credential_id').notNull().unique(),
    /** base64url of the COSE_Key from the attested credential data. */
    publicKey: text('public_key').notNull(),
    /** The authenticator's signature counter: a later assertion must report more (or both 0). */
    signCount: bigint('sign_count', { mode: 'number' }).notNull().default(0),
    transports: text('transports').array().notNull().default(sql`'{}'::text[]`),
    /** The backup-state flag at registration: a synced (multi-device) passkey. */
    backedUp: boolean('backed_up').notNull().default(false),
    name: text('name').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
  },
  (t) => [index('passkeys_user_idx').on(t.userId)],
)

export const WEBAUTHN_CHALLENGE_PURPOSES = ['register', 'sign_in', 'second_factor'] as const
export type WebauthnChallengePurpose = (typeof WEBAUTHN_CHALLENGE_PURPOSES)[number]

/**
 * WebAuthn challenges that have been answered, as SHA-256, with their purpose (and user, except
 * for a usernameless sign-in). Challenges are issued without a row (HMAC-bound to purpose, user or
 * pending sign-in, and expiry: functions/auth/passkeys/challenge.ts); the first response to one
 * inserts it here, so any later response to the same challenge is refused. Purged once expired.
 */
export const webauthnChallenges = pgTable(
  'webauthn_challenges',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    challengeHash: text('challenge_hash').notNull().unique(),
    purpose: text('purpose', { enum: WEBAUTHN_CHALLENGE_PURPOSES }).notNull(),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('webauthn_challenges_expires_at_idx').on(t.expiresAt),
    check(
      'webauthn_challenges_purpose_ck',
      sql`${t.purpose} in (${sql.raw(inList(WEBAUTHN_CHALLENGE_PURPOSES))})`,
    ),
    check('webauthn_challenges_user_ck', sql`${t.purpose} = 'sign_in' or ${t.userId} is not null`),
  ],
)
