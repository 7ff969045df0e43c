import { sql } from 'drizzle-orm'
import { check, index, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'
import { DEFAULT_TENANT_ID, inList, SIGNING_ALGORITHMS } from './constants'
import { tenants } from './tenants'

/** One scope a resource server defines, with the words the consent page shows for it. */
export interface ResourceScope {
  name: string
  description: string
}

/**
 * Resource servers (RFC 8707 targets, issue 11): an API such as an MCP server that trusts our
 * access tokens. `identifier` is the URL clients send as `resource` and the tokens' `aud`
 * (unique across tenants: one audience names one API). Each belongs to a tenant (the default
 * one for those an administrator registers), so a tenant's admins can register their own.
 */
export const resourceServers = pgTable(
  'resource_servers',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    tenantId: uuid('tenant_id')
      .notNull()
      .default(DEFAULT_TENANT_ID)
      .references(() => tenants.id, { onDelete: 'cascade' }),
    identifier: text('identifier').notNull().unique(),
    displayName: text('display_name').notNull(),
    scopes: jsonb('scopes').$type<ResourceScope[]>().notNull().default(sql`'[]'::jsonb`),
    /** Lifetime of access tokens for this audience; null = ACCESS_TOKEN_TTL. */
    accessTokenTtlSeconds: integer('access_token_ttl_seconds'),
    /** JWS algorithm of access tokens for this audience; null = ACCESS_TOKEN_ALG. */
    signingAlgorithm: text('signing_algorithm', { enum: SIGNING_ALGORITHMS }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('resource_servers_tenant_idx').on(t.tenantId, t.createdAt),
    check(
      'resource_servers_ttl_ck',
      sql`${t.accessTokenTtlSeconds} is null or ${t.accessTokenTtlSeconds} between 60 and 86400`,
    ),
    check(
      'resource_servers_alg_ck',
      sql`${t.signingAlgorithm} is null or ${t.signingAlgorithm} in (${sql.raw(inList(SIGNING_ALGORITHMS))})`,
    ),
  ],
)
