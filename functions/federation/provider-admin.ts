import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { FOREIGN_KEY_VIOLATION, sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import {
  findIdentityProvider,
  type IdentityProviderRow,
  insertIdentityProvider,
  listIdentityProviders,
  type ProviderScope,
  updateIdentityProvider,
} from '../../db/queries/identity-providers'
import { IDENTITY_PROVIDER_KINDS } from '../../db/schema/federation'
import { isUuid } from '../../db/uuid'
import { type AuditEvent, auditRow } from '../audit/record'
import type { AppEnv } from '../env'
import { invalidField, ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { checkOutboundUrl } from '../outbound/public-fetch'
import {
  NO_STORE,
  type ObjectManager,
  platformManager,
  TENANT_SECURITY,
  tenantManager,
} from '../tenants/access'
import { jsonBody, queryParams } from '../validation/json-body'
import { PROVIDER_ID } from './config'
import { clientSecretContext, configProvider } from './providers'
import { sealText } from './sealed-text'

const Text = (max: number) =>
  v.pipe(
    v.string(),
    v.trim(),
    v.minLength(1, 'must not be empty'),
    v.maxLength(max, `must be at most ${max} characters`),
  )
const Url = v.pipe(v.string(), v.trim(), v.maxLength(2000, 'must be at most 2000 characters'))
const Scope = v.pipe(
  Text(500),
  v.regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, 'must be space-separated scope tokens'),
)

const CreateBody = v.strictObject({
  slug: v.pipe(
    v.string(),
    v.regex(
      PROVIDER_ID,
      'must be 1-32 lower-case letters, digits or dashes, starting with a letter or digit',
    ),
  ),
  kind: v.picklist(IDENTITY_PROVIDER_KINDS, `must be one of ${IDENTITY_PROVIDER_KINDS.join(', ')}`),
  name: Text(100),
  /** kind oidc: the issuer (discovery at `{issuer}/.well-known/openid-configuration`). */
  issuer: v.optional(Url),
  /** kind github: GitHub's web and API roots (GitHub Enterprise); github.com's by default. */
  web_url: v.optional(Url),
  api_url: v.optional(Url),
  client_id: Text(500),
  client_secret: Text(1000),
  scope: v.optional(Scope),
  enabled: v.optional(v.boolean(), true),
  /** Platform admins only: the tenant that owns the provider (none: the platform's). */
  tenant_id: v.optional(v.nullable(v.string())),
})

const UpdateBody = v.pipe(
  v.strictObject({
    name: v.optional(Text(100)),
    client_id: v.optional(Text(500)),
    client_secret: v.optional(Text(1000)),
    scope: v.optional(Scope),
    enabled: v.optional(v.boolean()),
  }),
  v.check((body) => Object.keys(body).length > 0, 'must change at least one field'),
)

const ListQuery = v.object({ tenant_id: v.optional(v.string()) })

const ProviderJson = v.object({
  id: v.string(),
  slug: v.string(),
  kind: v.picklist(IDENTITY_PROVIDER_KINDS),
  name: v.string(),
  tenant_id: v.nullable(v.string()),
  issuer: v.nullable(v.string()),
  web_url: v.nullable(v.string()),
  api_url: v.nullable(v.string()),
  client_id: v.string(),
  scope: v.nullable(v.string()),
  enabled: v.boolean(),
  /** Where users start signing in with it (a link for the tenant's own pages). */
  login_url: v.string(),
  /** What to register at the provider as the redirect (callback) URI. */
  redirect_uri: v.string(),
  created_at: v.string(),
  updated_at: v.string(),
})

/** A provider as the API shows it: never its client secret, sealed or not. */
function toJson(c: Context<AppEnv>, row: IdentityProviderRow): v.InferOutput<typeof ProviderJson> {
  const issuer = c.var.config.issuer
  return {
    id: row.id,
    slug: row.slug,
    kind: row.kind,
    name: row.name,
    tenant_id: row.tenantId,
    issuer: row.issuer,
    web_url: row.webUrl,
    api_url: row.apiUrl,
    client_id: row.clientId,
    scope: row.scope,
    enabled: row.enabled,
    login_url: `${issuer}/federated/${row.slug}/start`,
    redirect_uri: `${issuer}/federated/${row.slug}/callback`,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  }
}

/** An upstream URL a provider row may name: https and public (loopback only with OUTBOUND_ALLOW_LOOPBACK). */
function upstreamUrl(c: Context<AppEnv>, field: string, raw: string): string {
  const refusal = checkOutboundUrl(raw, c.var.config.outboundAllowLoopback)
  if (refusal !== null) {
    throw invalidField(field, `must be a public https URL (${refusal.detail})`)
  }
  return raw.replace(/\/+$/, '')
}

const notFound = () => new ProblemError('not_found', { detail: 'No such identity provider' })

function event(
  caller: ObjectManager,
  type: AuditEvent['type'],
  row: { id: string; slug: string; tenantId: string | null },
  metadata: Record<string, unknown> = {},
) {
  return {
    type,
    actor: caller.actor,
    userId: caller.userId,
    tenantId: row.tenantId,
    metadata: { provider_id: row.id, slug: row.slug, ...metadata },
  } satisfies AuditEvent
}

type Handlers = (callerOf: (c: Context<AppEnv>) => ObjectManager | Promise<ObjectManager>) => Hono<AppEnv>

/**
 * Create, list, get, update and disable identity providers. The same handlers serve platform
 * admins (`/admin/identity-providers`, every provider) and a tenant's owners and admins
 * (`/tenants/{id}/identity-providers`, that tenant's); every query is scoped by the caller.
 */
const providerRoutes: Handlers = (callerOf) =>
  new Hono<AppEnv>()
    .post('/', jsonBody(CreateBody), async (c) => {
      const caller = await callerOf(c)
      const body = c.req.valid('json')
      const config = c.var.config
      let tenantId: string | null
      if (caller.scope.kind === 'tenant') {
        if (body.tenant_id !== undefined && body.tenant_id !== caller.scope.tenantId) {
          throw invalidField('tenant_id', 'a tenant creates providers only for itself')
        }
        tenantId = caller.scope.tenantId
      } else {
        tenantId = body.tenant_id ?? null
        if (tenantId !== null && !isUuid(tenantId)) {
          throw invalidField('tenant_id', 'must be a tenant id')
        }
      }
      if (configProvider(config, body.slug) !== undefined) {
        throw new ProblemError('conflict', {
          detail: `The deployment already configures a provider ${body.slug}`,
        })
      }
      let urls: { issuer: string | null; webUrl: string | null; apiUrl: string | null }
      if (body.kind === 'oidc') {
        if (body.issuer === undefined) {
          throw invalidField('issuer', 'is required for an OpenID provider')
        }
        if (body.web_url !== undefined || body.api_url !== undefined) {
          throw invalidField('web_url', 'is only for GitHub providers')
        }
        urls = { issuer: upstreamUrl(c, 'issuer', body.issuer), webUrl: null, apiUrl: null }
      } else {
        if (body.issuer !== undefined || body.scope !== undefined) {
          throw invalidField(body.issuer === undefined ? 'scope' : 'issuer', 'is only for OpenID providers')
        }
        urls = {
          issuer: null,
          webUrl: upstreamUrl(c, 'web_url', body.web_url ?? 'https://github.com'),
          apiUrl: upstreamUrl(c, 'api_url', body.api_url ?? 'https://api.github.com'),
        }
      }
      if (body.kind === 'oidc' && body.scope !== undefined && !body.scope.split(' ').includes('openid')) {
        throw invalidField('scope', 'must include openid')
      }
      const id = crypto.randomUUID()
      const now = new Date()
      const row = {
        id,
        tenantId,
        slug: body.slug,
        kind: body.kind,
        name: body.name,
        ...urls,
        clientId: body.client_id,
        clientSecretSealed: await sealText(config, body.client_secret, clientSecretContext(id)),
        scope: body.kind === 'oidc' ? (body.scope ?? 'openid email profile') : null,
        enabled: body.enabled,
        createdAt: now,
        updatedAt: now,
      }
      try {
        const created = await insertIdentityProvider(
          c.var.db.http,
          row,
          auditRow(event(caller, 'identity_provider_created', row, { kind: row.kind }), clientIp(c)),
        )
        return c.json(toJson(c, created), 201, NO_STORE)
      } catch (error) {
        if (sqlState(error) === UNIQUE_VIOLATION) {
          throw new ProblemError('conflict', { detail: `A provider with slug ${body.slug} already exists` })
        }
        if (sqlState(error) === FOREIGN_KEY_VIOLATION) {
          throw invalidField('tenant_id', 'no such tenant')
        }
        throw error
      }
    })
    .get('/', queryParams(ListQuery), async (c) => {
      const caller = await callerOf(c)
      const filter = c.req.valid('query').tenant_id
      let scope: ProviderScope = caller.scope
      if (filter !== undefined && scope.kind === 'platform') {
        if (filter !== 'none' && !isUuid(filter)) {
          throw invalidField('tenant_id', 'must be a tenant id or none')
        }
        scope = { kind: 'platform', tenantId: filter === 'none' ? null : filter }
      }
      const rows = await listIdentityProviders(c.var.db.http, scope)
      return c.json({ data: rows.map((row) => toJson(c, row)) }, 200, NO_STORE)
    })
    .get('/:providerId', async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('providerId')
      const row = isUuid(id) ? await findIdentityProvider(c.var.db.http, caller.scope, id) : undefined
      if (row === undefined) {
        throw notFound()
      }
      return c.json(toJson(c, row), 200, NO_STORE)
    })
    .patch('/:providerId', jsonBody(UpdateBody), async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('providerId')
      const body = c.req.valid('json')
      if (!isUuid(id)) {
        throw notFound()
      }
      const db = c.var.db.http
      const current = await findIdentityProvider(db, caller.scope, id)
      if (current === undefined) {
        throw notFound()
      }
      if (body.scope !== undefined && current.kind !== 'oidc') {
        throw invalidField('scope', 'is only for OpenID providers')
      }
      if (body.scope !== undefined && !body.scope.split(' ').includes('openid')) {
        throw invalidField('scope', 'must include openid')
      }
      const changed = Object.keys(body)
      const updated = await updateIdentityProvider(
        db,
        caller.scope,
        id,
        {
          ...(body.name === undefined ? {} : { name: body.name }),
          ...(body.client_id === undefined ? {} : { clientId: body.client_id }),
          ...(body.client_secret === undefined
            ? {}
            : {
                clientSecretSealed: await sealText(c.var.config, body.client_secret, clientSecretContext(id)),
              }),
          ...(body.scope === undefined ? {} : { scope: body.scope }),
          ...(body.enabled === undefined ? {} : { enabled: body.enabled }),
          updatedAt: new Date(),
        },
        auditRow(
          event(
            caller,
            body.enabled === false ? 'identity_provider_disabled' : 'identity_provider_updated',
            current,
            {
              changed,
            },
          ),
          clientIp(c),
        ),
      )
      if (updated === undefined) {
        throw notFound()
      }
      return c.json(toJson(c, updated), 200, NO_STORE)
    })
    .delete('/:providerId', async (c) => {
      const caller = await callerOf(c)
      const id = c.req.param('providerId')
      const db = c.var.db.http
      const current = isUuid(id) ? await findIdentityProvider(db, caller.scope, id) : undefined
      if (current === undefined) {
        throw notFound()
      }
      const updated = await updateIdentityProvider(
        db,
        caller.scope,
        id,
        { enabled: false, updatedAt: new Date() },
        auditRow(event(caller, 'identity_provider_disabled', current), clientIp(c)),
      )
      if (updated === undefined) {
        throw notFound()
      }
      return c.json(toJson(c, updated), 200, NO_STORE)
    })

