import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { aggregateKeyUsage, type UsageGroup } from '../../db/queries/api-key-usage'
import {
  type ApiKeyRecord,
  findApiKey,
  insertApiKey,
  insertApiKeyForUser,
  type KeyAudit,
  listApiKeys,
  type NewApiKey,
  revokeApiKey,
  rotateApiKey,
} from '../../db/queries/apikeys'
import { API_KEY_TIERS } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { PageLimit } from '../auth/cursor'
import { hasScope, isAdministrator, type Principal } from '../auth/principal'
import { fromBase64Url, toBase64Url, utf8 } from '../crypto/encoding'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { invalidField, ProblemError } from '../errors/problem'
import { authenticate } from '../middleware/authenticate'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { planKeyTiers } from '../tenants/plans'
import { Timestamp, UsageQuery, usageWindow } from '../usage/window'
import { jsonBody, queryParams } from '../validation/json-body'
import { isValidText } from '../validation/text'
import { generateApiKey } from './key-format'
import { authenticateVerifier } from './verifier-auth'
import { VERIFY_CODES, type VerifyResult, verifyApiKey } from './verify'

const MAX_NAME_CHARS = 200
const MAX_SCOPES = 50
const MAX_SCOPE_CHARS = 200
const MAX_METADATA_BYTES = 8 * 1024
const MAX_RATE_LIMIT = 1_000_000_000
const MAX_RATE_WINDOW_SECONDS = 86_400
const DEFAULT_RATE_WINDOW_SECONDS = 60
const MAX_GRACE_PERIOD_SECONDS = 30 * 86_400
const MAX_ENDPOINT_CHARS = 200
const MAX_PRESENTED_KEY_CHARS = 1024
const NO_STORE = { 'cache-control': 'no-store' } as const

// RFC 6749 §3.3 scope-token: printable ASCII except space, double quote and backslash.
const ScopeToken = v.pipe(
  v.string(),
  v.regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token (printable ASCII, no spaces)'),
  v.maxLength(MAX_SCOPE_CHARS, `must be at most ${MAX_SCOPE_CHARS} characters`),
)

const Metadata = v.pipe(
  v.custom<Record<string, unknown>>(
    (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
    'must be a JSON object',
  ),
  v.check(
    (value) => new TextEncoder().encode(JSON.stringify(value)).length <= MAX_METADATA_BYTES,
    `must be at most ${MAX_METADATA_BYTES} bytes as JSON`,
  ),
)

const RateLimit = v.object({
  limit: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_RATE_LIMIT)),
  window_seconds: v.optional(
    v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_RATE_WINDOW_SECONDS)),
    DEFAULT_RATE_WINDOW_SECONDS,
  ),
})

const CreateBody = v.object({
  name: v.pipe(
    v.string(),
    v.minLength(1, 'must not be empty'),
    v.maxLength(MAX_NAME_CHARS, `must be at most ${MAX_NAME_CHARS} characters`),
  ),
  tier: v.optional(v.picklist(API_KEY_TIERS, `must be one of ${API_KEY_TIERS.join(', ')}`)),
  scopes: v.optional(
    v.pipe(v.array(ScopeToken), v.maxLength(MAX_SCOPES, `at most ${MAX_SCOPES} scopes`)),
    [],
  ),
  expires_at: v.optional(v.nullable(Timestamp)),
  metadata: v.optional(Metadata, {}),
  rate_limit: v.optional(v.nullable(RateLimit)),
  owner_id: v.optional(v.pipe(v.string(), v.uuid('must be a user id'))),
})

const RotateBody = v.object({
  grace_period_seconds: v.optional(
    v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_GRACE_PERIOD_SECONDS)),
    0,
  ),
})

