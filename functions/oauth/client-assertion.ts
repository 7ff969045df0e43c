import {
  createLocalJWKSet,
  decodeJwt,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from 'jose'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
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

/** A checked assertion: the replay-table row that spends its `jti`. */
export interface VerifiedAssertion {
  jtiHash: string
  expiresAt: Date
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

/**
 * RFC 7523 §3 checks of a `private_key_jwt` assertion against the client's registered keys
 * (`jwks`, or `jwks_uri` fetched under the outbound rules, cached, fetched again once when the
 * `kid` is unknown): ES256/RS256/EdDSA, `iss` = `sub` = client_id, `aud` the issuer or the
 * endpoint, `exp` in the future and at most MAX_ASSERTION_LIFETIME_SECONDS away, a `jti`. The
 * `jti` is spent by the caller. Throws `invalid_client`.
 */
export async function verifyClientAssertion(
  config: Config,
  client: OAuthClientRow,
  assertion: string,
  endpoint: string,
  now: Date,
): Promise<VerifiedAssertion> {
  const inline = client.metadata.jwks as JSONWebKeySet | undefined
  const uri = typeof client.metadata.jwks_uri === 'string' ? client.metadata.jwks_uri : undefined
  const verifyWith = async (getKey: JWTVerifyGetKey) =>
    jwtVerify(assertion, getKey, {
      algorithms: [...CLIENT_ASSERTION_ALGS],
      issuer: client.clientId,
      subject: client.clientId,
      audience: [config.issuer, `${config.issuer}/oauth/token`, endpoint],
      requiredClaims: ['exp', 'jti'],
      currentDate: now,
    })
  let payload: Awaited<ReturnType<typeof verifyWith>>['payload']
  try {
    if (inline !== undefined) {
      payload = (await verifyWith(createLocalJWKSet(inline))).payload
    } else if (uri !== undefined) {
      try {
        payload = (await verifyWith(createLocalJWKSet(await fetchJwks(config, uri, now.getTime(), false))))
          .payload
      } catch (error) {
        if (!(error instanceof joseErrors.JWKSNoMatchingKey)) {
          throw error
        }
        // An unknown kid: the client may have rotated its keys since we cached them.
        payload = (await verifyWith(createLocalJWKSet(await fetchJwks(config, uri, now.getTime(), true))))
          .payload
      }
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
  return { jtiHash: await sha256Hex(`assertion:${client.clientId}:${jti}`), expiresAt: new Date(exp * 1000) }
}
