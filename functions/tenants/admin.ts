import { Hono } from 'hono'
import * as v from 'valibot'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import { createTenant, findTenant, listTenants, updateTenant } from '../../db/queries/tenants'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { auditRow } from '../audit/record'
import { decodeCursor, paginate } from '../auth/cursor'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { jsonBody, queryParams } from '../validation/json-body'
import {
  actorOf,
  ListQuery,
  NO_STORE,
  Plan,
  Slug,
  TenantJsonSchema,
  TenantName,
  toTenantJson,
} from './access'

export const CreateTenantBody = v.strictObject({
  slug: Slug,
  name: TenantName,
  plan: v.optional(Plan, 'free'),
})
const PatchTenantBody = v.pipe(
  v.strictObject({
    slug: v.optional(Slug),
    name: v.optional(TenantName),
    plan: v.optional(Plan),
    active: v.optional(v.boolean('must be true or false')),
    monthly_quota: v.optional(
      v.nullable(
        v.pipe(
          v.number('must be a whole number or null'),
          v.integer('must be a whole number or null'),
          v.minValue(0, 'must not be negative'),
          v.maxValue(Number.MAX_SAFE_INTEGER, 'is too large'),
        ),
      ),
    ),
  }),
  v.check(
    (body) => Object.keys(body).length > 0,
    'name at least one of slug, name, plan, active, monthly_quota',
  ),
)
const TenantResponse = v.object({ tenant: TenantJsonSchema })
const TenantList = v.object({ data: v.array(TenantJsonSchema), next_cursor: v.nullable(v.string()) })

documentRoute({
  method: 'post',
  path: '/admin/tenants',
  summary: 'Create a tenant (slug taken: 409 slug_taken)',
  tags: ['admin', 'tenants'],
  security: ['adminToken'],
  requestBody: { schema: CreateTenantBody },
  responses: { 201: { description: 'The tenant', schema: TenantResponse } },
})
documentRoute({
  method: 'get',
  path: '/admin/tenants',
  summary: 'List tenants, newest first',
  tags: ['admin', 'tenants'],
  security: ['adminToken'],
  query: ListQuery,
  responses: { 200: { description: 'A page of tenants', schema: TenantList } },
})
documentRoute({
  method: 'get',
  path: '/admin/tenants/{id}',
  summary: 'One tenant',
  tags: ['admin', 'tenants'],
  security: ['adminToken'],
  responses: { 200: { description: 'The tenant', schema: TenantResponse } },
})
documentRoute({
  method: 'patch',
  path: '/admin/tenants/{id}',
  summary:
    'Rename, re-slug, change plan, set the tenant-wide monthly verify quota (monthly_quota; null follows the plan’s TENANT_MONTHLY_QUOTAS), or (de)activate a tenant. active=false ends its members’ sessions and refresh tokens and its clients’ access tokens (for good); its keys verify DISABLED and its clients get no tokens until active=true',
  tags: ['admin', 'tenants'],
  security: ['adminToken'],
  requestBody: { schema: PatchTenantBody },
  responses: { 200: { description: 'The tenant', schema: TenantResponse } },
})

function slugTaken(error: unknown): never {
  if (sqlState(error) === UNIQUE_VIOLATION) {
    throw new ProblemError('slug_taken', { detail: 'Another tenant already uses this slug' })
  }
  throw error
}

/** `/admin/tenants`: the platform's tenants (ADMIN_TOKEN or an admin-scoped token). */
export const tenantsAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .post('/', jsonBody(CreateTenantBody), async (c) => {
    const body = c.req.valid('json')
    const id = crypto.randomUUID()
    const tenant = await createTenant(
      c.var.db.http,
      { id, slug: body.slug, name: body.name, plan: body.plan, now: new Date() },
      auditRow({ type: 'tenant_created', actor: actorOf(c.var.principal), tenantId: id }, clientIp(c)),
    ).catch(slugTaken)
    return c.json({ tenant: toTenantJson(tenant) }, 201, NO_STORE)
  })
  .get('/', queryParams(ListQuery), async (c) => {
    const query = c.req.valid('query')
    const rows = await listTenants(c.var.db.http, { limit: query.limit, after: decodeCursor(query.cursor) })
    const { page, nextCursor } = paginate(rows, query.limit, (row) => ({
      createdAt: row.cursorAt,
      id: row.id,
    }))
    return c.json({ data: page.map((t) => toTenantJson(t)), next_cursor: nextCursor }, 200, NO_STORE)
  })
  .get('/:id', async (c) => {
    const id = c.req.param('id')
    const tenant = isUuid(id) ? await findTenant(c.var.db.http, id) : undefined
    if (tenant === undefined) {
      throw new ProblemError('not_found', { detail: 'No such tenant' })
    }
    return c.json({ tenant: toTenantJson(tenant) }, 200, NO_STORE)
  })
  .patch('/:id', jsonBody(PatchTenantBody), async (c) => {
    const id = c.req.param('id')
    const body = c.req.valid('json')
    const { monthly_quota: monthlyQuota, ...rest } = body
    const patch = { ...rest, ...(monthlyQuota === undefined ? {} : { monthlyQuota }) }
    if (!isUuid(id)) {
      throw new ProblemError('not_found', { detail: 'No such tenant' })
    }
    // A single-tenant deployment lives in the default tenant: switching it off would lock out everyone.
    if (id === DEFAULT_TENANT_ID && patch.active === false) {
      throw new ProblemError('conflict', { detail: 'The default tenant cannot be deactivated' })
    }
    const updated = await updateTenant(
      c.var.db.http,
      id,
      patch,
      new Date(),
      auditRow({ type: 'tenant_updated', actor: actorOf(c.var.principal), tenantId: id }, clientIp(c)),
    ).catch(slugTaken)
    if (updated === undefined) {
      throw new ProblemError('not_found', { detail: 'No such tenant' })
    }
    return c.json({ tenant: toTenantJson(updated.tenant) }, 200, NO_STORE)
  })