const VerifyBody = v.object({
  key: v.pipe(
    v.string(),
    v.maxLength(MAX_PRESENTED_KEY_CHARS, `must be at most ${MAX_PRESENTED_KEY_CHARS} characters`),
  ),
  endpoint: v.optional(
    v.nullable(
      v.pipe(
        v.string(),
        v.minLength(1, 'must not be empty'),
        v.maxLength(MAX_ENDPOINT_CHARS, `must be at most ${MAX_ENDPOINT_CHARS} characters`),
        // Checked here too (not only at the edge): the verify statement charges and records in
        // one go, and text it cannot store would fail the whole call.
        v.check(isValidText, 'must be valid text (no NUL or other control character, no lone surrogate)'),
      ),
    ),
  ),
})

const ListQuery = v.object({
  limit: PageLimit,
  cursor: v.optional(v.pipe(v.string(), v.maxLength(200, 'is not a cursor this API issued'))),
  include_revoked: v.optional(v.picklist(['true', 'false'], 'must be true or false'), 'false'),
  owner_id: v.optional(v.pipe(v.string(), v.uuid('must be a user id'))),
})

const ApiKeyResponse = v.object({
  id: v.string(),
  prefix: v.string(),
  last4: v.string(),
  name: v.string(),
  tier: v.picklist(API_KEY_TIERS),
  scopes: v.array(v.string()),
  metadata: v.record(v.string(), v.unknown()),
  expires_at: v.nullable(v.string()),
  created_at: v.string(),
  owner_id: v.string(),
  tenant_id: v.string(),
  rate_limit: v.nullable(v.object({ limit: v.number(), window_seconds: v.number() })),
  status: v.picklist(['active', 'grace', 'expired', 'revoked']),
  last_used_at: v.nullable(v.string()),
  revoked_at: v.nullable(v.string()),
  rotated_from: v.nullable(v.string()),
  grace_until: v.nullable(v.string()),
})

const CreatedApiKeyResponse = v.object({ ...ApiKeyResponse.entries, key: v.string() })

const LimitState = v.object({
  limit: v.nullable(v.number()),
  remaining: v.nullable(v.number()),
  reset_at: v.nullable(v.string()),
})

const VerifyResponse = v.object({
  valid: v.boolean(),
  code: v.picklist(VERIFY_CODES),
  key_id: v.nullable(v.string()),
  owner_id: v.nullable(v.string()),
  tenant_id: v.nullable(v.string()),
  tier: v.nullable(v.picklist(API_KEY_TIERS)),
  scopes: v.nullable(v.array(v.string())),
  metadata: v.nullable(v.record(v.string(), v.unknown())),
  quota: v.nullable(LimitState),
  /** The tenant-wide monthly quota all the tenant's keys share (issue 10); null when it has none. */
  tenant_quota: v.nullable(LimitState),
  ratelimit: v.nullable(LimitState),
})

const Counts = { success: v.number(), failure: v.number() }
const EndpointCounts = v.object({ endpoint: v.nullable(v.string()), ...Counts })
const UsageResponse = v.object({
  key_id: v.string(),
  from: v.string(),
  to: v.string(),
  granularity: v.picklist(['hour', 'day']),
  totals: v.object(Counts),
  endpoints: v.array(EndpointCounts),
  buckets: v.array(v.object({ start: v.string(), ...Counts, endpoints: v.array(EndpointCounts) })),
})

const KEY_ID_PARAM = ':id{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}}'
const MANAGE_SECURITY = ['sessionCookie', 'bearerToken', 'adminToken'] as const

