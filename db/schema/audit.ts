import { index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core'

/**
 * Security-relevant events. No foreign keys on purpose: the trail outlives the users, clients
 * and tenants it mentions, and writing it never fails because one of them was deleted.
 */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    type: text('type').notNull(),
    /** Who did it: `user:<id>`, `client:<client_id>`, `admin`, `system`. */
    actor: text('actor').notNull(),
    userId: uuid('user_id'),
    tenantId: uuid('tenant_id'),
    clientId: text('client_id'),
    ip: text('ip'),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('audit_events_created_at_idx').on(t.createdAt),
    index('audit_events_type_created_idx').on(t.type, t.createdAt),
    index('audit_events_user_created_idx').on(t.userId, t.createdAt),
    // The tenant audit listing (/tenants/{id}/audit): newest first by (created_at, id).
    index('audit_events_tenant_created_idx').on(t.tenantId, t.createdAt, t.id),
  ],
)
