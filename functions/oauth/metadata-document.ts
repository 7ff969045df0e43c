import type { Executor } from '../../db/client'
import { METADATA_DOCUMENT_KEY, upsertMetadataDocumentClient } from '../../db/queries/metadata-documents'
import { findClient } from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { resourceScopeNames } from '../../db/queries/resource-servers'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { auditStatement } from '../audit/record'
import type { Config } from '../config'
import { OAuthError } from '../errors/oauth'
import { isLoopbackHost, publicFetchJson } from '../outbound/public-fetch'
import { metadataColumns, parseClientMetadata } from './client-metadata'

/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25;
 * issue 11): a `client_id` that is an https URL with a path names a JSON document the client
 * publishes about itself. Portcullis fetches it through the outbound guard (https, public
 * address, 5 KiB, 3 s, no redirect, JSON only), checks it like a registration, and keeps the
 * result as an `oauth_clients` row keyed by the URL, so every grant statement and consent works
 * unchanged. Freshness follows the document's Cache-Control (capped); this isolate remembers
 * fresh rows and recent failures so a warm request costs no round trip for them. No Hono here.
 */

/** Longest a document is trusted without being read again, whatever its Cache-Control says. */
export const METADATA_DOCUMENT_MAX_AGE_SECONDS = 3600
/** How long a document without Cache-Control is trusted. */
export const METADATA_DOCUMENT_DEFAULT_AGE_SECONDS = 300
/** How long a failed fetch or a refused document is remembered (per isolate) before a retry. */
export const METADATA_DOCUMENT_FAILURE_SECONDS = 30
export const METADATA_DOCUMENT_MAX_BYTES = 5_120
export const METADATA_DOCUMENT_TIMEOUT_MS = 3_000
/** Secret-based methods need a secret, and a published document has none to give. */
const SECRET_METHODS = ['client_secret_basic', 'client_secret_post', 'client_secret_jwt']
const CACHE_MAX = 1_000

interface Remembered {
  until: number
  /** Null: the stored row is fresh; a string: why the document was refused. */
  failure: string | null
}

/** Per isolate, per database (a test may switch databases): URL → fresh row or recent failure. */
const remembered = new Map<string, Remembered>()

/** Forget what this isolate remembered (tests). */
export function forgetMetadataDocuments(): void {
  remembered.clear()
}

function cacheKey(config: Config, url: string): string {
  return `${config.databaseUrl}\n${url}`
}

function remember(config: Config, url: string, entry: Remembered): void {
  if (remembered.size >= CACHE_MAX) {
    remembered.delete(remembered.keys().next().value ?? '')
  }
  remembered.set(cacheKey(config, url), entry)
}

function refusal(reason: string): OAuthError {
  return new OAuthError('invalid_client', {
    description: `The client metadata document was refused: ${reason}`,
    log: `client_metadata_document: ${reason}`,
  })
}

/** True when this client_id is a URL, so it can only be a metadata document's. */
export function isMetadataDocumentClientId(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId)
}

/**
 * Why this URL cannot be a metadata document client_id (draft §3: https, a path, no fragment,
 * no credentials, no dot segments), or null. A loopback http URL passes only under
 * OUTBOUND_ALLOW_LOOPBACK (development); the operator's trusted prefixes, when set, must match.
 */
export function metadataDocumentUrlProblem(config: Config, clientId: string): string | null {
  if (!config.clientMetadataDocuments.enabled) {
    return 'metadata documents are not accepted here'
  }
  if (!URL.canParse(clientId)) {
    return 'client_id is not a URL'
  }
  const url = new URL(clientId)
  const loopback = isLoopbackHost(url.hostname.toLowerCase())
  if (loopback && !config.outboundAllowLoopback) {
    return 'client_id names a loopback address'
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
    return 'client_id must be an https URL'
  }
  if (url.pathname === '/' || url.hash !== '' || clientId.includes('#')) {
    return 'client_id must have a path and no fragment'
  }
  if (url.username !== '' || url.password !== '') {
    return 'client_id must not carry credentials'
  }
  if (/\/\.\.?(\/|$)/.test(clientId.replace(/[?].*$/, ''))) {
    return 'client_id must not have dot segments'
  }
  if (url.href !== clientId) {
    return 'client_id must be written in its normal form'
  }
  const prefixes = config.clientMetadataDocuments.trustedPrefixes
  if (prefixes.length > 0 && !prefixes.some((p) => clientId.startsWith(p))) {
    return 'client_id is not under a trusted prefix'
  }
  return null
}

/** Seconds the document may be trusted: Cache-Control max-age, capped; no-store/no-cache: none. */
export function documentLifetime(cacheControl: string | null): number {
  if (cacheControl === null) {
    return METADATA_DOCUMENT_DEFAULT_AGE_SECONDS
  }
  const directives = cacheControl
    .toLowerCase()
    .split(',')
    .map((d) => d.trim())
  if (directives.some((d) => d === 'no-store' || d === 'no-cache' || d === 'private')) {
    return 0
  }
  const maxAge = directives.map((d) => /^max-age\s*=\s*"?(\d+)"?$/.exec(d)?.[1]).find((v) => v !== undefined)
  if (maxAge === undefined) {
    return METADATA_DOCUMENT_DEFAULT_AGE_SECONDS
  }
  return Math.min(Number(maxAge), METADATA_DOCUMENT_MAX_AGE_SECONDS)
}

/** When this row's document goes stale (epoch ms), or null when the row is not a document's. */
function staleAt(row: OAuthClientRow): number | null {
  const recorded = row.metadata[METADATA_DOCUMENT_KEY] as { expires_at?: unknown } | undefined
  return typeof recorded?.expires_at === 'number' ? recorded.expires_at * 1000 : null
}

