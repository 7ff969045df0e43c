import type { Executor } from '../../db/client'
import { findResourceServers, type ResourceServerRow } from '../../db/queries/resource-servers'
import type { ResourceScope, SigningAlgorithm } from '../../db/schema'
import type { Config } from '../config'
import { OAuthError } from '../errors/oauth'
import { parseResource } from './scope'

/**
 * RFC 8707 targets (issue 11). A `resource` is either Portcullis's own APIs (the issuer, or
 * DEFAULT_AUDIENCE) or a resource server an administrator registered; anything else is
 * `invalid_target`. Several `resource` values travel as one space-separated string (form.ts
 * joins repeats; a URI has no spaces), are stored that way on codes and refresh tokens, and
 * become an `aud` array. No Hono here.
 */
export interface ResourceTarget {
  identifier: string
  displayName: string
  /** Scopes this resource defines (empty for Portcullis's own APIs, whose scopes are SCOPES). */
  scopes: readonly ResourceScope[]
  accessTokenTtlSeconds: number | null
  /** The JWS algorithm its access tokens use; null = ACCESS_TOKEN_ALG. */
  signingAlgorithm: SigningAlgorithm | null
  /** True for the issuer / DEFAULT_AUDIENCE. */
  builtin: boolean
}

/** Most `resource` values one request may name. */
export const MAX_RESOURCES = 5
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
    signingAlgorithm: row.signingAlgorithm,
    builtin: false,
  }
}

/** The identifiers a `resource` parameter names (one, or several joined by spaces), checked. */
function parseResources(text: string | undefined): string[] {
  const values = [...new Set((text ?? '').split(' ').filter(Boolean))]
  if (values.length > MAX_RESOURCES) {
    throw new OAuthError('invalid_target', { description: `name at most ${MAX_RESOURCES} resources` })
  }
  return values.map((value) => parseResource(value) ?? value)
}

/**
 * The targets `resource` names, in request order (empty when none was sent). Unknown →
 * `invalid_target`. Several must sign alike (one token carries them all). No round trip for the
 * built-in target or cached ones; otherwise one for all the others.
 */
export async function resolveResources(
  x: Executor,
  config: Config | undefined,
  text: string | undefined,
): Promise<ResourceTarget[]> {
  const identifiers = parseResources(text)
  const now = Date.now()
  const found = new Map<string, ResourceTarget>()
  for (const identifier of identifiers) {
    const hit = cache.get(identifier)
    if (config !== undefined && (identifier === config.issuer || identifier === config.defaultAudience)) {
      found.set(identifier, {
        identifier,
        displayName: 'Portcullis',
        scopes: [],
        accessTokenTtlSeconds: null,
        signingAlgorithm: null,
        builtin: true,
      })
    } else if (hit !== undefined && hit.until > now) {
      found.set(identifier, hit.target)
    }
  }
  const missing = identifiers.filter((identifier) => !found.has(identifier))
  if (missing.length > 0) {
    for (const row of await findResourceServers(x, missing)) {
      const target = fromRow(row)
      if (cache.size >= CACHE_MAX) {
        cache.delete(cache.keys().next().value ?? '')
      }
      cache.set(row.identifier, { target, until: now + CACHE_TTL_MS })
      found.set(row.identifier, target)
    }
  }
  const targets = identifiers.map((identifier) => found.get(identifier))
  if (targets.some((t) => t === undefined)) {
    throw new OAuthError('invalid_target', { description: 'resource is not a known resource server' })
  }
  const resolved = targets as ResourceTarget[]
  const algorithms = new Set(resolved.map((t) => t.signingAlgorithm ?? config?.accessTokenAlg))
  if (algorithms.size > 1) {
    throw new OAuthError('invalid_target', {
      description: 'these resources sign their tokens differently: ask for each one separately',
    })
  }
  return resolved
}

