import { sql } from 'drizzle-orm'
import { check, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

/** One scope a resource server defines, with the words the consent page shows for it. */
export interface ResourceScope {
  name: string
  description: string
}

/**
 * Resource servers (RFC 8707 targets, issue 11): an API such as an MCP server that trusts our
 * access tokens. `identifier` is the URL clients send as `resource` and the tokens' `aud`.
 */
export const resourceServers = pgTable(
  'resource_servers',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    identifier: text('identifier').notNull().unique(),
    displayName: text('display_name').notNull(),
    scopes: jsonb('scopes').$type<ResourceScope[]>().notNull().default(sql`'[]'::jsonb`),
    /** Lifetime of access tokens for this audience; null = ACCESS_TOKEN_TTL. */
    accessTokenTtlSeconds: integer('access_token_ttl_seconds'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    check(
      'resource_servers_ttl_ck',
      sql`${t.accessTokenTtlSeconds} is null or ${t.accessTokenTtlSeconds} between 60 and 86400`,
    ),
  ],
)
