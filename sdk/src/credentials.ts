import { PortcullisError } from './errors.js'
import { basicAuthorization, type HttpContext, isRecord, readJson, send } from './http.js'

/**
 * How this service authenticates itself to Portcullis when it calls `POST /api-keys/verify`
 * (and, with client credentials, the introspection endpoint).
 */
export type CallerCredentials =
  | { kind: 'bearer'; token: string }
  | { kind: 'client_credentials'; clientId: string; clientSecret: string; scope: string }

/** A long-lived bearer: the admin token, or any token this service manages itself. */
export function bearerToken(token: string): CallerCredentials {
  if (token.trim() === '') {
    throw new PortcullisError('invalid_options', 'bearerToken: the token is empty')
  }
  return { kind: 'bearer', token }
}

/**
 * An admin-created client with `grant_types: ["client_credentials"]` and scope
 * `apikeys:verify` (the default scope requested). The SDK fetches, caches and refreshes its token.
 */
export function clientCredentials(options: {
  clientId: string
  clientSecret: string
  scope?: string
}): CallerCredentials {
  if (options.clientId === '' || options.clientSecret === '') {
    throw new PortcullisError('invalid_options', 'clientCredentials: clientId and clientSecret are required')
  }
  return { kind: 'client_credentials', scope: 'apikeys:verify', ...options }
}

/** Refresh this long before expiry (capped at half the token's lifetime). */
const REFRESH_EARLY_SECONDS = 60

interface CachedToken {
  value: string
  /** Epoch ms after which the token is refreshed. */
  refreshAt: number
}

/**
 * The caller's bearer token: fixed, or a client_credentials token cached until shortly before
 * it expires. Concurrent callers share one token request (single flight); `invalidate` drops a
 * token the server refused so the next call fetches a new one.
 */
export class CallerToken {
  readonly #credentials: CallerCredentials
  readonly #http: HttpContext
  readonly #tokenEndpoint: () => Promise<string>
  readonly #now: () => number
  #cached: CachedToken | undefined
  #inflight: Promise<string> | undefined

  constructor(
    credentials: CallerCredentials,
    http: HttpContext,
    tokenEndpoint: () => Promise<string>,
    now: () => number,
  ) {
    this.#credentials = credentials
    this.#http = http
    this.#tokenEndpoint = tokenEndpoint
    this.#now = now
  }

  get renewable(): boolean {
    return this.#credentials.kind === 'client_credentials'
  }

  async get(): Promise<string> {
    if (this.#credentials.kind === 'bearer') {
      return this.#credentials.token
    }
    const cached = this.#cached
    if (cached !== undefined && this.#now() < cached.refreshAt) {
      return cached.value
    }
    if (this.#inflight === undefined) {
      const request = this.#request(this.#credentials).finally(() => {
        this.#inflight = undefined
      })
      this.#inflight = request
    }
    return this.#inflight
  }

  invalidate(token: string): void {
    if (this.#cached?.value === token) {
      this.#cached = undefined
    }
  }

  async #request(credentials: Extract<CallerCredentials, { kind: 'client_credentials' }>): Promise<string> {
    const requestedAt = this.#now()
    const response = await send(this.#http, await this.#tokenEndpoint(), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        authorization: basicAuthorization(credentials.clientId, credentials.clientSecret),
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: credentials.scope }).toString(),
    })
    if (response.status === 400) {
      // RFC 6749 §5.2: invalid_client may come as 400; either way our own credentials are at fault.
      await response.body?.cancel()
      throw new PortcullisError('caller_unauthorized', 'token endpoint refused the client credentials grant')
    }
    const body = await readJson(response, 'token endpoint')
    if (!isRecord(body) || typeof body.access_token !== 'string' || typeof body.expires_in !== 'number') {
      throw new PortcullisError('unexpected_response', 'token endpoint: access_token or expires_in missing')
    }
    const lifetimeMs = body.expires_in * 1000
    const earlyMs = Math.min(REFRESH_EARLY_SECONDS * 1000, lifetimeMs / 2)
    this.#cached = { value: body.access_token, refreshAt: requestedAt + lifetimeMs - earlyMs }
    return body.access_token
  }
}