documentRoute({
  method: 'post',
  path: '/api-keys',
  summary: 'Create an API key (the key is in this answer only)',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  requestBody: { schema: CreateBody },
  responses: { 201: { description: 'The new key, with its secret', schema: CreatedApiKeyResponse } },
})
documentRoute({
  method: 'get',
  path: '/api-keys',
  summary: 'List your API keys (admins: every key, or one owner’s)',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  query: ListQuery,
  responses: {
    200: {
      description: 'A page of keys, newest first',
      schema: v.object({ data: v.array(ApiKeyResponse), next_cursor: v.nullable(v.string()) }),
    },
  },
})
documentRoute({
  method: 'post',
  path: '/api-keys/verify',
  summary: 'Verify an API key and count it against its quota and rate limit',
  tags: ['api-keys'],
  security: ['bearerToken', 'adminToken', 'serviceKey'],
  requestBody: { schema: VerifyBody },
  responses: { 200: { description: 'The verdict (also for invalid keys)', schema: VerifyResponse } },
})
documentRoute({
  method: 'get',
  path: '/api-keys/{id}',
  summary: 'Read one API key (never its secret)',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  responses: { 200: { description: 'The key', schema: ApiKeyResponse } },
})
documentRoute({
  method: 'delete',
  path: '/api-keys/{id}',
  summary: 'Revoke an API key (it then verifies as REVOKED)',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  responses: { 204: { description: 'Revoked' } },
})
documentRoute({
  method: 'post',
  path: '/api-keys/{id}/rotate',
  summary: 'Replace an API key; the old one keeps verifying for the grace period',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  requestBody: { schema: RotateBody },
  responses: { 201: { description: 'The new key, with its secret', schema: CreatedApiKeyResponse } },
})
documentRoute({
  method: 'get',
  path: '/api-keys/{id}/usage',
  summary: 'Usage of an API key by hour or day and by endpoint',
  tags: ['api-keys'],
  security: MANAGE_SECURITY,
  query: UsageQuery,
  responses: { 200: { description: 'Success and failure counts', schema: UsageResponse } },
})

const authenticateManager = authenticate({ accept: ['session', 'access_token', 'admin_token'] })

