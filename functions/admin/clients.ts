import { Hono } from 'hono'
import * as v from 'valibot'
import {
  clientDisabledAuditStatement,
  disableClientStatement,
  listClients,
} from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { resourceScopeNames } from '../../db/queries/resource-servers'
import { TOKEN_ENDPOINT_AUTH_METHODS } from '../../db/schema'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { clientInformation, GRANT_TYPES, parseClientMetadata } from '../oauth/client-metadata'
import { clientUsageResponse, UsageQuery } from '../oauth/client-usage'
import { createClient } from '../oauth/clients'
import { documentRoute } from '../openapi/registry'
import { queryParams } from '../validation/json-body'

function adminView(client: OAuthClientRow, c: { var: AppEnv['Variables'] }): Record<string, unknown> {
  return {
    ...clientInformation(client, c.var.config),
    first_party: client.firstParty,
    disabled_at: client.disabledAt?.toISOString() ?? null,
    created_at: client.createdAt.toISOString(),
  }
}

const LIST_QUERY = v.object({
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d+$/, 'must be an integer'),
      v.transform(Number),
      v.minValue(1),
      v.maxValue(100),
    ),
    '50',
  ),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(200))),
})

function decodeCursor(cursor: string | undefined): { createdAt: Date; id: string } | undefined {
  if (cursor === undefined) {
    return undefined
  }
  const [ms, id] = cursor.split('_')
  if (ms === undefined || id === undefined || !/^\d+$/.test(ms) || !/^[0-9a-f-]{36}$/.test(id)) {
    throw new ProblemError('validation_failed', {
      detail: 'cursor: is not valid',
      errors: [{ field: 'cursor', message: 'is not valid' }],
    })
  }
  return { createdAt: new Date(Number(ms)), id }
}

/** /admin/clients: first-party and privileged clients, listing and disabling. */
export const clientsAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .post('/', async (c) => {
    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      throw new ProblemError('malformed_json', { detail: 'The body could not be parsed' })
    }
    // Resource servers' scopes are registrable too (issue 11): one more round trip on this admin path.
    const resourceScopes = await resourceScopeNames(c.var.db.http)
    const result = parseClientMetadata(body, c.var.config, { privileged: true, resourceScopes })
    if (!result.ok) {
      throw new ProblemError('validation_failed', {
        detail: `${result.field}: ${result.message}`,
        errors: [{ field: result.field, message: result.message }],
      })
    }
    const created = await createClient(c.var.db.http, c.var.config, result.value, {
      registrationAccessToken: false,
      now: new Date(),
      ip: clientIp(c),
      audit: (client) => ({
        type: 'client_registered',
        actor: c.var.principal.kind === 'user' ? `user:${c.var.principal.userId}` : 'admin',
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: { via: 'admin', first_party: result.value.firstParty, scope: result.value.scope },
      }),
    })
    return c.json({ ...created.body, first_party: created.client.firstParty }, 201)
  })
  .get('/', queryParams(LIST_QUERY), async (c) => {
    const query = c.req.valid('query')
    const limit = Number(query.limit)
    const rows = await listClients(c.var.db.http, limit + 1, decodeCursor(query.cursor))
    const page = rows.slice(0, limit)
    const last = page.at(-1)
    return c.json({
      data: page.map((row) => adminView(row, c)),
      next_cursor:
        rows.length > limit && last !== undefined ? `${last.createdAt.getTime()}_${last.id}` : null,
    })
  })
  .post('/:client_id/disable', async (c) => {
    const clientId = c.req.param('client_id')
    const actor = c.var.principal.kind === 'user' ? `user:${c.var.principal.userId}` : 'admin'
    // The change and its audit row commit together (one batch).
    const [rows] = await c.var.db.http.batch([
      disableClientStatement(c.var.db.http, clientId, new Date()),
      clientDisabledAuditStatement(c.var.db.http, clientId, actor, clientIp(c)),
    ])
    const client = rows[0]
    if (client === undefined) {
      throw new ProblemError('not_found', { detail: 'No such client' })
    }
    return c.json({ client: adminView(client, c) })
  })
  .get('/:client_id/usage', queryParams(UsageQuery), (c) =>
    clientUsageResponse(c, c.req.param('client_id'), undefined, c.req.valid('query')),
  )

const CLIENT = v.object({
  client_id: v.string(),
  client_secret: v.optional(v.string()),
  first_party: v.boolean(),
})
documentRoute({
  method: 'post',
  path: '/admin/clients',
  summary: 'Create a client (may be first-party or hold privileged scopes)',
  tags: ['admin'],
  security: ['adminToken'],
  requestBody: {
    // RFC 7591 §2 metadata, as parseClientMetadata reads it (privileged: any supported scope).
    schema: v.object({
      client_name: v.optional(v.string()),
      redirect_uris: v.optional(v.array(v.string())),
      grant_types: v.optional(
        v.pipe(
          v.array(v.picklist(GRANT_TYPES)),
          v.description(
            'Default ["authorization_code"]. A resource server that calls POST /api-keys/verify or ' +
              '/oauth/introspect uses ["client_credentials"] with scope "apikeys:verify" (README, "Protect your API").',
          ),
        ),
      ),
      response_types: v.optional(v.array(v.picklist(['code']))),
      token_endpoint_auth_method: v.optional(v.picklist(TOKEN_ENDPOINT_AUTH_METHODS)),
      scope: v.optional(v.pipe(v.string(), v.description('Space-separated scopes the client may request'))),
      first_party: v.optional(v.boolean()),
    }),
  },
  responses: {
    201: {
      description: 'Client (client_secret is shown in this answer only)',
      schema: v.object({
        ...CLIENT.entries,
        grant_types: v.array(v.string()),
        token_endpoint_auth_method: v.string(),
        scope: v.optional(v.string()),
      }),
    },
  },
})
documentRoute({
  method: 'get',
  path: '/admin/clients',
  summary: 'List clients',
  tags: ['admin'],
  security: ['adminToken'],
  query: LIST_QUERY,
  responses: {
    200: {
      description: 'Clients',
      schema: v.object({ data: v.array(CLIENT), next_cursor: v.nullable(v.string()) }),
    },
  },
})
documentRoute({
  method: 'post',
  path: '/admin/clients/{client_id}/disable',
  summary: 'Disable a client',
  tags: ['admin'],
  security: ['adminToken'],
  responses: { 200: { description: 'Disabled', schema: v.object({ client: CLIENT }) } },
})
