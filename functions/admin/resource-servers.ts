import { Hono } from 'hono'
import * as v from 'valibot'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import {
  deleteResourceServerStatement,
  findResourceServerById,
  insertResourceServerStatement,
  listResourceServers,
  type ResourceServerRow,
} from '../../db/queries/resource-servers'
import { SIGNING_ALGORITHMS } from '../../db/schema/constants'
import { auditStatement } from '../audit/record'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { forgetResourceServers } from '../oauth/resources'
import { documentRoute } from '../openapi/registry'
import { jsonBody } from '../validation/json-body'

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

const CreateBody = v.object({
  identifier: Identifier,
  display_name: v.pipe(v.string(), v.trim(), v.minLength(1), v.maxLength(100)),
  scopes: v.pipe(
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
  ),
  access_token_ttl_seconds: v.optional(
    v.nullable(v.pipe(v.number(), v.integer(), v.minValue(60), v.maxValue(86_400))),
  ),
  /** The JWS algorithm of its access tokens; absent or null: ACCESS_TOKEN_ALG. */
  signing_algorithm: v.optional(v.nullable(v.picklist(SIGNING_ALGORITHMS))),
})

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

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function actorOf(c: { var: AppEnv['Variables'] }): string {
  const principal = c.var.principal
  return principal.kind === 'user' ? `user:${principal.userId}` : 'admin'
}

/**
 * /admin/resource-servers (issue 11): the APIs that trust our tokens, each with its identifier
 * (the `resource` clients send, the tokens' `aud`), name, scopes with descriptions, token
 * lifetime and signing algorithm, in the default tenant. Create, list, get, delete; each change commits with its audit row.
 */
export const resourceServersAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .post('/', jsonBody(CreateBody), async (c) => {
    const body = c.req.valid('json')
    const x = c.var.db.http
    let inserted: ResourceServerRow[]
    try {
      ;[inserted] = await x.batch([
        insertResourceServerStatement(x, {
          identifier: body.identifier,
          displayName: body.display_name,
          scopes: body.scopes,
          accessTokenTtlSeconds: body.access_token_ttl_seconds ?? null,
          signingAlgorithm: body.signing_algorithm ?? null,
        }),
        auditStatement(x, clientIp(c), {
          type: 'admin_action',
          actor: actorOf(c),
          metadata: { action: 'resource_server_created', identifier: body.identifier },
        }),
      ])
    } catch (error) {
      // The batch is one transaction: a duplicate identifier rolls the audit row back too.
      if (sqlState(error) === UNIQUE_VIOLATION) {
        throw new ProblemError('conflict', {
          detail: 'A resource server with this identifier already exists',
        })
      }
      throw error
    }
    const row = inserted[0]
    if (row === undefined) {
      throw new Error('resource server insert returned no row')
    }
    forgetResourceServers()
    return c.json(view(row), 201)
  })
  .get('/', async (c) => {
    const rows = await listResourceServers(c.var.db.http)
    return c.json({ data: rows.map(view) }, 200)
  })
  .get('/:id', async (c) => {
    const id = c.req.param('id')
    const row = UUID.test(id) ? await findResourceServerById(c.var.db.http, id) : undefined
    if (row === undefined) {
      throw new ProblemError('not_found', { detail: 'No such resource server' })
    }
    return c.json(view(row), 200)
  })
  .delete('/:id', async (c) => {
    const id = c.req.param('id')
    if (!UUID.test(id)) {
      throw new ProblemError('not_found', { detail: 'No such resource server' })
    }
    const x = c.var.db.http
    const [deleted] = await x.batch([
      deleteResourceServerStatement(x, id),
      auditStatement(x, clientIp(c), {
        type: 'admin_action',
        actor: actorOf(c),
        metadata: { action: 'resource_server_deleted', id },
      }),
    ])
    if (deleted.length === 0) {
      throw new ProblemError('not_found', { detail: 'No such resource server' })
    }
    forgetResourceServers()
    return c.body(null, 204)
  })

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

documentRoute({
  method: 'post',
  path: '/admin/resource-servers',
  summary: 'Register a resource server (an RFC 8707 target: its identifier is the tokens’ aud)',
  tags: ['admin'],
  security: ['adminToken', 'bearerToken'],
  requestBody: { schema: CreateBody },
  responses: {
    201: { description: 'Created', schema: RESOURCE_SERVER },
    409: { description: 'The identifier is taken' },
  },
})
documentRoute({
  method: 'get',
  path: '/admin/resource-servers',
  summary: 'List resource servers',
  tags: ['admin'],
  security: ['adminToken', 'bearerToken'],
  responses: {
    200: { description: 'Resource servers', schema: v.object({ data: v.array(RESOURCE_SERVER) }) },
  },
})
documentRoute({
  method: 'get',
  path: '/admin/resource-servers/{id}',
  summary: 'Get a resource server',
  tags: ['admin'],
  security: ['adminToken', 'bearerToken'],
  responses: {
    200: { description: 'Resource server', schema: RESOURCE_SERVER },
    404: { description: 'Not found' },
  },
})
documentRoute({
  method: 'delete',
  path: '/admin/resource-servers/{id}',
  summary: 'Delete a resource server (its resource is then invalid_target)',
  tags: ['admin'],
  security: ['adminToken', 'bearerToken'],
  responses: { 204: { description: 'Deleted' }, 404: { description: 'Not found' } },
})