/** `/admin/identity-providers`: platform admins manage every database provider. */
export const identityProvidersAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .route('/', providerRoutes(platformManager))

/** `/tenants/{id}/identity-providers`: a tenant's owners and admins (and platform admins) manage its providers. */
export const tenantIdentityProviders = providerRoutes(tenantManager)

for (const [base, security, tags] of [
  ['/admin/identity-providers', ['adminToken', 'bearerToken'], ['admin']],
  ['/tenants/{id}/identity-providers', [...TENANT_SECURITY], ['tenants']],
] as const) {
  const whose = base.startsWith('/admin') ? 'any (platform or tenant)' : "the tenant's"
  const common = { tags: [...tags], security: [...security] }
  documentRoute({
    method: 'post',
    path: base,
    summary: `Add an identity provider (OpenID by issuer, or GitHub/GitHub Enterprise); the client secret is sealed under MASTER_KEY and never returned`,
    ...common,
    requestBody: { schema: CreateBody },
    responses: {
      201: { description: 'Created (audited as identity_provider_created)', schema: ProviderJson },
      400: {
        description:
          'Invalid body: a non-https or non-public URL, issuer missing for oidc, scope without openid',
      },
      409: {
        description:
          'The slug is taken (by a stored provider, or by the deployment’s GITHUB_*/OIDC_PROVIDERS)',
      },
    },
  })
  documentRoute({
    method: 'get',
    path: base,
    summary: `List ${whose} identity providers (never a client secret)`,
    ...common,
    ...(base.startsWith('/admin') ? { query: ListQuery } : {}),
    responses: { 200: { description: 'Oldest first', schema: v.object({ data: v.array(ProviderJson) }) } },
  })
  documentRoute({
    method: 'get',
    path: `${base}/{providerId}`,
    summary: 'One identity provider (never its client secret)',
    ...common,
    responses: {
      200: { description: 'The provider', schema: ProviderJson },
      404: { description: 'Not found' },
    },
  })
  documentRoute({
    method: 'patch',
    path: `${base}/{providerId}`,
    summary: 'Change name, client_id, client_secret, scope or enabled (slug, kind and URLs are fixed)',
    ...common,
    requestBody: { schema: UpdateBody },
    responses: {
      200: { description: 'Updated (audited)', schema: ProviderJson },
      400: { description: 'Invalid body' },
      404: { description: 'Not found' },
    },
  })
  documentRoute({
    method: 'delete',
    path: `${base}/{providerId}`,
    summary: 'Disable an identity provider: it leaves /login and signs no one in; its slug is never reused',
    ...common,
    responses: {
      200: { description: 'Disabled (audited as identity_provider_disabled)', schema: ProviderJson },
      404: { description: 'Not found' },
    },
  })
}