/** The one target `resource` names, or null when none was sent (several: `invalid_target`). */
export async function resolveResource(
  x: Executor,
  config: Config | undefined,
  resource: string | undefined,
): Promise<ResourceTarget | null> {
  const targets = await resolveResources(x, config, resource)
  if (targets.length > 1) {
    throw new OAuthError('invalid_target', { description: 'name one resource here' })
  }
  return targets[0] ?? null
}

/** The scope names the targets add to what a client may ask for when it names them. */
export function targetScopeNames(targets: ResourceTarget | null | readonly ResourceTarget[]): string[] {
  const list: readonly ResourceTarget[] =
    targets === null ? [] : 'identifier' in targets ? [targets] : targets
  return list.flatMap((target) => target.scopes.map((s) => s.name))
}

/** The stored form of several targets (the `resource` column): identifiers joined by spaces. */
export function storedResource(targets: readonly ResourceTarget[]): string | null {
  return targets.length === 0 ? null : targets.map((t) => t.identifier).join(' ')
}

/** The `aud` of an access token for a stored resource: one string, an array for several, else the default. */
export function resourceAudience(config: Config, resource: string | null | undefined): string | string[] {
  const identifiers = (resource ?? '').split(' ').filter(Boolean)
  if (identifiers.length > 1) {
    return identifiers
  }
  return identifiers[0] ?? (config.defaultAudience || config.issuer)
}

/** What the access token of a grant carries after RFC 8707 §2.2 narrowing at the token endpoint. */
export interface Issuance {
  /** The audience(s), stored form; null: the grant named none. */
  resource: string | null
  scope: string
  /** The shortest lifetime among the audiences (null: ACCESS_TOKEN_TTL). */
  ttlSeconds: number | null
  /** The audiences' signing algorithm (undefined: ACCESS_TOKEN_ALG). */
  alg: SigningAlgorithm | undefined
}

/**
 * RFC 8707 §2.2 at the token endpoint: `resource` may name only targets the grant holds (else
 * `invalid_target`) and narrows the access token to them: its `aud`, and its scope loses the
 * scopes of the granted resources left out. The token's lifetime is the shortest of its
 * audiences', its algorithm theirs. No round trip when the grant's targets are cached.
 */
export async function narrowGrant(
  x: Executor,
  config: Config,
  requested: readonly ResourceTarget[],
  grantedResource: string | null,
  grantedScope: string,
): Promise<Issuance> {
  const fallback = config.defaultAudience || config.issuer
  const grantedIds = (grantedResource ?? '').split(' ').filter(Boolean)
  const heldIds = grantedIds.length === 0 ? [fallback] : grantedIds
  const outside = requested.find((t) => !heldIds.includes(t.identifier))
  if (outside !== undefined) {
    throw new OAuthError('invalid_target', { description: 'resource was not part of this grant' })
  }
  if (grantedIds.length === 0) {
    return { resource: null, scope: grantedScope, ttlSeconds: null, alg: undefined }
  }
  // The grant's targets as registered now (one deleted since: invalid_target).
  const granted = await resolveResources(x, config, grantedIds.join(' '))
  const chosen =
    requested.length === 0
      ? granted
      : granted.filter((t) => requested.some((r) => r.identifier === t.identifier))
  const leftOut = new Set(targetScopeNames(granted.filter((t) => !chosen.includes(t))))
  const keep = new Set(targetScopeNames(chosen))
  const scope = grantedScope
    .split(' ')
    .filter((s) => s !== '' && (keep.has(s) || !leftOut.has(s)))
    .join(' ')
  const ttls = chosen.map((t) => t.accessTokenTtlSeconds).filter((t): t is number => t !== null)
  return {
    resource: storedResource(chosen),
    scope,
    ttlSeconds: ttls.length === 0 ? null : Math.min(...ttls),
    alg: chosen.find((t) => t.signingAlgorithm !== null)?.signingAlgorithm ?? undefined,
  }
}