/** Checks a fetched document like an anonymous registration; the columns to store, or throws. */
async function documentColumns(x: Executor, config: Config, url: string, json: unknown) {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw refusal('it is not a JSON object')
  }
  const doc = json as Record<string, unknown>
  if (doc.client_id !== url) {
    throw refusal('its client_id is not the URL it was fetched from')
  }
  if ('client_secret' in doc || 'client_secret_expires_at' in doc) {
    throw refusal('it carries a client secret')
  }
  const method = doc.token_endpoint_auth_method ?? 'none'
  if (typeof method === 'string' && SECRET_METHODS.includes(method)) {
    throw refusal(`token_endpoint_auth_method ${method} needs a secret, which a document cannot have`)
  }
  const scope = typeof doc.scope === 'string' ? doc.scope : ''
  const foreign = scope.split(' ').some((s) => s !== '' && !config.scopesSupported.includes(s))
  const resourceScopes = foreign ? await resourceScopeNames(x) : undefined
  const result = parseClientMetadata({ ...doc, token_endpoint_auth_method: method }, config, {
    privileged: false,
    resourceScopes,
  })
  if (!result.ok) {
    throw refusal(`${result.field}: ${result.message}`)
  }
  const grant = result.value.grantTypes.find((g) => !config.anonymousRegistrationGrantTypes.includes(g))
  if (grant !== undefined) {
    throw refusal(`grant_types: ${grant} needs a registered client`)
  }
  return result.value
}

/**
 * Fetches, checks and stores the document: the fetch, then one round trip (one more if it names
 * resource scopes, one more the first time, for its `client_registered` audit event).
 */
async function readDocument(x: Executor, config: Config, url: string, now: Date): Promise<OAuthClientRow> {
  const fetched = await publicFetchJson(url, {
    allowLoopback: config.outboundAllowLoopback,
    maxBytes: METADATA_DOCUMENT_MAX_BYTES,
    timeoutMs: METADATA_DOCUMENT_TIMEOUT_MS,
  })
  if (fetched.kind === 'refused') {
    throw refusal(`fetching it failed (${fetched.reason})`)
  }
  const metadata = await documentColumns(x, config, url, fetched.json)
  const lifetime = documentLifetime(fetched.cacheControl)
  const nowSeconds = Math.floor(now.getTime() / 1000)
  const columns = metadataColumns(metadata)
  const stored = await upsertMetadataDocumentClient(x, {
    clientId: url,
    tenantId: DEFAULT_TENANT_ID,
    clientSecretHash: null,
    ...columns,
    metadata: {
      ...columns.metadata,
      [METADATA_DOCUMENT_KEY]: { fetched_at: nowSeconds, expires_at: nowSeconds + lifetime },
    },
    firstParty: false,
    createdAt: now,
    updatedAt: now,
  })
  if (stored === undefined) {
    throw refusal('a registered client already holds this client_id')
  }
  if (stored.inserted) {
    // First sight of this client: recorded like a registration (one more round trip, once).
    await auditStatement(x, null, {
      type: 'client_registered',
      actor: `client:${url}`,
      tenantId: DEFAULT_TENANT_ID,
      clientId: url,
      metadata: { via: 'client_id_metadata_document', scope: metadata.scope },
    })
  }
  remember(config, url, { until: now.getTime() + lifetime * 1000, failure: null })
  return stored.row
}

/**
 * The client row for a metadata document client_id (authorization endpoint): one round trip
 * when the stored document is fresh (as for any client); when it is stale or new, the fetch
 * and one round trip more. A recent failure is refused again without either.
 */
export async function metadataDocumentClient(
  x: Executor,
  config: Config,
  url: string,
  now: Date,
): Promise<OAuthClientRow> {
  const problem = metadataDocumentUrlProblem(config, url)
  if (problem !== null) {
    throw refusal(problem)
  }
  const known = remembered.get(cacheKey(config, url))
  if (known !== undefined && known.until > now.getTime() && known.failure !== null) {
    throw refusal(known.failure)
  }
  const row = await findClient(x, url)
  const stale = row === undefined ? null : staleAt(row)
  if (row !== undefined && (stale === null || stale > now.getTime())) {
    // A registered client that happens to hold a URL id, or a document still fresh.
    if (stale !== null) {
      remember(config, url, { until: stale, failure: null })
    }
    return row
  }
  try {
    return await readDocument(x, config, url, now)
  } catch (error) {
    if (error instanceof OAuthError) {
      const reason = (error.options.description ?? '').replace(/^.*refused: /, '')
      remember(config, url, {
        until: now.getTime() + METADATA_DOCUMENT_FAILURE_SECONDS * 1000,
        failure: reason,
      })
    }
    throw error
  }
}

/**
 * Before a token or pushed request whose client_id is a document URL: makes sure the stored
 * client is fresh. No round trip when this isolate knows it is; otherwise as metadataDocumentClient.
 * Other client_ids pass untouched.
 */
export async function freshenMetadataDocumentClient(
  x: Executor,
  config: Config,
  clientId: string | undefined,
  now: Date,
): Promise<void> {
  if (clientId === undefined || !isMetadataDocumentClientId(clientId)) {
    return
  }
  const known = remembered.get(cacheKey(config, clientId))
  if (known !== undefined && known.until > now.getTime() && known.failure === null) {
    return
  }
  await metadataDocumentClient(x, config, clientId, now)
}

/** For the consent page: the document's host, and whether it is a loopback one (a warning). */
export function metadataDocumentOrigin(client: OAuthClientRow): { host: string; loopback: boolean } | null {
  if (staleAt(client) === null || !URL.canParse(client.clientId)) {
    return null
  }
  const url = new URL(client.clientId)
  return { host: url.host, loopback: isLoopbackHost(url.hostname.toLowerCase()) }
}
