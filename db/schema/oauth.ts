import { sql } from 'drizzle-orm'
import {
  type AnyPgColumn,
  bigint,
  boolean,
  check,
  index,
  integer,
  jsonb,
  pgSequence,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core'
import {
  APPLICATION_TYPES,
  DEFAULT_TENANT_ID,
  DEVICE_CODE_STATUSES,
  inList,
  SIGNING_ALGORITHMS,
  SIGNING_KEY_STATUSES,
  TOKEN_ENDPOINT_AUTH_METHODS,
} from './constants'
import { tenants } from './tenants'
import { users } from './users'

export const oauthClients = pgTable(
  'oauth_clients',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The public identifier clients send (`client_id` on the wire). */
    clientId: text('client_id').notNull().unique(),
    clientSecretHash: text('client_secret_hash'),
    tenantId: uuid('tenant_id')
      .notNull()
      .default(DEFAULT_TENANT_ID)
      .references(() => tenants.id, { onDelete: 'cascade' }),
    redirectUris: text('redirect_uris').array().notNull().default(sql`'{}'::text[]`),
    grantTypes: text('grant_types').array().notNull().default(sql`'{authorization_code}'::text[]`),
    responseTypes: text('response_types').array().notNull().default(sql`'{code}'::text[]`),
    scope: text('scope').notNull().default(''),
    tokenEndpointAuthMethod: text('token_endpoint_auth_method', { enum: TOKEN_ENDPOINT_AUTH_METHODS })
      .notNull()
      .default('client_secret_basic'),
    applicationType: text('application_type', { enum: APPLICATION_TYPES }).notNull().default('web'),
    clientName: text('client_name'),
    clientUri: text('client_uri'),
    logoUri: text('logo_uri'),
    contacts: text('contacts').array().notNull().default(sql`'{}'::text[]`),
    idTokenSignedResponseAlg: text('id_token_signed_response_alg').notNull().default('RS256'),
    /** Other registered metadata, kept so RFC 7592 reads return what was registered. */
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    registrationAccessTokenHash: text('registration_access_token_hash').unique(),
    firstParty: boolean('first_party').notNull().default(false),
    disabledAt: timestamp('disabled_at', { withTimezone: true }),
    clientSecretExpiresAt: timestamp('client_secret_expires_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('oauth_clients_tenant_idx').on(t.tenantId, t.createdAt),
    check(
      'oauth_clients_auth_method_ck',
      sql`${t.tokenEndpointAuthMethod} in (${sql.raw(inList(TOKEN_ENDPOINT_AUTH_METHODS))})`,
    ),
    check(
      'oauth_clients_application_type_ck',
      sql`${t.applicationType} in (${sql.raw(inList(APPLICATION_TYPES))})`,
    ),
    check(
      'oauth_clients_secret_ck',
      sql`(${t.tokenEndpointAuthMethod} in ('none', 'private_key_jwt')) = (${t.clientSecretHash} is null)`,
    ),
  ],
)

export const oauthConsents = pgTable(
  'oauth_consents',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    scopes: text('scopes').array().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('oauth_consents_user_client_uq').on(t.userId, t.clientId)],
)

export const authorizationCodes = pgTable(
  'authorization_codes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    codeHash: text('code_hash').notNull().unique(),
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    redirectUri: text('redirect_uri').notNull(),
    scope: text('scope').notNull().default(''),
    resource: text('resource'),
    nonce: text('nonce'),
    codeChallenge: text('code_challenge').notNull(),
    codeChallengeMethod: text('code_challenge_method').notNull().default('S256'),
    authTime: timestamp('auth_time', { withTimezone: true }).notNull(),
    /** The session's `amr` when the code was issued, for the ID token. */
    amr: text('amr').array().notNull().default(sql`'{pwd}'::text[]`),
    /** RFC 9449 §10: the DPoP key thumbprint the code is bound to (`dpop_jkt`, or PAR's proof). */
    dpopJkt: text('dpop_jkt'),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('authorization_codes_expires_at_idx').on(t.expiresAt),
    // RFC 7636 §4.2 with OAuth 2.1: S256 only, `plain` is never stored.
    check('authorization_codes_method_ck', sql`${t.codeChallengeMethod} = 'S256'`),
  ],
)

export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tokenHash: text('token_hash').notNull().unique(),
    /** Every token descended from one grant shares a family; reuse revokes the family. */
    familyId: uuid('family_id').notNull(),
    parentId: uuid('parent_id').references((): AnyPgColumn => refreshTokens.id, { onDelete: 'set null' }),
    /** The authorization code whose exchange started this family, for replay revocation. */
    authorizationCodeId: uuid('authorization_code_id'),
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    scope: text('scope').notNull().default(''),
    resource: text('resource'),
    authTime: timestamp('auth_time', { withTimezone: true }),
    /** The sign-in's `amr`, carried from the authorization code to every rotation; null: not known. */
    amr: text('amr').array(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
    replacedBy: uuid('replaced_by'),
    /** RFC 9449 §5: a public client's refresh token is bound to its DPoP key's thumbprint. */
    dpopJkt: text('dpop_jkt'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('refresh_tokens_family_idx').on(t.familyId),
    index('refresh_tokens_user_idx').on(t.userId),
    index('refresh_tokens_code_idx').on(t.authorizationCodeId),
    index('refresh_tokens_expires_at_idx').on(t.expiresAt),
    index('refresh_tokens_revoked_at_idx').on(t.revokedAt),
    // Deleting a token sets its children's parent_id to null: without this, each purged row
    // scanned the table (125k revoked tokens took over a minute per batch at bench scale).
    index('refresh_tokens_parent_idx').on(t.parentId),
  ],
)