/** `/api-keys`: key management for owners (and admins), and the verify hot path. */
export const apiKeys = new Hono<AppEnv>()
  .post('/verify', authenticateVerifier(), jsonBody(VerifyBody), async (c) => {
    const now = new Date()
    const body = c.req.valid('json')
    const result = await verifyApiKey(
      c.var.db.http,
      {
        tierQuotas: c.var.config.tierQuotas,
        tenantQuotas: c.var.config.tenantMonthlyQuotas,
        recordDetail: c.var.config.usageDetailRetentionDays > 0,
        now,
        callerGuard: c.var.callerGuard,
        serviceKeyHash: c.var.serviceKeyHash,
        proof: c.var.callerProof,
        endpoint: body.endpoint ?? null,
        startedAtMs: now.getTime(),
      },
      body.key,
    )
    return c.json(toVerifyResponse(result), 200, NO_STORE)
  })
  .post('/', authenticateManager, requireKeyManager(), jsonBody(CreateBody), async (c) => {
    const body = c.req.valid('json')
    const principal = c.var.principal
    const admin = isAdministrator(principal)
    const config = c.var.config
    const now = new Date()
    const expiresAt = body.expires_at == null ? null : new Date(body.expires_at)
    if (expiresAt !== null && expiresAt.getTime() <= now.getTime()) {
      throw invalidField('expires_at', 'must be in the future')
    }
    const generated = generateApiKey(config.apiKeyEnv)
    const values: NewApiKey = {
      keyHash: await sha256Hex(generated.key),
      prefix: generated.prefix,
      last4: generated.last4,
      name: body.name,
      // Issue 10: the tenant's plan gives the tier; others may only ask for that one.
      tier: admin && body.tier !== undefined ? body.tier : planKeyTiers(config, body.tier),
      scopes: [...new Set(body.scopes)],
      metadata: body.metadata,
      rateLimit: body.rate_limit?.limit ?? null,
      rateLimitWindowSeconds: body.rate_limit?.window_seconds ?? DEFAULT_RATE_WINDOW_SECONDS,
      expiresAt,
      createdAt: now,
    }
    const self = principal.kind === 'user' ? principal : undefined
    let record: ApiKeyRecord | undefined
    if (self !== undefined && (body.owner_id === undefined || body.owner_id === self.userId)) {
      record = await insertApiKey(
        c.var.db.http,
        { userId: self.userId, tenantId: self.tenantId },
        values,
        keyAudit(c, 'api_key_created', {}),
      )
      if (record === undefined) {
        throw new ProblemError('forbidden', {
          detail: 'Only an administrator can set a tier other than the one your tenant’s plan gives',
        })
      }
    } else if (!admin) {
      throw new ProblemError('forbidden', { detail: 'You can only create keys for yourself' })
    } else if (body.owner_id === undefined) {
      throw invalidField('owner_id', 'is required when the admin token creates a key')
    } else {
      record = await insertApiKeyForUser(
        c.var.db.http,
        body.owner_id,
        values,
        keyAudit(c, 'api_key_created', {}),
      )
      if (record === undefined) {
        throw invalidField('owner_id', 'no such user')
      }
    }
    return c.json({ ...toApiKeyResponse(record, now), key: generated.key }, 201, NO_STORE)
  })
  .get('/', authenticateManager, requireKeyManager(), queryParams(ListQuery), async (c) => {
    const query = c.req.valid('query')
    const principal = c.var.principal
    const ownerUserId = isAdministrator(principal) ? query.owner_id : ownUserId(principal)
    if (!isAdministrator(principal) && query.owner_id !== undefined && query.owner_id !== ownerUserId) {
      throw new ProblemError('forbidden', { detail: 'You can only list your own keys' })
    }
    const now = new Date()
    const page = await listApiKeys(c.var.db.http, {
      ownerUserId,
      limit: query.limit,
      after: query.cursor === undefined ? undefined : decodeCursor(query.cursor),
      includeRevoked: query.include_revoked === 'true',
      now,
    })
    const last = page.rows.at(-1)
    return c.json(
      {
        data: page.rows.map((row) => toApiKeyResponse(row, now)),
        next_cursor:
          page.hasMore && last !== undefined
            ? encodeCursor({ createdAt: last.cursorCreatedAt, id: last.id })
            : null,
      },
      200,
      NO_STORE,
    )
  })
  .get(`/${KEY_ID_PARAM}`, authenticateManager, requireKeyManager(), async (c) => {
    const record = await findApiKey(c.var.db.http, c.req.param('id'), visibleOwner(c.var.principal))
    if (record === undefined) {
      throw keyNotFound()
    }
    return c.json(toApiKeyResponse(record, new Date()), 200, NO_STORE)
  })
  .delete(`/${KEY_ID_PARAM}`, authenticateManager, requireKeyManager(), async (c) => {
    const revoked = await revokeApiKey(
      c.var.db.http,
      c.req.param('id'),
      visibleOwner(c.var.principal),
      new Date(),
      keyAudit(c, 'api_key_revoked', {}),
    )
    if (revoked === undefined) {
      throw keyNotFound()
    }
    // DESIGN: every response has a content-type, the bodiless 204 included.
    return c.body(null, 204, { 'content-type': 'text/plain; charset=utf-8' })
  })
  .post(
    `/${KEY_ID_PARAM}/rotate`,
    authenticateManager,
    requireKeyManager(),
    jsonBody(RotateBody),
    async (c) => {
      const { grace_period_seconds: graceSeconds } = c.req.valid('json')
      const now = new Date()
      const generated = generateApiKey(c.var.config.apiKeyEnv)
      const outcome = await rotateApiKey(
        c.var.db.http,
        c.req.param('id'),
        visibleOwner(c.var.principal),
        { keyHash: await sha256Hex(generated.key), prefix: generated.prefix, last4: generated.last4 },
        now,
        new Date(now.getTime() + graceSeconds * 1000),
        keyAudit(c, 'api_key_rotated', {
          rotated_from: c.req.param('id'),
          grace_period_seconds: graceSeconds,
        }),
      )
      if (outcome.kind === 'not_found') {
        throw keyNotFound()
      }
      if (outcome.kind === 'not_rotatable') {
        const why = {
          revoked: 'it is revoked',
          expired: 'it has expired',
          already_rotated: 'it has already been rotated; rotate its replacement instead',
        }[outcome.reason]
        throw new ProblemError('conflict', { detail: `This key cannot be rotated: ${why}` })
      }
      return c.json({ ...toApiKeyResponse(outcome.created, now), key: generated.key }, 201, NO_STORE)
    },
  )
  .get(
    `/${KEY_ID_PARAM}/usage`,
    authenticateManager,
    requireKeyManager(),
    queryParams(UsageQuery),
    async (c) => {
      const { from, to, granularity, bucketMs, firstBucketMs } = usageWindow(c.req.valid('query'), new Date())
      const id = c.req.param('id')
      const groups = await aggregateKeyUsage(c.var.db.http, id, visibleOwner(c.var.principal), {
        from,
        to,
        granularity,
      })
      if (groups === undefined) {
        throw keyNotFound()
      }
      return c.json(
        {
          key_id: id,
          from: from.toISOString(),
          to: to.toISOString(),
          granularity,
          ...summarizeUsage(groups, firstBucketMs, to.getTime(), bucketMs),
        },
        200,
        NO_STORE,
      )
    },
  )

