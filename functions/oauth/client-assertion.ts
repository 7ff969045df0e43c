import {
  type CryptoKey,
  decodeJwt,
  decodeProtectedHeader,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
} from 'jose'
import type { Executor, HttpDb } from '../../db/client'
import { findClient, findClientStatement } from '../../db/queries/oauth-clients'
import { clientFailureStatement } from '../../db/queries/oauth-grants'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { spendProofJtiStatement, spendWon } from '../../db/queries/proof-jtis'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { OAuthError } from '../errors/oauth'
import { publicFetchJson } from '../outbound/public-fetch'

/** RFC 7523 §2.2: the `client_assertion_type` of a signed JWT client assertion. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const CLIENT_ASSERTION_ALGS = ['ES256', 'RS256', 'EdDSA'] as const
/** An assertion may not claim to live longer than this (RFC 7523 §3: a short `exp`). */
export const MAX_ASSERTION_LIFETIME_SECONDS = 300
/** How long a fetched `jwks_uri` document is used before it is fetched again. */
export const JWKS_URI_CACHE_SECONDS = 300
const JWKS_CACHE_ENTRIES = 500

/** How long an isolate keeps a client's registered keys (issue 16: no lookup per grant). */
export const CLIENT_KEYS_CACHE_SECONDS = 300
const CLIENT_KEYS_CACHE_ENTRIES = 1000

/**
 * The registered key that verified an assertion: a `jwks` member, or the `jwks_uri` it came from.
 * The grant statement checks it is still the client's, so cached keys cannot outlive a removal.
 */
export type AssertionKey = { kind: 'jwk'; jwk: JWK } | { kind: 'jwks_uri'; uri: string }

/** A checked assertion: the replay-table row that spends its `jti`, and the key that verified it. */
export interface VerifiedAssertion {
  jtiHash: string
  expiresAt: Date
  key: AssertionKey
}

/** Where a client's assertion keys are registered (its `jwks` or `jwks_uri` metadata). */
export interface ClientKeys {
  clientId: string
  jwks: JSONWebKeySet | undefined
  jwksUri: string | undefined
}

const jwksCache = new Map<string, { keys: JSONWebKeySet; until: number }>()

function refuse(log: string, cause?: unknown): OAuthError {
  return new OAuthError('invalid_client', { description: 'Client authentication failed', log, cause })
}

/** The client an assertion names (`sub`, RFC 7523 §3), read without checking anything. */
export function assertionSubject(assertion: string): string | undefined {
  try {
    const sub = decodeJwt(assertion).sub
    return typeof sub === 'string' && sub.length > 0 && sub.length <= 200 ? sub : undefined
  } catch {
    return undefined
  }
}

async function fetchJwks(config: Config, uri: string, now: number, fresh: boolean): Promise<JSONWebKeySet> {
  const hit = jwksCache.get(uri)
  if (!fresh && hit !== undefined && hit.until > now) {
    return hit.keys
  }
  // Same SSRF rules as every outbound fetch: https, public address, no redirect, deadline, size.
  const outcome = await publicFetchJson(uri, {
    allowLoopback: config.outboundAllowLoopback,
    maxBytes: 64 * 1024,
  })
  if (outcome.kind !== 'ok') {
    throw refuse(`jwks_uri ${outcome.reason}`)
  }
  const keys = outcome.json as JSONWebKeySet
  if (typeof keys !== 'object' || keys === null || !Array.isArray(keys.keys)) {
    throw refuse('jwks_uri is not a JWK set')
  }
  if (jwksCache.size >= JWKS_CACHE_ENTRIES) {
    jwksCache.delete(jwksCache.keys().next().value ?? '')
  }
  jwksCache.set(uri, { keys, until: now + JWKS_URI_CACHE_SECONDS * 1000 })
  return keys
}

/** The assertion keys a client row registers. */
export function clientKeysOf(client: { clientId: string; metadata: Record<string, unknown> }): ClientKeys {
  const jwks = client.metadata.jwks as JSONWebKeySet | undefined
  const uri = client.metadata.jwks_uri
  return { clientId: client.clientId, jwks, jwksUri: typeof uri === 'string' ? uri : undefined }
}

const KEY_TYPES: Record<(typeof CLIENT_ASSERTION_ALGS)[number], (jwk: JWK) => boolean> = {
  ES256: (jwk) => jwk.kty === 'EC' && jwk.crv === 'P-256',
  RS256: (jwk) => jwk.kty === 'RSA',
  EdDSA: (jwk) => jwk.kty === 'OKP' && jwk.crv === 'Ed25519',
}
const importedKeys = new WeakMap<JWK, CryptoKey | Uint8Array>()

