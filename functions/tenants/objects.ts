import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import {
  disableTenantClient,
  findTenantClient,
  findTenantQuotaUsage,
  listTenantApiKeys,
  listTenantAudit,
  listTenantClients,
  revokeTenantApiKey,
} from '../../db/queries/tenant-objects'
import { API_KEY_TIERS, DEFAULT_TENANT_ID, TENANT_PLANS, type TenantPlan } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { AuditEventJson, AuditTypeFilter } from '../admin/audit'
import { auditRow } from '../audit/record'
import { decodeCursor, PageLimit, paginate } from '../auth/cursor'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { clientUsageResponse, UsageQuery } from '../oauth/client-usage'
import { documentRoute } from '../openapi/registry'
import { queryParams } from '../validation/json-body'
import { ListQuery, NO_STORE, TENANT_SECURITY, tenantActor } from './access'
import { planKeyTiers } from './plans'

const AuditQuery = v.object({
  type: AuditTypeFilter,
  limit: PageLimit,
  cursor: v.optional(v.string()),
})

const ClientJson = v.object({
  client_id: v.string(),
  client_name: v.nullable(v.string()),
  grant_types: v.array(v.string()),
  scope: v.string(),
  token_endpoint_auth_method: v.string(),
  redirect_uris: v.array(v.string()),
  disabled_at: v.nullable(v.string()),
  created_at: v.string(),
})
const KeyJson = v.object({
  id: v.string(),
  prefix: v.string(),
  last4: v.string(),
  name: v.string(),
  owner_id: v.string(),
  tier: v.string(),
  scopes: v.array(v.string()),
  expires_at: v.nullable(v.string()),
  revoked_at: v.nullable(v.string()),
  last_used_at: v.nullable(v.string()),
  created_at: v.string(),
})
const page = <S extends v.GenericSchema>(item: S) =>
  v.object({ data: v.array(item), next_cursor: v.nullable(v.string()) })

const doc = (
  method: 'get' | 'post' | 'delete',
  path: string,
  summary: string,
  responses: Parameters<typeof documentRoute>[0]['responses'],
  query?: v.GenericSchema,
) =>
  documentRoute({
    method,
    path,
    summary: `${summary} (owner or admin; another tenant’s object: 404)`,
    tags: ['tenants'],
    security: TENANT_SECURITY,
    responses,
    ...(query === undefined ? {} : { query }),
  })

doc(
  'get',
  '/tenants/{id}/clients',
  'The tenant’s OAuth clients',
  { 200: { description: 'A page', schema: page(ClientJson) } },
  ListQuery,
)
doc('get', '/tenants/{id}/clients/{client_id}', 'One of the tenant’s clients', {
  200: { description: 'The client', schema: v.object({ client: ClientJson }) },
})
doc('post', '/tenants/{id}/clients/{client_id}/disable', 'Disable one of the tenant’s clients (audited)', {
  200: { description: 'The client', schema: v.object({ client: ClientJson }) },
})
doc(
  'get',
  '/tenants/{id}/api-keys',
  'The tenant’s API keys (no secrets)',
  { 200: { description: 'A page', schema: page(KeyJson) } },
  ListQuery,
)
doc('delete', '/tenants/{id}/api-keys/{key_id}', 'Revoke one of the tenant’s API keys (audited)', {
  200: { description: 'The key', schema: v.object({ key: KeyJson }) },
})
const QuotaJson = v.object({
  plan: v.picklist(TENANT_PLANS),
  key_tier: v.picklist(API_KEY_TIERS),
  monthly_quota: v.nullable(v.number()),
  limit: v.nullable(v.number()),
  used: v.number(),
  remaining: v.nullable(v.number()),
  period_start: v.string(),
  reset_at: v.string(),
})
doc(
  'get',
  '/tenants/{id}/quota',
  'The plan, the tier it gives new keys, and this UTC month’s shared verify quota',
  {
    200: { description: 'The quota', schema: v.object({ quota: QuotaJson }) },
  },
)
doc(
  'get',
  '/tenants/{id}/audit',
  'The tenant’s audit events, newest first',
  { 200: { description: 'A page', schema: page(AuditEventJson) } },
  AuditQuery,
)

type Row = Record<string, unknown>
const iso = (value: unknown) =>
  value === null || value === undefined ? null : new Date(String(value)).toISOString()
const strings = (value: unknown) => (Array.isArray(value) ? value.map(String) : [])

function toClientJson(row: Row) {
  return {
    client_id: String(row.client_id),
    client_name: row.client_name === null ? null : String(row.client_name),
    grant_types: strings(row.grant_types),
    scope: String(row.scope),
    token_endpoint_auth_method: String(row.token_endpoint_auth_method),
    redirect_uris: strings(row.redirect_uris),
    disabled_at: iso(row.disabled_at),
    created_at: iso(row.created_at),
  }
}

