import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import {
  insertServiceKey,
  listServiceKeys,
  revokeServiceKey,
  type ServiceKeyAudit,
  type ServiceKeyRecord,
  type ServiceKeyScope,
} from '../../db/queries/service-keys'
import { isUuid } from '../../db/uuid'
import { generateApiKey } from '../apikeys/key-format'
import { decodeCursor, encodeCursor, PageLimit } from '../auth/cursor'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { invalidField, ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { actorOf, NO_STORE, TENANT_SECURITY, tenantActor } from '../tenants/access'
import { jsonBody, queryParams } from '../validation/json-body'

/** Lifetime of a service key when the request names none. */
export const DEFAULT_SERVICE_KEY_DAYS = 90
/** The longest a service key may live: it must be replaced at least yearly. */
export const MAX_SERVICE_KEY_DAYS = 366
const DAY_MS = 86_400_000
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/

const CreateBody = v.strictObject({
  service_name: v.pipe(
    v.string(),
    v.trim(),
    v.minLength(1, 'must not be empty'),
    v.maxLength(100, 'must be at most 100 characters'),
  ),
  expires_at: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (value) => RFC3339.test(value) && !Number.isNaN(Date.parse(value)),
        'must be an RFC 3339 timestamp, e.g. 2030-01-01T00:00:00Z',
      ),
    ),
  ),
  skip_rate_limit: v.optional(v.boolean(), false),
})

const ListQuery = v.object({
  limit: PageLimit,
  cursor: v.optional(v.string()),
  include_revoked: v.optional(v.picklist(['true', 'false'])),
})

const ServiceKeyJson = v.object({
  id: v.string(),
  prefix: v.string(),
  last4: v.string(),
  service_name: v.string(),
  tenant_id: v.nullable(v.string()),
  skip_rate_limit: v.boolean(),
  expires_at: v.string(),
  revoked_at: v.nullable(v.string()),
  created_by: v.string(),
  created_at: v.string(),
})

function toJson(record: ServiceKeyRecord) {
  return {
    id: record.id,
    prefix: record.prefix,
    last4: record.last4,
    service_name: record.serviceName,
    tenant_id: record.tenantId,
    skip_rate_limit: record.skipRateLimit,
    expires_at: record.expiresAt.toISOString(),
    revoked_at: record.revokedAt?.toISOString() ?? null,
    created_by: record.createdBy,
    created_at: record.createdAt.toISOString(),
  }
}

const notFound = () => new ProblemError('not_found', { detail: 'No such service key' })

interface Caller {
  scope: ServiceKeyScope
  audit: ServiceKeyAudit
}

function platformCaller(c: Context<AppEnv>): Caller {
  const principal = c.var.principal
  return {
    scope: { kind: 'platform' },
    audit: {
      actor: actorOf(principal),
      userId: principal.kind === 'user' ? principal.userId : null,
      ip: clientIp(c),
    },
  }
}

async function tenantCaller(c: Context<AppEnv>): Promise<Caller> {
  const actor = await tenantActor(c, 'manage')
  return {
    scope: { kind: 'tenant', tenantId: actor.tenantId },
    audit: { actor: actor.actor, userId: actor.userId ?? null, ip: clientIp(c) },
  }
}

type Handlers = (callerOf: (c: Context<AppEnv>) => Caller | Promise<Caller>) => Hono<AppEnv>

/**
 * Create (the key is in this response only; the hash is stored), list, revoke. The same handlers
 * serve the platform (`/admin/service-keys`, keys with no tenant) and a tenant
 * (`/tenants/{id}/service-keys`); each query is scoped by the caller's scope.
 */
