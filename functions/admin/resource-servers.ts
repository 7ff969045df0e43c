import { sql } from 'drizzle-orm'
import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { FOREIGN_KEY_VIOLATION, sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import { insertAuditEventWhereStatement } from '../../db/queries/audit'
import {
  deleteResourceServerStatement,
  findResourceServerById,
  insertResourceServerStatement,
  listResourceServers,
  type ResourceServerRow,
  type ResourceServerScope,
  updateResourceServerStatement,
} from '../../db/queries/resource-servers'
import { resourceServers } from '../../db/schema'
import { DEFAULT_TENANT_ID, SIGNING_ALGORITHMS } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { type AuditEvent, auditRow, auditStatement } from '../audit/record'
import type { AppEnv } from '../env'
import { invalidField, ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { forgetResourceServers } from '../oauth/resources'
import { documentRoute } from '../openapi/registry'
import {
  NO_STORE,
  type ObjectManager,
  platformManager,
  TENANT_SECURITY,
  tenantManager,
} from '../tenants/access'
import { jsonBody, queryParams } from '../validation/json-body'

// RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash.
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/
/** Scopes that mean something to Portcullis itself: a resource server may not redefine them. */
const RESERVED_SCOPES = new Set([
  'openid',
  'profile',
  'email',
  'offline_access',
  'admin',
  'apikeys:write',
  'apikeys:verify',
  'tenant:admin',
])

const Identifier = v.pipe(
  v.string(),
  v.maxLength(2000),
  v.check(
    (value) => URL.canParse(value) && !value.includes('#'),
    'must be an absolute URL without a fragment',
  ),
  v.check((value) => {
    if (!URL.canParse(value)) {
      return false
    }
    const url = new URL(value)
    const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)
    return url.protocol === 'https:' || (url.protocol === 'http:' && loopback)
  }, 'must be https (http only on a loopback host)'),
)

const DisplayName = v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(100))
const Scopes = v.pipe(
  v.array(
    v.object({
      name: v.pipe(
        v.string(),
        v.maxLength(100),
        v.regex(SCOPE_TOKEN, 'must be a scope token (printable ASCII, no spaces)'),
        v.check((name) => !RESERVED_SCOPES.has(name), 'is a Portcullis scope and cannot be redefined'),
      ),
      description: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(300)),
    }),
  ),
  v.maxLength(50),
  v.check((list) => new Set(list.map((s) => s.name)).size === list.length, 'scope names must be unique'),
)
const TtlSeconds = v.nullable(v.pipe(v.number(), v.integer(), v.minValue(60), v.maxValue(86_400)))
/** The JWS algorithm of its access tokens; null: ACCESS_TOKEN_ALG. */
const Algorithm = v.nullable(v.picklist(SIGNING_ALGORITHMS))

const CreateBody = v.object({
  identifier: Identifier,
  display_name: DisplayName,
  scopes: Scopes,
  access_token_ttl_seconds: v.optional(TtlSeconds),
  signing_algorithm: v.optional(Algorithm),
  /** Platform admins only: the tenant that owns it (absent: the default tenant). A tenant's call may name only itself. */
  tenant_id: v.optional(v.string()),
})

/** The identifier (the tokens' audience) is fixed: tokens already minted carry it. */
const UpdateBody = v.pipe(
  v.strictObject({
    display_name: v.optional(DisplayName),
    scopes: v.optional(Scopes),
    access_token_ttl_seconds: v.optional(TtlSeconds),
    signing_algorithm: v.optional(Algorithm),
  }),
  v.check((body) => Object.keys(body).length > 0, 'must change at least one field'),
)

const ListQuery = v.object({ tenant_id: v.optional(v.string()) })

function view(row: ResourceServerRow): Record<string, unknown> {
  return {
    id: row.id,
    identifier: row.identifier,
    display_name: row.displayName,
    scopes: row.scopes,
    access_token_ttl_seconds: row.accessTokenTtlSeconds,
    signing_algorithm: row.signingAlgorithm,
    tenant_id: row.tenantId,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  }
}

const notFound = () => new ProblemError('not_found', { detail: 'No such resource server' })

function event(
  caller: ObjectManager,
  type: AuditEvent['type'],
  row: { id: string; identifier: string; tenantId: string },
  metadata: Record<string, unknown> = {},
): AuditEvent {
  return {
    type,
    actor: caller.actor,
    userId: caller.userId,
    tenantId: row.tenantId,
    metadata: { resource_server_id: row.id, identifier: row.identifier, ...metadata },
  }
}

/** The issuer and DEFAULT_AUDIENCE are Portcullis's own targets: no one may register them. */
function ownTarget(c: Context<AppEnv>, identifier: string): boolean {
  const config = c.var.config
  return identifier === config.issuer || identifier === config.defaultAudience
}

