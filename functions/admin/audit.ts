import { Hono } from 'hono'
import * as v from 'valibot'
import { listAuditEvents } from '../../db/queries/audit-list'
import { isUuid } from '../../db/uuid'
import { decodeCursor, PageLimit, paginate } from '../auth/cursor'
import type { AppEnv } from '../env'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { queryParams } from '../validation/json-body'

/** The `type` filter of an audit listing (platform-wide and per tenant). */
export const AuditTypeFilter = v.optional(
  v.pipe(v.string(), v.regex(/^[a-z_]{1,64}$/, 'must be an event type such as user_login')),
)

const AuditQuery = v.object({
  type: AuditTypeFilter,
  user_id: v.optional(v.pipe(v.string(), v.check(isUuid, 'must be a UUID'))),
  since: v.optional(
    v.pipe(
      v.string(),
      v.isoTimestamp('must be an ISO 8601 timestamp such as 2026-01-31T00:00:00Z'),
      v.transform((text) => new Date(text)),
    ),
  ),
  limit: PageLimit,
  cursor: v.optional(v.string()),
})

/** One audit event as the API shows it (platform-wide and per tenant). */
export const AuditEventJson = v.object({
  id: v.string(),
  type: v.string(),
  actor: v.string(),
  user_id: v.nullable(v.string()),
  client_id: v.nullable(v.string()),
  ip: v.nullable(v.string()),
  metadata: v.record(v.string(), v.unknown()),
  created_at: v.string(),
})

documentRoute({
  method: 'get',
  path: '/admin/audit',
  summary: 'Audit events, newest first',
  tags: ['admin'],
  security: ['adminToken'],
  query: AuditQuery,
  responses: {
    200: {
      description: 'A page of events',
      schema: v.object({ data: v.array(AuditEventJson), next_cursor: v.nullable(v.string()) }),
    },
  },
})

/** `GET /admin/audit?type=&user_id=&since=&limit=&cursor=`. One round trip. */
export const auditAdmin = new Hono<AppEnv>().get('/', requireAdmin(), queryParams(AuditQuery), async (c) => {
  const query = c.req.valid('query')
  const rows = await listAuditEvents(c.var.db.http, {
    type: query.type,
    userId: query.user_id,
    since: query.since,
    limit: query.limit,
    after: decodeCursor(query.cursor),
  })
  const { page, nextCursor } = paginate(rows, query.limit, (row) => ({
    createdAt: row.cursorAt,
    id: row.event.id,
  }))
  return c.json(
    {
      data: page.map(({ event }) => ({
        id: event.id,
        type: event.type,
        actor: event.actor,
        user_id: event.userId,
        client_id: event.clientId,
        ip: event.ip,
        metadata: event.metadata,
        created_at: event.createdAt.toISOString(),
      })),
      next_cursor: nextCursor,
    },
    200,
    { 'cache-control': 'no-store' },
  )
})
