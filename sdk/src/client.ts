import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey, jwtVerify } from 'jose'
import {
  ACCESS_TOKEN_ALGORITHMS,
  type AccessTokenVerification,
  failureOf,
  grantedScopes,
  hasClaimTypes,
  REQUIRED_CLAIMS,
  type VerifyAccessTokenOptions,
} from './access-tokens.js'
import { type ApiKeyVerification, toApiKeyVerification, type VerifyApiKeyOptions } from './api-keys.js'
import { type CallerCredentials, CallerToken } from './credentials.js'
import { cachedDiscovery } from './discovery.js'
import { PortcullisError } from './errors.js'
import {
  basicAuthorization,
  DEFAULT_TIMEOUT_MS,
  type FetchLike,
  type HttpContext,
  isRecord,
  readJson,
  send,
} from './http.js'

export interface PortcullisOptions {
  /** The issuer URL exactly as discovery states it, e.g. `https://auth.example.com`. */
  issuer: string
  /** Who this service is when it calls Portcullis (verify, introspection). */
  credentials?: CallerCredentials
  /** Default `aud` for `verifyAccessToken` (the resource this API is). */
  audience?: string
  /** Allowed clock difference for `exp`/`iat`/`nbf`, in seconds (default 30). */
  clockToleranceSeconds?: number
  /** Deadline of every call to Portcullis, in ms (default 5000). */
  timeoutMs?: number
  /** Minimum time between JWKS refetches on an unknown `kid`, in ms (default 30 000). */
  jwksCooldownMs?: number
  fetch?: FetchLike
  /** Epoch ms; tests move it to check expiry and token refresh. */
  now?: () => number
}

export interface Portcullis {
  readonly issuer: string
  /**
   * `POST /api-keys/verify` as this service: counts the use against the key's quota and rate
   * limit. Throws PortcullisError only when Portcullis could not give a verdict. One round trip
   * (plus a token request when a client_credentials token is due).
   */
  verifyApiKey(key: string, options?: VerifyApiKeyOptions): Promise<ApiKeyVerification>
  /**
   * Checks an RFC 9068 access token locally against the issuer's JWKS (fetched from discovery,
   * cached, refetched once on an unknown `kid`), then optionally by introspection.
   */
  verifyAccessToken(
    token: string,
    options?: Partial<VerifyAccessTokenOptions>,
  ): Promise<AccessTokenVerification>
}

/** A client bound to one issuer; create it once per isolate/process so its caches are shared. */
export function createPortcullis(options: PortcullisOptions): Portcullis {
  if (!URL.canParse(options.issuer)) {
    throw new PortcullisError('invalid_options', 'issuer must be a URL')
  }
  const issuer = options.issuer.replace(/\/+$/, '')
  const http: HttpContext = {
    fetch: options.fetch ?? ((input, init) => fetch(input, init)),
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  }
  const now = options.now ?? Date.now
  const clockTolerance = options.clockToleranceSeconds ?? 30
  const metadata = cachedDiscovery(http, issuer)
  const caller =
    options.credentials === undefined
      ? undefined
      : new CallerToken(options.credentials, http, async () => (await metadata()).tokenEndpoint, now)

  let jwks: JWTVerifyGetKey | undefined
  const keys = async (): Promise<JWTVerifyGetKey> => {
    if (jwks === undefined) {
      jwks = createRemoteJWKSet(new URL((await metadata()).jwksUri), {
        timeoutDuration: http.timeoutMs,
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        [customFetch]: (url, init) => http.fetch(url, init),
      })
    }
    return jwks
  }

  async function callVerify(
    key: string,
    verifyOptions: VerifyApiKeyOptions,
    retry: boolean,
  ): Promise<ApiKeyVerification> {
    if (caller === undefined) {
      throw new PortcullisError(
        'invalid_options',
        'verifyApiKey needs credentials (bearerToken or clientCredentials)',
      )
    }
    const token = await caller.get()
    const response = await send(http, `${issuer}/api-keys/verify`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        authorization: `Bearer ${token}`,
      },
      body: JSON.stringify(
        verifyOptions.endpoint === undefined ? { key } : { key, endpoint: verifyOptions.endpoint },
      ),
    })
    if (response.status === 401 && retry && caller.renewable) {
      // Our token was revoked or expired early: fetch a new one, once.
      await response.body?.cancel()
      caller.invalidate(token)
      return callVerify(key, verifyOptions, false)
    }
    if (response.status === 400) {
      // The body the SDK builds is well-formed, so a 400 is about the presented key itself (too
      // long, not valid text): the caller's fault, a verdict rather than an error.
      await response.body?.cancel()
      return { valid: false, code: 'MALFORMED', key: null }
    }
    return toApiKeyVerification(await readJson(response, 'verify'))
  }

  async function introspect(token: string): Promise<boolean> {
    const credentials = options.credentials
    const endpoint = (await metadata()).introspectionEndpoint
    if (credentials?.kind !== 'client_credentials' || endpoint === undefined) {
      throw new PortcullisError(
        'invalid_options',
        'introspection needs clientCredentials and an introspection_endpoint',
      )
    }
    const response = await send(http, endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        authorization: basicAuthorization(credentials.clientId, credentials.clientSecret),
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    })
    const body = await readJson(response, 'introspection')
    return isRecord(body) && body.active === true
  }

  return {
    issuer,
    verifyApiKey(key, verifyOptions = {}) {
      return callVerify(key, verifyOptions, true)
    },
    async verifyAccessToken(token, verifyOptions = {}) {
      const audience = verifyOptions.audience ?? options.audience
      if (audience === undefined) {
        throw new PortcullisError('invalid_options', 'verifyAccessToken needs an audience')
      }
      if (verifyOptions.introspect === true && options.credentials?.kind !== 'client_credentials') {
        throw new PortcullisError('invalid_options', 'introspection needs clientCredentials')
      }
      let claims: AccessTokenVerification & { valid: true }
      try {
        // RFC 9068 §4 / oauth4webapi's checks: pinned algorithms, typ at+jwt, iss, aud, exp.
        const { payload } = await jwtVerify(token, await keys(), {
          algorithms: ACCESS_TOKEN_ALGORITHMS,
          issuer,
          audience,
          typ: 'at+jwt',
          requiredClaims: REQUIRED_CLAIMS,
          clockTolerance,
          currentDate: new Date(now()),
        })
        if (!hasClaimTypes(payload)) {
          return { valid: false, code: 'INVALID_CLAIMS' }
        }
        claims = { valid: true, claims: payload, scopes: grantedScopes(payload) }
      } catch (error) {
        const code = failureOf(error)
        if (code === undefined) {
          throw error instanceof PortcullisError
            ? error
            : new PortcullisError('unavailable', 'could not verify the access token', { cause: error })
        }
        return { valid: false, code }
      }
      const missingScopes = (verifyOptions.scopes ?? []).filter((s) => !claims.scopes.includes(s))
      if (missingScopes.length > 0) {
        return { valid: false, code: 'INSUFFICIENT_SCOPE', missingScopes }
      }
      if (verifyOptions.introspect === true && !(await introspect(token))) {
        return { valid: false, code: 'REVOKED' }
      }
      return claims
    },
  }
}