/**
 * Create, list, get, update and delete resource servers (issue 11): the APIs that trust our
 * tokens, each with its identifier (the `resource` clients send, the tokens' `aud`), name,
 * scopes with descriptions, token lifetime and signing algorithm. The same handlers serve
 * platform admins (`/admin/resource-servers`, every tenant's) and a tenant's owners and admins
 * (`/tenants/{id}/resource-servers`, that tenant's: every query names the tenant, so another
 * tenant's is 404). Identifiers are unique across tenants (a clash is 409, whoever owns it).
 * Each change commits with its audit row in one batch.
 */
const resourceServerRoutes = (callerOf: (c: Context<AppEnv>) => ObjectManager | Promise<ObjectManager>) =>
  new Hono<AppEnv>()
    .post('/', jsonBody(CreateBody), async (c) => {
      const caller = await callerOf(c)
      const body = c.req.valid('json')
      let tenantId: string | undefined
      if (caller.scope.kind === 'tenant') {
        if (body.tenant_id !== undefined && body.tenant_id !== caller.scope.tenantId) {
          throw invalidField('tenant_id', 'a tenant registers resource servers only for itself')
        }
        tenantId = caller.scope.tenantId
      } else if (body.tenant_id !== undefined) {
        if (!isUuid(body.tenant_id)) {
          throw invalidField('tenant_id', 'must be a tenant id')
        }
        tenantId = body.tenant_id
      }
      if (ownTarget(c, body.identifier)) {
        throw invalidField('identifier', 'is Portcullis itself (the issuer or DEFAULT_AUDIENCE)')
      }
      const x = c.var.db.http
      const id = crypto.randomUUID()
      let inserted: ResourceServerRow[]
      try {
        ;[inserted] = await x.batch([
          insertResourceServerStatement(x, {
            id,
            ...(tenantId === undefined ? {} : { tenantId }),
            identifier: body.identifier,
            displayName: body.display_name,
            scopes: body.scopes,
            accessTokenTtlSeconds: body.access_token_ttl_seconds ?? null,
            signingAlgorithm: body.signing_algorithm ?? null,
          }),
          auditStatement(
            x,
            clientIp(c),
            event(caller, 'resource_server_created', {
              id,
              identifier: body.identifier,
              tenantId: tenantId ?? DEFAULT_TENANT_ID,
            }),
          ),
        ])
      } catch (error) {
        // The batch is one transaction: a duplicate identifier rolls the audit row back too. The
        // answer does not say which tenant holds the identifier.
        if (sqlState(error) === UNIQUE_VIOLATION) {
          throw new ProblemError('conflict', {
            detail: 'A resource server with this identifier already exists',
          })
        }
        if (sqlState(error) === FOREIGN_KEY_VIOLATION) {
          throw invalidField('tenant_id', 'no such tenant')
        }
        throw error
      }
      const row = inserted[0]
      if (row === undefined) {
        throw new Error('resource server insert returned no row')
      }
      forgetResourceServers()
      return c.json(view(row), 201, NO_STORE)
    })
    .get('/', queryParams(ListQuery), async (c) => {
      const caller = await callerOf(c)
      const filter = c.req.valid('query').tenant_id
      let scope: ResourceServerScope = caller.scope
      if (filter !== undefined && scope.kind === 'platform') {
        if (!isUuid(filter)) {
          throw invalidField('tenant_id', 'must be a tenant id')
        }
        scope = { kind: 'platform', tenantId: filter }
      }
      const rows = await listResourceServers(c.var.db.http, scope)
      return c.json({ data: rows.map(view) }, 200, NO_STORE)
    })
    .get('/:rsId', async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('rsId')
      const row = isUuid(id) ? await findResourceServerById(c.var.db.http, caller.scope, id) : undefined
      if (row === undefined) {
        throw notFound()
      }
      return c.json(view(row), 200, NO_STORE)
    })
    .patch('/:rsId', jsonBody(UpdateBody), async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('rsId')
      const body = c.req.valid('json')
      const x = c.var.db.http
      const current = isUuid(id) ? await findResourceServerById(x, caller.scope, id) : undefined
      if (current === undefined) {
        throw notFound()
      }
      const [updated] = await x.batch([
        updateResourceServerStatement(x, caller.scope, id, {
          ...(body.display_name === undefined ? {} : { displayName: body.display_name }),
          ...(body.scopes === undefined ? {} : { scopes: body.scopes }),
          ...(body.access_token_ttl_seconds === undefined
            ? {}
            : { accessTokenTtlSeconds: body.access_token_ttl_seconds }),
          ...(body.signing_algorithm === undefined ? {} : { signingAlgorithm: body.signing_algorithm }),
        }),
        // now() is the transaction's: the row this statement batch just changed, and only it.
        insertAuditEventWhereStatement(
          x,
          auditRow(
            event(caller, 'resource_server_updated', current, { changed: Object.keys(body) }),
            clientIp(c),
          ),
          sql`exists (select 1 from ${resourceServers} where ${resourceServers.id} = ${id}
            and ${resourceServers.updatedAt} = now())`,
        ),
      ])
      const row = updated[0]
      if (row === undefined) {
        throw notFound()
      }
      forgetResourceServers()
      return c.json(view(row), 200, NO_STORE)
    })
    .delete('/:rsId', async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('rsId')
      const x = c.var.db.http
      const current = isUuid(id) ? await findResourceServerById(x, caller.scope, id) : undefined
      if (current === undefined) {
        throw notFound()
      }
      const [, deleted] = await x.batch([
        // Only while it is there: a request that raced us to the delete wrote the row.
        insertAuditEventWhereStatement(
          x,
          auditRow(event(caller, 'resource_server_deleted', current), clientIp(c)),
          sql`exists (select 1 from ${resourceServers} where ${resourceServers.id} = ${id})`,
        ),
        deleteResourceServerStatement(x, caller.scope, id),
      ])
      if (deleted.length === 0) {
        throw notFound()
      }
      forgetResourceServers()
      return c.body(null, 204)
    })

