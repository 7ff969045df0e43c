import { sql } from 'drizzle-orm'
import { boolean, check, index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'
import { inList } from './constants'
import { tenants } from './tenants'
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
    /**
     * The provider's tokens, AES-256-GCM under MASTER_KEY (`<key id>:<iv>.<ciphertext>`, the row id
     * bound as associated data); never stored in the clear. Null once unlinked data is cleared.
     */
    accessTokenSealed: text('access_token_sealed'),
    refreshTokenSealed: text('refresh_token_sealed'),
    /** Null: the access token does not expire (a GitHub OAuth App token). */
    tokenExpiresAt: timestamp('token_expires_at', { withTimezone: true }),
    tokenScope: text('token_scope'),
    /** Set when the provider refused a refresh: the user must sign in with it again. */
    brokenAt: timestamp('broken_at', { withTimezone: true }),
    /** Single flight of refreshes: the request holding an unexpired lease refreshes, others wait. */
    refreshLeaseUntil: timestamp('refresh_lease_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastLoginAt: timestamp('last_login_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('external_identities_provider_subject_uq').on(t.provider, t.subject),
    index('external_identities_user_idx').on(t.userId),
  ],
)

/** What an allowlist entry matches (issue 13). */
export const ALLOWLIST_KINDS = ['github_id', 'github_login', 'github_org', 'email', 'email_domain'] as const
export type AllowlistKind = (typeof ALLOWLIST_KINDS)[number]

/**
 * Who may get an active account by federated sign-up when FEDERATION_ALLOWLIST is on; everyone
 * else's new account is `pending`. `value` is stored folded (lower-case; a GitHub id as digits).
 */
export const identityAllowlist = pgTable(
  'identity_allowlist',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    kind: text('kind', { enum: ALLOWLIST_KINDS }).notNull(),
    value: text('value').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('identity_allowlist_kind_value_uq').on(t.kind, t.value),
    check('identity_allowlist_kind_ck', sql`${t.kind} in (${sql.raw(inList(ALLOWLIST_KINDS))})`),
  ],
)

/** What a database-configured identity provider speaks (issue 13). */
export const IDENTITY_PROVIDER_KINDS = ['oidc', 'github'] as const
export type IdentityProviderKind = (typeof IDENTITY_PROVIDER_KINDS)[number]

/**
 * Identity providers configured through the admin API (issue 13), next to the deployment's
 * GITHUB_* and OIDC_PROVIDERS: the platform's (`tenant_id` null, `/admin/identity-providers`) and
 * a tenant's (`/tenants/{id}/identity-providers`). `slug` is the provider id in paths and in
 * external_identities.provider: unique, never reused (providers are disabled, not deleted), and
 * with `kind` and the issuer fixed at creation, so an identity keyed (provider, subject) always
 * means the same upstream. The client secret is sealed under MASTER_KEY
 * (`<key id>:<iv>.<ciphertext>`, the row id bound as associated data) and never returned.
 */
export const identityProviders = pgTable(
  'identity_providers',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id').references(() => tenants.id, { onDelete: 'cascade' }),
    slug: text('slug').notNull().unique(),
    kind: text('kind', { enum: IDENTITY_PROVIDER_KINDS }).notNull(),
    name: text('name').notNull(),
    /** OpenID providers: the issuer URL (discovery at `/.well-known/openid-configuration`). */
    issuer: text('issuer'),
    /** GitHub (Enterprise): the web root (`/login/oauth/…`) and the REST API root. */
    webUrl: text('web_url'),
    apiUrl: text('api_url'),
    clientId: text('client_id').notNull(),
    clientSecretSealed: text('client_secret_sealed').notNull(),
    /** OpenID providers: the requested scope (`openid email profile` by default). */
    scope: text('scope'),
    enabled: boolean('enabled').notNull().default(true),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('identity_providers_tenant_idx').on(t.tenantId),
    check('identity_providers_kind_ck', sql`${t.kind} in (${sql.raw(inList(IDENTITY_PROVIDER_KINDS))})`),
    check(
      'identity_providers_urls_ck',
      sql`(${t.kind} = 'oidc' and ${t.issuer} is not null) or (${t.kind} = 'github' and ${t.webUrl} is not null and ${t.apiUrl} is not null)`,
    ),
  ],
)
