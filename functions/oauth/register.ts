import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import {
  deleteClientStatement,
  findClientForManagement,
  updateClientStatement,
} from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { resourceScopeNames } from '../../db/queries/resource-servers'
import { claimAttempts, retryAfterSeconds } from '../../db/queries/throttle'
import { SECRETLESS_AUTH_METHODS } from '../../db/schema/constants'
import { auditStatement } from '../audit/record'
import { equalsConfiguredSecret, secretsEqual } from '../crypto/compare'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { bearerToken } from '../middleware/authenticate'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { clientInformation, metadataColumns, parseClientMetadata } from './client-metadata'
import { createClient } from './clients'
import { repeatedJsonKey } from './form'
import { NO_STORE } from './token'

async function readJson(c: Context<AppEnv>): Promise<unknown> {
  const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') {
    throw new OAuthError('invalid_client_metadata', { description: 'Send the metadata as application/json' })
  }
  const text = await c.req.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new OAuthError('invalid_client_metadata', { description: 'The body is not valid JSON' })
  }
  const repeated = repeatedJsonKey(text)
  if (repeated !== undefined) {
    throw new OAuthError('invalid_request', { description: `${repeated} is repeated` })
  }
  return body
}

/**
 * Scopes beyond SCOPES are looked up among the resource servers' (issue 11): one more round trip,
 * only for a registration that names such a scope.
 */
async function metadataOrThrow(input: unknown, c: Context<AppEnv>) {
  const scope =
    typeof input === 'object' && input !== null ? (input as Record<string, unknown>).scope : undefined
  const foreign =
    typeof scope === 'string' &&
    scope.split(' ').some((s) => s !== '' && !c.var.config.scopesSupported.includes(s))
  const resourceScopes = foreign ? await resourceScopeNames(c.var.db.http) : undefined
  const result = parseClientMetadata(input, c.var.config, { privileged: false, resourceScopes })
  if (!result.ok) {
    throw new OAuthError(result.error, { description: `${result.field}: ${result.message}` })
  }
  return result.value
}

/**
 * Issue 9 #11: anonymous registrations per IP in a fixed window, claimed atomically before any
 * work (one upsert returns the new count), so a burst of any size creates at most the limit.
 * Without a known address every anonymous registration shares one bucket (fails closed).
 */
async function claimAnonymousRegistration(c: Context<AppEnv>, now: Date): Promise<void> {
  const { registrationMaxPerIp, registrationWindowSeconds } = c.var.config
  const subject = `client-registration-ip:${clientIp(c) ?? 'unknown'}`
  const claims = await claimAttempts(c.var.db.http, [subject], now, registrationWindowSeconds)
  if (claims.some((claim) => claim.count > registrationMaxPerIp)) {
    throw new OAuthError('too_many_requests', {
      description: 'Too many client registrations from this address; try again later',
      log: 'registration_rate_limited',
      retryAfterSeconds: retryAfterSeconds(claims, now),
    })
  }
}

/** REGISTRATION_ANONYMOUS_GRANT_TYPES: grants a client nobody vouched for may ask for. */
function refuseUnlistedGrants(asked: readonly string[], allowed: readonly string[]): void {
  const refused = asked.find((g) => !allowed.includes(g))
  if (refused !== undefined) {
    throw new OAuthError('invalid_client_metadata', {
      description: `grant_types: ${refused} needs an initial access token`,
    })
  }
}

/** RFC 7592 §2: the client named in the path, authorised by its registration access token. */
async function managedClient(c: Context<AppEnv>): Promise<OAuthClientRow> {
  const token = bearerToken(c.req.header('authorization'))
  const clientId = c.req.param('client_id') ?? ''
  const client =
    token === undefined || clientId.length > 200
      ? undefined
      : await findClientForManagement(c.var.db.http, clientId, await sha256Hex(token))
  if (client === undefined) {
    // RFC 7592 §2: an unknown client and a wrong token look the same.
    throw new OAuthError('invalid_token', {
      description: 'The registration access token is not valid',
      bearer: true,
    })
  }
  return client
}

/**
 * RFC 7591 registration and RFC 7592 management. Open by default for non-privileged scopes;
 * with REGISTRATION_POLICY=token the initial access token is the ADMIN_TOKEN (Bearer). Anonymous
 * registrations are rate-limited per IP and limited to REGISTRATION_ANONYMOUS_GRANT_TYPES.
 */