/** `/admin/resource-servers`: platform admins manage every tenant's resource servers. */
export const resourceServersAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .route('/', resourceServerRoutes(platformManager))

/** `/tenants/{id}/resource-servers`: a tenant's owners and admins (and platform admins) manage its own. */
export const tenantResourceServers = resourceServerRoutes(tenantManager)

const RESOURCE_SERVER = v.object({
  id: v.string(),
  identifier: v.string(),
  display_name: v.string(),
  scopes: v.array(v.object({ name: v.string(), description: v.string() })),
  access_token_ttl_seconds: v.nullable(v.number()),
  signing_algorithm: v.nullable(v.picklist(SIGNING_ALGORITHMS)),
  tenant_id: v.string(),
  created_at: v.string(),
  updated_at: v.string(),
})

for (const [base, security, tags] of [
  ['/admin/resource-servers', ['adminToken', 'bearerToken'], ['admin']],
  ['/tenants/{id}/resource-servers', [...TENANT_SECURITY], ['tenants']],
] as const) {
  const platform = base.startsWith('/admin')
  const common = { tags: [...tags], security: [...security] }
  documentRoute({
    method: 'post',
    path: base,
    summary: platform
      ? 'Register a resource server (an RFC 8707 target: its identifier is the tokens’ aud), in the default tenant or tenant_id'
      : 'Register a resource server of the tenant (an RFC 8707 target: its identifier is the tokens’ aud)',
    ...common,
    requestBody: { schema: CreateBody },
    responses: {
      201: { description: 'Created (audited as resource_server_created)', schema: RESOURCE_SERVER },
      400: { description: 'Invalid body: identifier not https, a reserved scope, the issuer as identifier' },
      409: { description: 'The identifier is taken (in any tenant: identifiers are global audiences)' },
    },
  })
  documentRoute({
    method: 'get',
    path: base,
    summary: platform
      ? 'List every tenant’s resource servers (or one tenant’s)'
      : 'List the tenant’s resource servers',
    ...common,
    ...(platform ? { query: ListQuery } : {}),
    responses: {
      200: { description: 'Oldest first', schema: v.object({ data: v.array(RESOURCE_SERVER) }) },
    },
  })
  documentRoute({
    method: 'get',
    path: `${base}/{rsId}`,
    summary: 'Get a resource server',
    ...common,
    responses: {
      200: { description: 'Resource server', schema: RESOURCE_SERVER },
      404: { description: 'Not found (or another tenant’s)' },
    },
  })
  documentRoute({
    method: 'patch',
    path: `${base}/{rsId}`,
    summary: 'Change display name, scopes, token lifetime or signing algorithm (the identifier is fixed)',
    ...common,
    requestBody: { schema: UpdateBody },
    responses: {
      200: { description: 'Updated (audited as resource_server_updated)', schema: RESOURCE_SERVER },
      400: { description: 'Invalid body' },
      404: { description: 'Not found (or another tenant’s)' },
    },
  })
  documentRoute({
    method: 'delete',
    path: `${base}/{rsId}`,
    summary: 'Delete a resource server (its resource is then invalid_target)',
    ...common,
    responses: {
      204: { description: 'Deleted (audited as resource_server_deleted)' },
      404: { description: 'Not found (or another tenant’s)' },
    },
  })
}
