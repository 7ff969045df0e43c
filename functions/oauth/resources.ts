import type { Executor } from '../../db/client'
import { findResourceServer, type ResourceServerRow } from '../../db/queries/resource-servers'
import type { ResourceScope } from '../../db/schema'
import type { Config } from '../config'
import { OAuthError } from '../errors/oauth'
import { parseResource } from './scope'

/**
 * RFC 8707 targets (issue 11). A `resource` is either Portcullis's own APIs (the issuer, or
 * DEFAULT_AUDIENCE) or a resource server an administrator registered; anything else is
 * `invalid_target`. No Hono here.
 */
export interface ResourceTarget {
  identifier: string
  displayName: string
  /** Scopes this resource defines (empty for Portcullis's own APIs, whose scopes are SCOPES). */
  scopes: readonly ResourceScope[]
  accessTokenTtlSeconds: number | null
  /** True for the issuer / DEFAULT_AUDIENCE. */
  builtin: boolean
}

const CACHE_TTL_MS = 30_000
const CACHE_MAX = 500
/** Registered resource servers per identifier, per isolate, for 30 s (edits reach every isolate by then). */
const cache = new Map<string, { target: ResourceTarget; until: number }>()

/** Forget what this isolate cached (an admin edit, a test switching databases). */
export function forgetResourceServers(): void {
  cache.clear()
}

function fromRow(row: ResourceServerRow): ResourceTarget {
  return {
    identifier: row.identifier,
    displayName: row.displayName,
    scopes: row.scopes,
    accessTokenTtlSeconds: row.accessTokenTtlSeconds,
    builtin: false,
  }
}

/**
 * The target named by `resource`, or null when none was sent. Unknown → `invalid_target`.
 * No round trip for the built-in target or a cached one; otherwise one.
 */
export async function resolveResource(
  x: Executor,
  config: Config | undefined,
  resource: string | undefined,
): Promise<ResourceTarget | null> {
  const identifier = parseResource(resource)
  if (identifier === null) {
    return null
  }
  if (config !== undefined && (identifier === config.issuer || identifier === config.defaultAudience)) {
    return { identifier, displayName: 'Portcullis', scopes: [], accessTokenTtlSeconds: null, builtin: true }
  }
  const now = Date.now()
  const hit = cache.get(identifier)
  if (hit !== undefined && hit.until > now) {
    return hit.target
  }
  const row = await findResourceServer(x, identifier)
  if (row === undefined) {
    throw new OAuthError('invalid_target', { description: 'resource is not a known resource server' })
  }
  const target = fromRow(row)
  if (cache.size >= CACHE_MAX) {
    cache.delete(cache.keys().next().value ?? '')
  }
  cache.set(identifier, { target, until: now + CACHE_TTL_MS })
  return target
}

/** The scope names a target adds to what a client may ask for when it names that target. */
export function targetScopeNames(target: ResourceTarget | null): string[] {
  return target === null ? [] : target.scopes.map((s) => s.name)
}

/**
 * RFC 8707 §2.2 at the token endpoint: `resource` may only name what the grant was for (a grant
 * holds one target, so "narrowing" is naming it again). Unknown targets were refused before any
 * statement ran (`resolveResource`); this refuses a known but ungranted one.
 */
export function checkGrantedResource(
  config: Config,
  requested: ResourceTarget | null,
  granted: string | null,
): void {
  if (requested === null) {
    return
  }
  const audience = granted || config.defaultAudience || config.issuer
  if (requested.identifier !== audience) {
    throw new OAuthError('invalid_target', { description: 'resource was not part of this grant' })
  }
}