/** Key management needs `apikeys:write`; sessions hold it, access tokens must carry it. */
function requireKeyManager() {
  return async function requireKeyManager(c: Context<AppEnv>, next: () => Promise<void>): Promise<void> {
    const principal = c.var.principal
    if (!hasScope(principal, 'apikeys:write')) {
      throw new ProblemError('insufficient_scope', { detail: 'Managing keys needs scope apikeys:write' })
    }
    if (principal.kind === 'client' && !isAdministrator(principal)) {
      throw new ProblemError('forbidden', {
        detail: 'API keys belong to users; a client credential owns none',
      })
    }
    await next()
  }
}

function ownUserId(principal: Principal): string | undefined {
  return principal.kind === 'user' ? principal.userId : undefined
}

/** Whose keys the caller may see: their own, or anyone's for an administrator (undefined). */
function visibleOwner(principal: Principal): string | undefined {
  if (isAdministrator(principal)) {
    return undefined
  }
  const userId = ownUserId(principal)
  if (userId === undefined) {
    throw new ProblemError('forbidden', { detail: 'API keys belong to users' })
  }
  return userId
}

// Another user's key answers exactly like a key that does not exist.
function keyNotFound(): ProblemError {
  return new ProblemError('not_found', { detail: 'No API key with this id' })
}

function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case 'admin':
      return 'admin'
    case 'user':
      return `user:${principal.userId}`
    case 'client':
      return `client:${principal.clientId}`
  }
}

function keyAudit(c: Context<AppEnv>, type: KeyAudit['type'], metadata: Record<string, unknown>): KeyAudit {
  const principal = c.var.principal
  return {
    type,
    actor: actorOf(principal),
    clientId: principal.kind === 'client' ? principal.clientId : null,
    ip: clientIp(c),
    metadata,
  }
}

function iso(date: Date | null): string | null {
  return date === null ? null : date.toISOString()
}

function statusOf(record: ApiKeyRecord, now: Date): 'active' | 'grace' | 'expired' | 'revoked' {
  if (record.revokedAt !== null || (record.graceUntil !== null && record.graceUntil <= now)) {
    return 'revoked'
  }
  if (record.expiresAt !== null && record.expiresAt <= now) {
    return 'expired'
  }
  return record.graceUntil === null ? 'active' : 'grace'
}

function toApiKeyResponse(record: ApiKeyRecord, now: Date) {
  return {
    id: record.id,
    prefix: record.prefix,
    last4: record.last4,
    name: record.name,
    tier: record.tier,
    scopes: record.scopes,
    metadata: record.metadata,
    expires_at: iso(record.expiresAt),
    created_at: record.createdAt.toISOString(),
    owner_id: record.ownerUserId,
    tenant_id: record.tenantId,
    rate_limit:
      record.rateLimit === null
        ? null
        : { limit: record.rateLimit, window_seconds: record.rateLimitWindowSeconds },
    status: statusOf(record, now),
    last_used_at: iso(record.lastUsedAt),
    revoked_at: iso(record.revokedAt),
    rotated_from: record.rotatedFrom,
    grace_until: iso(record.graceUntil),
  }
}

