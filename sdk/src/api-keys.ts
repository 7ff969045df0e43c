import { PortcullisError } from './errors.js'
import { isRecord } from './http.js'

export const API_KEY_CODES = [
  'VALID',
  'NOT_FOUND',
  'REVOKED',
  'EXPIRED',
  'DISABLED',
  'QUOTA_EXCEEDED',
  'RATE_LIMITED',
  'MALFORMED',
] as const
export type ApiKeyCode = (typeof API_KEY_CODES)[number]

export interface LimitState {
  /** null: unlimited. */
  limit: number | null
  remaining: number | null
  resetAt: Date | null
}

/** What Portcullis knows about a key it recognised. */
export interface VerifiedApiKey {
  keyId: string
  ownerId: string
  tenantId: string
  tier: string
  scopes: string[]
  metadata: Record<string, unknown>
  quota: LimitState
  /** The monthly quota all of the key's tenant's keys share; null when the tenant has none. */
  tenantQuota: LimitState | null
  ratelimit: LimitState
}

/**
 * The verdict on an API key. A recognised but over-limit key carries its details (for a
 * `Retry-After`); a key that is not usable carries none.
 */
export type ApiKeyVerification =
  | { valid: true; code: 'VALID'; key: VerifiedApiKey }
  | { valid: false; code: 'QUOTA_EXCEEDED' | 'RATE_LIMITED'; key: VerifiedApiKey }
  | { valid: false; code: 'NOT_FOUND' | 'REVOKED' | 'EXPIRED' | 'DISABLED' | 'MALFORMED'; key: null }

export interface VerifyApiKeyOptions {
  /** Recorded with the usage (per-endpoint analytics), e.g. `GET /v1/things`. */
  endpoint?: string
}

function limitState(value: unknown): LimitState {
  if (!isRecord(value)) {
    throw new PortcullisError('unexpected_response', 'verify: a limit is missing')
  }
  const number = (v: unknown) => (typeof v === 'number' ? v : null)
  return {
    limit: number(value.limit),
    remaining: number(value.remaining),
    resetAt: typeof value.reset_at === 'string' ? new Date(value.reset_at) : null,
  }
}

/** The wire answer of `POST /api-keys/verify`, converted once (snake_case → camelCase). */
export function toApiKeyVerification(body: unknown): ApiKeyVerification {
  if (!isRecord(body)) {
    throw new PortcullisError('unexpected_response', 'verify: the body is not an object')
  }
  const code = API_KEY_CODES.find((c) => c === body.code)
  if (code === undefined) {
    // Fail closed on a code this SDK version does not know.
    throw new PortcullisError('unexpected_response', `verify: unknown code ${String(body.code)}`)
  }
  if (
    code === 'NOT_FOUND' ||
    code === 'REVOKED' ||
    code === 'EXPIRED' ||
    code === 'DISABLED' ||
    code === 'MALFORMED'
  ) {
    return { valid: false, code, key: null }
  }
  if (typeof body.key_id !== 'string' || typeof body.owner_id !== 'string') {
    throw new PortcullisError('unexpected_response', 'verify: key details missing')
  }
  const key: VerifiedApiKey = {
    keyId: body.key_id,
    ownerId: body.owner_id,
    tenantId: typeof body.tenant_id === 'string' ? body.tenant_id : '',
    tier: typeof body.tier === 'string' ? body.tier : '',
    scopes: Array.isArray(body.scopes) ? body.scopes.filter((s): s is string => typeof s === 'string') : [],
    metadata: isRecord(body.metadata) ? body.metadata : {},
    quota: limitState(body.quota),
    // Absent from servers older than the tenant-wide quota: none.
    tenantQuota:
      body.tenant_quota === null || body.tenant_quota === undefined ? null : limitState(body.tenant_quota),
    ratelimit: limitState(body.ratelimit),
  }
  return code === 'VALID' ? { valid: true, code, key } : { valid: false, code, key }
}