async function importedKey(jwk: JWK, alg: string): Promise<CryptoKey | Uint8Array> {
  const hit = importedKeys.get(jwk)
  if (hit !== undefined) {
    return hit
  }
  const key = await importJWK(jwk, alg)
  importedKeys.set(jwk, key)
  return key
}

/**
 * Verifies the assertion with the member of `set` its header names (`kid`, else every key of the
 * algorithm's type), returning the claims and that member. No candidate: JWKSNoMatchingKey.
 */
async function verifyWithSet(
  set: JSONWebKeySet,
  assertion: string,
  options: Parameters<typeof jwtVerify>[2],
): Promise<{ payload: JWTPayload; jwk: JWK }> {
  const { alg, kid } = decodeProtectedHeader(assertion)
  const fits = CLIENT_ASSERTION_ALGS.find((a) => a === alg)
  if (fits === undefined) {
    throw new joseErrors.JOSEAlgNotAllowed('alg not allowed')
  }
  const candidates = (Array.isArray(set.keys) ? set.keys : []).filter(
    (jwk) =>
      (kid === undefined || jwk.kid === kid) &&
      KEY_TYPES[fits](jwk) &&
      (jwk.use === undefined || jwk.use === 'sig') &&
      (jwk.alg === undefined || jwk.alg === fits),
  )
  if (candidates.length === 0) {
    throw new joseErrors.JWKSNoMatchingKey()
  }
  let failure: unknown
  for (const jwk of candidates) {
    try {
      const { payload } = await jwtVerify(assertion, await importedKey(jwk, fits), options)
      return { payload, jwk }
    } catch (error) {
      if (!(error instanceof joseErrors.JWSSignatureVerificationFailed)) {
        throw error
      }
      failure = error
    }
  }
  throw failure
}

/**
 * RFC 7523 §3 checks of a `private_key_jwt` assertion against the client's registered keys
 * (`jwks`, or `jwks_uri` fetched under the outbound rules, cached, fetched again once when the
 * `kid` is unknown): ES256/RS256/EdDSA, `iss` = `sub` = client_id, `aud` the issuer or the
 * endpoint, `exp` in the future and at most MAX_ASSERTION_LIFETIME_SECONDS away, a `jti`. The
 * `jti` is spent by the caller. Throws `invalid_client`.
 */
export async function verifyClientAssertion(
  config: Config,
  client: ClientKeys,
  assertion: string,
  endpoint: string,
  now: Date,
): Promise<VerifiedAssertion> {
  const options = {
    algorithms: [...CLIENT_ASSERTION_ALGS],
    issuer: client.clientId,
    subject: client.clientId,
    audience: [config.issuer, `${config.issuer}/oauth/token`, endpoint],
    requiredClaims: ['exp', 'jti'],
    currentDate: now,
  }
  const uri = client.jwksUri
  let verified: { payload: JWTPayload; jwk: JWK }
  let key: AssertionKey
  try {
    if (client.jwks !== undefined) {
      verified = await verifyWithSet(client.jwks, assertion, options)
      key = { kind: 'jwk', jwk: verified.jwk }
    } else if (uri !== undefined) {
      try {
        verified = await verifyWithSet(await fetchJwks(config, uri, now.getTime(), false), assertion, options)
      } catch (error) {
        if (!(error instanceof joseErrors.JWKSNoMatchingKey)) {
          throw error
        }
        // An unknown kid: the client may have rotated its keys since we cached them.
        verified = await verifyWithSet(await fetchJwks(config, uri, now.getTime(), true), assertion, options)
      }
      key = { kind: 'jwks_uri', uri }
    } else {
      throw refuse('no keys registered')
    }
  } catch (error) {
    if (error instanceof OAuthError) {
      throw error
    }
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError || error instanceof SyntaxError) {
      throw refuse(error instanceof joseErrors.JOSEError ? error.code : 'malformed assertion', error)
    }
    throw error
  }
  const payload = verified.payload
  const exp = Number(payload.exp)
  if (exp - now.getTime() / 1000 > MAX_ASSERTION_LIFETIME_SECONDS) {
    throw refuse('assertion lives too long')
  }
  if (typeof payload.iat === 'number' && payload.iat > now.getTime() / 1000 + 60) {
    throw refuse('assertion issued in the future')
  }
  const jti = payload.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 200) {
    throw refuse('bad jti')
  }
  return {
    jtiHash: await sha256Hex(`assertion:${client.clientId}:${jti}`),
    expiresAt: new Date(exp * 1000),
    key,
  }
}

const clientKeysCache = new Map<string, { keys: ClientKeys; until: number }>()