function toVerifyResponse(result: VerifyResult) {
  if (!('key' in result)) {
    return {
      valid: false,
      code: result.code,
      key_id: null,
      owner_id: null,
      tenant_id: null,
      tier: null,
      scopes: null,
      metadata: null,
      quota: null,
      tenant_quota: null,
      ratelimit: null,
    }
  }
  const { key } = result
  return {
    valid: result.valid,
    code: result.code,
    key_id: key.keyId,
    owner_id: key.ownerId,
    tenant_id: key.tenantId,
    tier: key.tier,
    scopes: key.scopes,
    metadata: key.metadata,
    quota: {
      limit: key.quota.limit,
      remaining: key.quota.remaining,
      reset_at: key.quota.resetAt.toISOString(),
    },
    tenant_quota:
      key.tenantQuota === null
        ? null
        : {
            limit: key.tenantQuota.limit,
            remaining: key.tenantQuota.remaining,
            reset_at: key.tenantQuota.resetAt.toISOString(),
          },
    ratelimit: {
      limit: key.ratelimit.limit,
      remaining: key.ratelimit.remaining,
      reset_at: iso(key.ratelimit.resetAt),
    },
  }
}

interface Tally {
  success: number
  failure: number
}

function summarizeUsage(
  groups: readonly UsageGroup[],
  firstBucketMs: number,
  toMs: number,
  bucketMs: number,
) {
  const totals: Tally = { success: 0, failure: 0 }
  const byEndpoint = new Map<string | null, Tally>()
  const buckets = new Map<number, { totals: Tally; endpoints: Map<string | null, Tally> }>()
  for (let start = firstBucketMs; start < toMs; start += bucketMs) {
    buckets.set(start, { totals: { success: 0, failure: 0 }, endpoints: new Map() })
  }
  const add = (tally: Tally, group: UsageGroup) => {
    tally.success += group.success
    tally.failure += group.failure
  }
  for (const group of groups) {
    add(totals, group)
    add(tallyFor(byEndpoint, group.endpoint), group)
    const bucket = buckets.get(group.bucketMs)
    if (bucket !== undefined) {
      add(bucket.totals, group)
      add(tallyFor(bucket.endpoints, group.endpoint), group)
    }
  }
  const endpointList = (tallies: Map<string | null, Tally>) =>
    [...tallies].map(([endpoint, tally]) => ({ endpoint, ...tally }))
  return {
    totals,
    endpoints: endpointList(byEndpoint),
    buckets: [...buckets].map(([start, bucket]) => ({
      start: new Date(start).toISOString(),
      ...bucket.totals,
      endpoints: endpointList(bucket.endpoints),
    })),
  }
}

function tallyFor(tallies: Map<string | null, Tally>, endpoint: string | null): Tally {
  let tally = tallies.get(endpoint)
  if (tally === undefined) {
    tally = { success: 0, failure: 0 }
    tallies.set(endpoint, tally)
  }
  return tally
}

// The cursor is opaque to clients: base64url of the last row's exact created_at and id.
function encodeCursor(position: { createdAt: string; id: string }): string {
  return toBase64Url(utf8(JSON.stringify([position.createdAt, position.id])))
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const bytes = fromBase64Url(cursor)
    const decoded: unknown = bytes === undefined ? undefined : JSON.parse(new TextDecoder().decode(bytes))
    if (
      Array.isArray(decoded) &&
      decoded.length === 2 &&
      typeof decoded[0] === 'string' &&
      /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,6})?[+-]\d{2}(:\d{2})?$/.test(decoded[0]) &&
      typeof decoded[1] === 'string' &&
      isUuid(decoded[1])
    ) {
      return { createdAt: decoded[0], id: decoded[1] }
    }
  } catch {
    // Falls through to the 400 below.
  }
  throw invalidField('cursor', 'is not a cursor this API issued')
}