export const register = new Hono<AppEnv>()
  .post('/', async (c) => {
    const now = new Date()
    const initial = bearerToken(c.req.header('authorization'))
    const vouched = initial !== undefined && (await equalsConfiguredSecret(initial, c.var.config.adminToken))
    if (c.var.config.registrationPolicy === 'token' && !vouched) {
      throw new OAuthError('invalid_token', {
        description: 'An initial access token is required',
        bearer: true,
      })
    }
    if (!vouched) {
      await claimAnonymousRegistration(c, now)
    }
    const metadata = await metadataOrThrow(await readJson(c), c)
    if (!vouched) {
      refuseUnlistedGrants(metadata.grantTypes, c.var.config.anonymousRegistrationGrantTypes)
    }
    const created = await createClient(c.var.db.http, c.var.config, metadata, {
      registrationAccessToken: true,
      now,
      ip: clientIp(c),
      audit: (client) => ({
        type: 'client_registered',
        actor: `client:${client.clientId}`,
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: {
          via: 'dynamic_registration',
          anonymous: !vouched,
          scope: metadata.scope,
          grant_types: metadata.grantTypes,
        },
      }),
    })
    return c.json(created.body, 201, NO_STORE)
  })
  .get('/:client_id', async (c) => {
    const client = await managedClient(c)
    return c.json(clientInformation(client, c.var.config), 200, NO_STORE)
  })
  .put('/:client_id', async (c) => {
    const client = await managedClient(c)
    const body = await readJson(c)
    const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
    // RFC 7592 §2.2: client_id must match; a client_secret, if sent, must be the current one.
    if (fields.client_id !== client.clientId) {
      throw new OAuthError('invalid_request', {
        description: 'client_id must match the client being updated',
      })
    }
    if (fields.client_secret !== undefined) {
      const presented = typeof fields.client_secret === 'string' ? await sha256Hex(fields.client_secret) : ''
      if (client.clientSecretHash === null || !(await secretsEqual(presented, client.clientSecretHash))) {
        throw new OAuthError('invalid_request', { description: 'client_secret does not match' })
      }
    }
    const metadata = await metadataOrThrow(fields, c)
    // An update may keep the grants the client holds, but adds only what anonymous registration may.
    refuseUnlistedGrants(metadata.grantTypes, [
      ...c.var.config.anonymousRegistrationGrantTypes,
      ...client.grantTypes,
    ])
    if (
      metadata.tokenEndpointAuthMethod !== client.tokenEndpointAuthMethod &&
      [metadata.tokenEndpointAuthMethod, client.tokenEndpointAuthMethod].some((m) =>
        (SECRETLESS_AUTH_METHODS as readonly string[]).includes(m),
      )
    ) {
      throw new OAuthError('invalid_client_metadata', {
        description:
          'token_endpoint_auth_method cannot switch between public, private_key_jwt and secret methods',
      })
    }
    // The change and its audit row commit together (one batch).
    const [rows] = await c.var.db.http.batch([
      updateClientStatement(c.var.db.http, client.id, metadataColumns(metadata)),
      auditStatement(c.var.db.http, clientIp(c), {
        type: 'client_updated',
        actor: `client:${client.clientId}`,
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: { via: 'rfc7592', grant_types: metadata.grantTypes, scope: metadata.scope },
      }),
    ])
    const updated = rows[0]
    if (updated === undefined) {
      throw new OAuthError('invalid_token', {
        description: 'The registration access token is not valid',
        bearer: true,
      })
    }
    return c.json(clientInformation(updated, c.var.config), 200, NO_STORE)
  })
  .delete('/:client_id', async (c) => {
    const client = await managedClient(c)
    await c.var.db.http.batch([
      deleteClientStatement(c.var.db.http, client.id),
      auditStatement(c.var.db.http, clientIp(c), {
        type: 'client_deleted',
        actor: `client:${client.clientId}`,
        tenantId: client.tenantId,
        clientId: client.clientId,
        metadata: { via: 'rfc7592' },
      }),
    ])
    return c.body(null, 204)
  })

const METADATA = v.object({
  redirect_uris: v.optional(v.array(v.string())),
  token_endpoint_auth_method: v.optional(
    v.picklist(['client_secret_basic', 'client_secret_post', 'none', 'private_key_jwt']),
  ),
  jwks: v.optional(v.object({ keys: v.array(v.record(v.string(), v.unknown())) })),
  jwks_uri: v.optional(v.string()),
  grant_types: v.optional(v.array(v.string())),
  response_types: v.optional(v.array(v.string())),
  application_type: v.optional(v.picklist(['web', 'native'])),
  client_name: v.optional(v.string()),
  scope: v.optional(v.string()),
})
const INFO = v.object({ client_id: v.string(), client_secret: v.optional(v.string()) })
documentRoute({
  method: 'post',
  path: '/oauth/register',
  summary: 'Dynamic client registration (RFC 7591)',
  tags: ['oauth'],
  requestBody: { schema: METADATA },
  responses: { 201: { description: 'Client registered', schema: INFO } },
})
for (const method of ['get', 'put', 'delete'] as const) {
  documentRoute({
    method,
    path: '/oauth/register/{client_id}',
    summary: `Client configuration (RFC 7592): ${method}`,
    tags: ['oauth'],
    security: ['bearerToken'],
    ...(method === 'put' ? { requestBody: { schema: METADATA } } : {}),
    responses:
      method === 'delete'
        ? { 204: { description: 'Deleted' } }
        : { 200: { description: 'Client', schema: INFO } },
  })
}