const serviceKeyRoutes: Handlers = (callerOf) =>
  new Hono<AppEnv>()
    .post('/', jsonBody(CreateBody), async (c) => {
      const caller = await callerOf(c)
      const body = c.req.valid('json')
      const now = new Date()
      const expiresAt =
        body.expires_at === undefined
          ? new Date(now.getTime() + DEFAULT_SERVICE_KEY_DAYS * DAY_MS)
          : new Date(body.expires_at)
      if (expiresAt.getTime() <= now.getTime()) {
        throw invalidField('expires_at', 'must be in the future')
      }
      if (expiresAt.getTime() > now.getTime() + MAX_SERVICE_KEY_DAYS * DAY_MS) {
        throw invalidField('expires_at', `must be at most ${MAX_SERVICE_KEY_DAYS} days ahead`)
      }
      const generated = generateApiKey(c.var.config.apiKeyEnv, 'psk')
      const record = await insertServiceKey(
        c.var.db.http,
        caller.scope,
        {
          keyHash: await sha256Hex(generated.key),
          prefix: generated.prefix,
          last4: generated.last4,
          serviceName: body.service_name,
          skipRateLimit: body.skip_rate_limit,
          expiresAt,
          createdBy: caller.audit.actor,
        },
        caller.audit,
      )
      return c.json({ ...toJson(record), key: generated.key }, 201, NO_STORE)
    })
    .get('/', queryParams(ListQuery), async (c) => {
      const caller = await callerOf(c)
      const query = c.req.valid('query')
      const rows = await listServiceKeys(c.var.db.http, caller.scope, {
        limit: query.limit,
        after: decodeCursor(query.cursor),
        includeRevoked: query.include_revoked === 'true',
      })
      const page = rows.slice(0, query.limit)
      const last = page.at(-1)
      return c.json(
        {
          data: page.map(toJson),
          next_cursor:
            rows.length > query.limit && last !== undefined
              ? encodeCursor({ createdAt: last.cursorCreatedAt, id: last.id })
              : null,
        },
        200,
        NO_STORE,
      )
    })
    .delete('/:keyId', async (c) => {
      const caller = await callerOf(c)
      const keyId = c.req.param('keyId')
      if (!isUuid(keyId)) {
        throw notFound()
      }
      const record = await revokeServiceKey(c.var.db.http, caller.scope, keyId, new Date(), caller.audit)
      if (record === undefined) {
        throw notFound()
      }
      return c.json(toJson(record), 200, NO_STORE)
    })

/** `/admin/service-keys`: platform-issued keys (no tenant: they verify every tenant's API keys). */
export const serviceKeysAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .route('/', serviceKeyRoutes(platformCaller))

/** `/tenants/{id}/service-keys`: a tenant's owners and admins (and platform admins) issue its keys. */
export const tenantServiceKeys = serviceKeyRoutes(tenantCaller)

for (const [base, security, tags] of [
  ['/admin/service-keys', ['adminToken', 'bearerToken'], ['admin']],
  ['/tenants/{id}/service-keys', [...TENANT_SECURITY], ['tenants']],
] as const) {
  const scope = base.startsWith('/admin') ? 'platform-wide' : 'tenant'
  documentRoute({
    method: 'post',
    path: base,
    summary: `Issue a ${scope} service key (Bearer psk_… on /api-keys/verify and /oauth/introspect); the key is shown once`,
    tags: [...tags],
    security: [...security],
    requestBody: { schema: CreateBody },
    responses: {
      201: {
        description: 'Created; `key` appears only here',
        schema: v.object({ ...ServiceKeyJson.entries, key: v.string() }),
      },
      400: { description: 'Invalid body (expires_at in the past or more than 366 days ahead)' },
    },
  })
  documentRoute({
    method: 'get',
    path: base,
    summary: `List ${scope} service keys (never the key or its hash)`,
    tags: [...tags],
    security: [...security],
    query: ListQuery,
    responses: {
      200: {
        description: 'Newest first',
        schema: v.object({ data: v.array(ServiceKeyJson), next_cursor: v.nullable(v.string()) }),
      },
    },
  })
  documentRoute({
    method: 'delete',
    path: `${base}/{keyId}`,
    summary: `Revoke a ${scope} service key (idempotent; its next verify or introspection is 401)`,
    tags: [...tags],
    security: [...security],
    responses: { 200: { description: 'Revoked', schema: ServiceKeyJson }, 404: { description: 'Not found' } },
  })
}