/** Drops a client's cached keys (its grant statement refused it: the row may have changed). */
export function forgetClientKeys(clientId: string): void {
  clientKeysCache.delete(clientId)
}

async function loadClientKeys(x: Executor, clientId: string, now: number): Promise<ClientKeys> {
  const row = await findClient(x, clientId)
  if (row === undefined || row.disabledAt !== null || row.tokenEndpointAuthMethod !== 'private_key_jwt') {
    forgetClientKeys(clientId)
    throw refuse(row === undefined ? 'unknown client' : 'client disabled or not private_key_jwt')
  }
  const keys = clientKeysOf(row)
  if (clientKeysCache.size >= CLIENT_KEYS_CACHE_ENTRIES) {
    clientKeysCache.delete(clientKeysCache.keys().next().value ?? '')
  }
  clientKeysCache.set(clientId, { keys, until: now + CLIENT_KEYS_CACHE_SECONDS * 1000 })
  return keys
}

/**
 * Checks a `private_key_jwt` assertion with NO round trip on a warm isolate (issue 16): the
 * client's registered keys are cached per isolate for CLIENT_KEYS_CACHE_SECONDS, and read again
 * (one round trip) when cold or when the cached keys do not verify (a key added or replaced). The
 * cache cannot hide a revocation: the statement that uses the result (the grant statement, or
 * `spendAssertionJtiStatement` in a batch) spends the `jti` only while the client is enabled,
 * still `private_key_jwt` and still registers the key that verified (`AssertionKey`), and
 * authenticates nothing otherwise.
 */
export async function verifyAgentAssertion(
  config: Config,
  x: Executor,
  clientId: string,
  assertion: string,
  endpoint: string,
  now: Date,
): Promise<VerifiedAssertion> {
  const cached = clientKeysCache.get(clientId)
  if (cached !== undefined && cached.until > now.getTime()) {
    try {
      return await verifyClientAssertion(config, cached.keys, assertion, endpoint, now)
    } catch (error) {
      if (!(error instanceof OAuthError)) {
        throw error
      }
      // The cached keys may be stale (a key added or replaced since): read them once more.
    }
  }
  return verifyClientAssertion(
    config,
    await loadClientKeys(x, clientId, now.getTime()),
    assertion,
    endpoint,
    now,
  )
}

/**
 * Why a grant statement refused an agent whose assertion verified against cached keys, in ONE
 * round trip (a batch): the client row read afresh, the assertion's `jti` spent (RFC 7523 §3:
 * once, refused or not) and a failure counted in its usage. Throws `invalid_client` when the
 * client is gone, disabled or no longer registers the key, or the `jti` was spent before (a
 * replay); else returns the row for the grant's own explanation (grant type, DPoP).
 */
export async function explainAgentRefusal(
  config: Config,
  db: HttpDb,
  input: {
    clientId: string
    assertion: string
    verified: VerifiedAssertion
    endpoint: string
    grantType: string
    now: Date
  },
): Promise<OAuthClientRow> {
  forgetClientKeys(input.clientId)
  const [rows, spent] = await db.batch([
    findClientStatement(db, input.clientId),
    spendProofJtiStatement(db, input.verified.jtiHash, input.verified.expiresAt),
    clientFailureStatement(db, { clientId: input.clientId, grantType: input.grantType, now: input.now }),
  ])
  const row = rows[0]
  if (row === undefined || row.disabledAt !== null || row.tokenEndpointAuthMethod !== 'private_key_jwt') {
    throw refuse('client gone, disabled or not private_key_jwt')
  }
  await verifyClientAssertion(config, clientKeysOf(row), input.assertion, input.endpoint, input.now)
  if (!spendWon(spent)) {
    throw refuse('assertion jti replayed')
  }
  return row
}

/**
 * After a batch that read the client row and ran `spendAssertionJtiStatement` (introspection):
 * the row when that spend won; else `invalid_client` (gone, disabled, key no longer registered,
 * or a replay), with the cached keys dropped.
 */
export async function settleAgentAssertion(
  config: Config,
  row: OAuthClientRow | undefined,
  spent: unknown,
  input: { clientId: string; assertion: string; endpoint: string; now: Date },
): Promise<OAuthClientRow> {
  if (row !== undefined && spendWon(spent)) {
    return row
  }
  forgetClientKeys(input.clientId)
  if (row === undefined || row.disabledAt !== null || row.tokenEndpointAuthMethod !== 'private_key_jwt') {
    throw refuse('client gone, disabled or not private_key_jwt')
  }
  await verifyClientAssertion(config, clientKeysOf(row), input.assertion, input.endpoint, input.now)
  throw refuse('assertion jti replayed, or its tenant is inactive')
}