function toKeyJson(row: Row) {
  return {
    id: String(row.id),
    prefix: String(row.prefix),
    last4: String(row.last4),
    name: String(row.name),
    owner_id: String(row.owner_id),
    tier: String(row.tier),
    scopes: strings(row.scopes),
    expires_at: iso(row.expires_at),
    revoked_at: iso(row.revoked_at),
    last_used_at: iso(row.last_used_at),
    created_at: iso(row.created_at),
  }
}

function toAuditJson(row: Row) {
  return {
    id: String(row.id),
    type: String(row.type),
    actor: String(row.actor),
    user_id: row.user_id === null ? null : String(row.user_id),
    client_id: row.client_id === null ? null : String(row.client_id),
    ip: row.ip === null ? null : String(row.ip),
    metadata: (row.metadata ?? {}) as Record<string, unknown>,
    created_at: iso(row.created_at),
  }
}

function pageOf(c: Context<AppEnv>, rows: Row[], limit: number, view: (row: Row) => unknown) {
  const { page: items, nextCursor } = paginate(rows, limit, (row) => ({
    createdAt: String(row.cursor_at),
    id: String(row.id),
  }))
  return c.json({ data: items.map(view), next_cursor: nextCursor }, 200, NO_STORE)
}

const clientNotFound = () => new ProblemError('not_found', { detail: 'No such client' })
const keyNotFound = () => new ProblemError('not_found', { detail: 'No such API key' })

/**
 * `/tenants/{id}/clients|api-keys|audit`: a tenant's owners and admins (and platform admins)
 * manage its objects. Every query is scoped by the tenant in its WHERE clause.
 */
export const tenantObjects = new Hono<AppEnv>()
  .get('/clients', queryParams(ListQuery), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const query = c.req.valid('query')
    const rows = await listTenantClients(
      c.var.db.http,
      actor.tenantId,
      query.limit,
      decodeCursor(query.cursor),
    )
    return pageOf(c, rows, query.limit, toClientJson)
  })
  .get('/clients/:clientId', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const row = await findTenantClient(c.var.db.http, actor.tenantId, c.req.param('clientId'))
    if (row === undefined) {
      throw clientNotFound()
    }
    return c.json({ client: toClientJson(row) }, 200, NO_STORE)
  })
  .get('/clients/:clientId/usage', queryParams(UsageQuery), async (c) => {
    const actor = await tenantActor(c, 'manage')
    return clientUsageResponse(c, c.req.param('clientId'), actor.tenantId, c.req.valid('query'))
  })
  .post('/clients/:clientId/disable', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const row = await disableTenantClient(
      c.var.db.http,
      actor.tenantId,
      c.req.param('clientId'),
      new Date(),
      auditRow({ type: 'client_disabled', actor: actor.actor }, clientIp(c)),
    )
    if (row === undefined) {
      throw clientNotFound()
    }
    return c.json({ client: toClientJson(row) }, 200, NO_STORE)
  })
  .get('/api-keys', queryParams(ListQuery), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const query = c.req.valid('query')
    const rows = await listTenantApiKeys(
      c.var.db.http,
      actor.tenantId,
      query.limit,
      decodeCursor(query.cursor),
    )
    return pageOf(c, rows, query.limit, toKeyJson)
  })
  .delete('/api-keys/:keyId', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const keyId = c.req.param('keyId')
    const row = isUuid(keyId)
      ? await revokeTenantApiKey(
          c.var.db.http,
          actor.tenantId,
          keyId,
          new Date(),
          auditRow({ type: 'api_key_revoked', actor: actor.actor }, clientIp(c)),
        )
      : undefined
    if (row === undefined) {
      throw keyNotFound()
    }
    return c.json({ key: toKeyJson(row) }, 200, NO_STORE)
  })
  .get('/quota', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const usage = await findTenantQuotaUsage(c.var.db.http, actor.tenantId, new Date())
    if (usage === undefined) {
      throw new ProblemError('not_found', { detail: 'No such tenant' })
    }
    const plan = usage.plan as TenantPlan
    const limit = usage.monthlyQuota ?? c.var.config.tenantMonthlyQuotas[plan]
    const tiers = planKeyTiers(c.var.config)
    return c.json(
      {
        quota: {
          plan,
          key_tier: actor.tenantId === DEFAULT_TENANT_ID ? tiers.defaultTenant : tiers.byPlan[plan],
          monthly_quota: usage.monthlyQuota,
          limit,
          used: usage.used,
          remaining: limit === null ? null : Math.max(0, limit - usage.used),
          period_start: usage.periodStart.toISOString(),
          reset_at: usage.resetAt.toISOString(),
        },
      },
      200,
      NO_STORE,
    )
  })
  .get('/audit', queryParams(AuditQuery), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const query = c.req.valid('query')
    const rows = await listTenantAudit(c.var.db.http, actor.tenantId, {
      type: query.type,
      limit: query.limit,
      after: decodeCursor(query.cursor),
    })
    return pageOf(c, rows, query.limit, toAuditJson)
  })