/** Access tokens are stateless JWTs; a revoked one is remembered by `jti` until its `exp`. */
export const revokedAccessTokens = pgTable(
  'revoked_access_tokens',
  {
    jti: text('jti').primaryKey(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    revokedAt: timestamp('revoked_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('revoked_access_tokens_expires_at_idx').on(t.expiresAt)],
)

/**
 * RFC 9126 pushed authorization requests: the validated parameters under the SHA-256 of their
 * `request_uri`, short-lived, spent by the statement that issues the code.
 */
export const pushedAuthorizationRequests = pgTable(
  'pushed_authorization_requests',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    requestUriHash: text('request_uri_hash').notNull().unique(),
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    params: jsonb('params').$type<Record<string, string>>().notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('pushed_authorization_requests_expires_at_idx').on(t.expiresAt)],
)

/**
 * Single-use proof identifiers (RFC 9449 §11.1 DPoP `jti`, RFC 7523 §3 assertion `jti`), hashed,
 * kept until the proof could no longer be accepted anyway; the purge removes them after.
 */
export const usedProofJtis = pgTable(
  'used_proof_jtis',
  {
    jtiHash: text('jti_hash').primaryKey(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  },
  (t) => [index('used_proof_jtis_expires_at_idx').on(t.expiresAt)],
)

export const deviceCodes = pgTable(
  'device_codes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    deviceCodeHash: text('device_code_hash').notNull().unique(),
    userCodeHash: text('user_code_hash').notNull().unique(),
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    scope: text('scope').notNull().default(''),
    resource: text('resource'),
    status: text('status', { enum: DEVICE_CODE_STATUSES }).notNull().default('pending'),
    userId: uuid('user_id').references(() => users.id, { onDelete: 'cascade' }),
    intervalSeconds: integer('interval_seconds').notNull().default(5),
    lastPolledAt: timestamp('last_polled_at', { withTimezone: true }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('device_codes_expires_at_idx').on(t.expiresAt),
    check('device_codes_status_ck', sql`${t.status} in (${sql.raw(inList(DEVICE_CODE_STATUSES))})`),
  ],
)

/** Versions of `signing_keys` rows (see `signingKeys.version`). */
export const signingKeyVersions = pgSequence('signing_key_versions')

export const signingKeys = pgTable(
  'signing_keys',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    kid: text('kid').notNull().unique(),
    alg: text('alg', { enum: SIGNING_ALGORITHMS }).notNull(),
    publicJwk: jsonb('public_jwk').$type<Record<string, unknown>>().notNull(),
    /** AES-256-GCM ciphertext of the private JWK under the master key named by `masterKeyId`. */
    privateJwkEncrypted: text('private_jwk_encrypted').notNull(),
    masterKeyId: text('master_key_id').notNull(),
    status: text('status', { enum: SIGNING_KEY_STATUSES }).notNull().default('active'),
    /** Published in the JWKS from creation; signs only from this instant. */
    activatesAt: timestamp('activates_at', { withTimezone: true }).notNull().defaultNow(),
    retireAfter: timestamp('retire_after', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    /**
     * Drawn from `signing_key_versions` on insert and on every update (a trigger, migration 0023),
     * so the largest version with the row count names the table's contents: KEY_EPOCH.
     */
    version: bigint('version', { mode: 'number' }).notNull().default(sql`nextval('signing_key_versions')`),
  },
  (t) => [
    index('signing_keys_status_idx').on(t.status, t.alg),
    check('signing_keys_alg_ck', sql`${t.alg} in (${sql.raw(inList(SIGNING_ALGORITHMS))})`),
    check('signing_keys_status_ck', sql`${t.status} in (${sql.raw(inList(SIGNING_KEY_STATUSES))})`),
  ],
)

/**
 * Token-endpoint usage of agent clients (`private_key_jwt`, issue 15) per UTC hour and grant
 * type: successes bumped by the grant statement itself (no extra round trip), failures by the
 * statement that explains them. Read by the client's tenant admins and platform admins.
 */
export const oauthClientUsageCounters = pgTable(
  'oauth_client_usage_counters',
  {
    clientId: uuid('client_id')
      .notNull()
      .references(() => oauthClients.id, { onDelete: 'cascade' }),
    hourStart: timestamp('hour_start', { withTimezone: true }).notNull(),
    grantType: text('grant_type').notNull(),
    success: bigint('success', { mode: 'number' }).notNull().default(0),
    failure: bigint('failure', { mode: 'number' }).notNull().default(0),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.clientId, t.hourStart, t.grantType] }),
    index('oauth_client_usage_counters_hour_idx').on(t.hourStart),
  ],
)
