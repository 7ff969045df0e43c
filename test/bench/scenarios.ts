import { TOKEN_EXCHANGE_GRANT } from '../../functions/oauth/client-metadata'
import { ACCESS_TOKEN_TYPE } from '../../functions/oauth/grants/token-exchange'
import type { LoadSpec } from './load'
import {
  type AuthorizedTokens,
  authorizeAndExchange,
  BENCH_PASSWORD,
  basicAuth,
  freshTokens,
  type OurSeed,
  type Outcome,
  peerAuthorizeAndExchange,
  reasonOf,
} from './seed'

/** What a scenario asks of the load generator, minus connections and duration. */
export type RequestShape = Omit<LoadSpec, 'connections' | 'durationSeconds' | 'url'> & { path: string }

export type ScenarioKind = 'floor' | 'ours' | 'peer'

export interface Scenario {
  id: string
  title: string
  kind: ScenarioKind
  /** Builds the request for `connections` connections (rotating-token scenarios mint fresh chains here). */
  shape(connections: number): Promise<Outcome<RequestShape>>
  /** Whether one answer is the success the scenario measures. */
  accepts(status: number, body: string): boolean
  /** Counts round trips only where a database is involved; peers are not counted. */
  countRoundTrips: boolean
  /** Seconds a round lasts at least, by concurrency: slow answers need time to arrive at all. */
  minRoundSeconds?: (connections: number) => number
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }
// Chains minted per run: the last in-flight rotation of a run leaves its chain unusable.
const MINT_PARALLELISM = 8

function json(body: string): Record<string, unknown> {
  try {
    const value = JSON.parse(body) as unknown
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {}
  } catch {
    return {}
  }
}

function fixed(shape: RequestShape): (connections: number) => Promise<Outcome<RequestShape>> {
  return async () => ({ ok: true, value: shape })
}

function unavailable(reason: string): (connections: number) => Promise<Outcome<RequestShape>> {
  return async () => ({ ok: false, reason })
}

/** Why a scenario cannot run: the reason of the first of its inputs that is missing. */
function firstReason(...inputs: Outcome<unknown>[]): string {
  for (const input of inputs) {
    if (!input.ok) {
      return input.reason
    }
  }
  return ''
}

function verifyScenario(
  id: string,
  title: string,
  auth: Outcome<string>,
  keys: Outcome<string[]>,
  code: string,
): Scenario {
  return {
    id,
    title,
    kind: 'ours',
    countRoundTrips: true,
    shape:
      !keys.ok || !auth.ok
        ? unavailable(firstReason(keys, auth))
        : fixed({
            path: '/api-keys/verify',
            method: 'POST',
            headers: { ...JSON_TYPE, authorization: auth.value },
            bodies: keys.value.map((key) => JSON.stringify({ key, endpoint: '/bench' })),
          }),
    accepts: (status, body) => status === 200 && json(body).code === code,
  }
}

export interface OurRuntimeSeed {
  /** `Bearer <client_credentials token>` if the token endpoint works, else the admin token. */
  verifierAuth: Outcome<string>
  accessToken: Outcome<string>
  /** Session cookie of the bench user (for /oauth/authorize). */
  cookie: Outcome<string>
  /** A user access token with `openid` (for userinfo). */
  userTokens: Outcome<AuthorizedTokens>
  /** `Bearer <ADMIN_TOKEN>` (reads any key's usage). */
  adminAuth: string
}

/** One month of one key's usage by day: what `--scale` times at millions of raw rows. */
export function usagePath(keyId: string, now = new Date()): string {
  const from = new Date(now.getTime() - 30 * 86_400_000).toISOString()
  const query = new URLSearchParams({ from, to: now.toISOString(), granularity: 'day' })
  return `/api-keys/${encodeURIComponent(keyId)}/usage?${query}`
}

export function floorScenarios(): Scenario[] {
  return [
    {
      id: 'noop',
      title: 'runtime floor: route that does nothing',
      kind: 'floor',
      countRoundTrips: true,
      shape: fixed({ path: '/__bench/noop', method: 'GET', headers: {} }),
      accepts: (status) => status === 200,
    },
    {
      id: 'select1-http',
      title: 'database floor: SELECT 1, HTTP driver',
      kind: 'floor',
      countRoundTrips: true,
      shape: fixed({ path: '/__bench/select1-http', method: 'GET', headers: {} }),
      accepts: (status) => status === 200,
    },
    {
      id: 'select1-pool',
      title: 'database floor: SELECT 1, per-request WebSocket Pool',
      kind: 'floor',
      countRoundTrips: true,
      shape: fixed({ path: '/__bench/select1-pool', method: 'GET', headers: {} }),
      accepts: (status) => status === 200,
    },
  ]
}

export function ourScenarios(base: string, seed: OurSeed, runtime: OurRuntimeSeed): Scenario[] {
  const malformedKeys: Outcome<string[]> = { ok: true, value: ['pk_test_not-a-real-key'] }
  const unknownKeys: Outcome<string[]> = seed.unknownKey.ok
    ? { ok: true, value: [seed.unknownKey.value] }
    : seed.unknownKey
  const machine = seed.machineClient
  const browser = seed.browserClient
  const exchanger = seed.exchangeClient
  const userTokens = runtime.userTokens
  const cookie = runtime.cookie
  return [
    verifyScenario('verify-valid', 'API-key verify: valid key', runtime.verifierAuth, seed.apiKeys, 'VALID'),
    verifyScenario(
      'verify-unknown',
      'API-key verify: unknown key',
      runtime.verifierAuth,
      unknownKeys,
      'NOT_FOUND',
    ),
    verifyScenario(
      'verify-malformed',
      'API-key verify: malformed key',
      runtime.verifierAuth,
      malformedKeys,
      'MALFORMED',
    ),
    {
      id: 'token-cc',
      title: 'token: client_credentials (ES256 JWT)',
      kind: 'ours',
      countRoundTrips: true,
      shape: !machine.ok
        ? unavailable(machine.reason)
        : fixed({
            path: '/oauth/token',
            method: 'POST',
            headers: {
              ...FORM,
              authorization: basicAuth(machine.value.clientId, machine.value.clientSecret),
            },
            body: 'grant_type=client_credentials&scope=apikeys%3Averify',
          }),
      accepts: (status, body) => status === 200 && typeof json(body).access_token === 'string',
    },
    {
      id: 'token-refresh',
      title: 'token: refresh_token (rotation)',
      kind: 'ours',
      countRoundTrips: true,
      async shape(connections) {
        if (!browser.ok) {
          return browser
        }
        if (!cookie.ok) {
          return cookie
        }
        const minted = await freshTokens(connections, MINT_PARALLELISM, () =>
          authorizeAndExchange(base, browser.value.clientId, cookie.value),
        )
        if (!minted.ok) {
          return minted
        }
        return {
          ok: true,
          value: {
            path: '/oauth/token',
            method: 'POST',
            headers: FORM,
            chain: {
              field: 'refresh_token',
              prefix: `grant_type=refresh_token&client_id=${encodeURIComponent(browser.value.clientId)}`,
              initial: minted.value.map((tokens) => tokens.refreshToken),
            },
          },
        }
      },
      accepts: (status, body) => status === 200 && typeof json(body).refresh_token === 'string',
    },
    {
      id: 'token-exchange',
      title: 'token: token exchange (RFC 8693), the user token re-issued to the exchanger',
      kind: 'ours',
      countRoundTrips: true,
      shape:
        !exchanger.ok || !userTokens.ok
          ? unavailable(firstReason(exchanger, userTokens))
          : fixed({
              path: '/oauth/token',
              method: 'POST',
              headers: {
                ...FORM,
                authorization: basicAuth(exchanger.value.clientId, exchanger.value.clientSecret),
              },
              body: new URLSearchParams({
                grant_type: TOKEN_EXCHANGE_GRANT,
                subject_token_type: ACCESS_TOKEN_TYPE,
                subject_token: userTokens.value.accessToken,
              }).toString(),
            }),
      accepts: (status, body) => status === 200 && typeof json(body).access_token === 'string',
    },
    {
      id: 'introspect',
      title: 'introspection of our JWT',
      kind: 'ours',
      countRoundTrips: true,
      shape:
        !machine.ok || !runtime.accessToken.ok
          ? unavailable(firstReason(machine, runtime.accessToken))
          : fixed({
              path: '/oauth/introspect',
              method: 'POST',
              headers: {
                ...FORM,
                authorization: basicAuth(machine.value.clientId, machine.value.clientSecret),
              },
              body: `token=${encodeURIComponent(runtime.accessToken.value)}`,
            }),
      accepts: (status, body) => status === 200 && json(body).active === true,
    },
    {
      id: 'userinfo',
      title: 'bearer-protected route: GET /oauth/userinfo',
      kind: 'ours',
      countRoundTrips: true,
      shape: !userTokens.ok
        ? unavailable(userTokens.reason)
        : fixed({
            path: '/oauth/userinfo',
            method: 'GET',
            headers: { authorization: `Bearer ${userTokens.value.accessToken}` },
          }),
      accepts: (status, body) => status === 200 && typeof json(body).sub === 'string',
    },
    {
      id: 'usage-read',
      title: 'usage of one key over a month, by day',
      kind: 'ours',
      countRoundTrips: true,
      shape: !seed.usageKeyId.ok
        ? unavailable(seed.usageKeyId.reason)
        : fixed({
            path: usagePath(seed.usageKeyId.value),
            method: 'GET',
            headers: { authorization: runtime.adminAuth },
          }),
      accepts: (status) => status === 200,
    },
    {
      id: 'jwks',
      title: 'JWKS: /.well-known/jwks.json',
      kind: 'ours',
      countRoundTrips: true,
      shape: fixed({ path: '/.well-known/jwks.json', method: 'GET', headers: {} }),
      accepts: (status, body) => status === 200 && Array.isArray(json(body).keys),
    },
    {
      id: 'discovery',
      title: 'discovery: /.well-known/openid-configuration',
      kind: 'ours',
      countRoundTrips: true,
      shape: fixed({ path: '/.well-known/openid-configuration', method: 'GET', headers: {} }),
      accepts: (status, body) => status === 200 && typeof json(body).issuer === 'string',
    },
    {
      id: 'login',
      title: 'login: POST /auth/login (argon2id verify)',
      kind: 'ours',
      countRoundTrips: true,
      // ~10 argon2id hashes/s on 2 cores: at c=50 an answer takes ~5 s.
      minRoundSeconds: (connections) => (connections >= 50 ? 7 : connections >= 10 ? 2 : 0),
      shape: !seed.user.ok
        ? unavailable(seed.user.reason)
        : fixed({
            path: '/auth/login',
            method: 'POST',
            headers: JSON_TYPE,
            body: JSON.stringify({ email: seed.user.value.email, password: BENCH_PASSWORD }),
          }),
      accepts: (status) => status === 200,
    },
  ]
}

/** Peer scenarios on workers-oauth-provider (run on the same runtime as ours). */
export function workersOAuthProviderScenarios(base: string): Scenario[] {
  let bearer: Promise<Outcome<AuthorizedTokens & { clientId: string }>> | undefined
  return [
    {
      id: 'wop-refresh',
      title: 'peer workers-oauth-provider: refresh_token',
      kind: 'peer',
      countRoundTrips: false,
      async shape(connections) {
        const minted: (AuthorizedTokens & { clientId: string })[] = []
        for (let i = 0; i < connections; i++) {
          const one = await peerAuthorizeAndExchange(base)
          if (!one.ok) {
            return one
          }
          minted.push(one.value)
        }
        const clientId = minted[0]?.clientId ?? ''
        return {
          ok: true,
          value: {
            path: '/token',
            method: 'POST',
            headers: FORM,
            chain: {
              field: 'refresh_token',
              prefix: `grant_type=refresh_token&client_id=${encodeURIComponent(clientId)}`,
              initial: minted.map((tokens) => tokens.refreshToken),
            },
          },
        }
      },
      accepts: (status, body) => status === 200 && typeof json(body).refresh_token === 'string',
    },
    {
      id: 'wop-bearer',
      title: 'peer workers-oauth-provider: bearer-protected route',
      kind: 'peer',
      countRoundTrips: false,
      async shape() {
        bearer ??= peerAuthorizeAndExchange(base)
        const tokens = await bearer
        if (!tokens.ok) {
          return tokens
        }
        return {
          ok: true,
          value: {
            path: '/api/hello',
            method: 'GET',
            headers: { authorization: `Bearer ${tokens.value.accessToken}` },
          },
        }
      },
      accepts: (status) => status === 200,
    },
  ]
}

export interface OidcPeer {
  url: string
  clientId: string
  clientSecret: string
  jwtResource: string
  opaqueResource: string
}

/** Peer scenarios on oidc-provider (Node, in-memory adapter). */
export function oidcProviderScenarios(peer: OidcPeer): Scenario[] {
  const authorization = basicAuth(peer.clientId, peer.clientSecret)
  return [
    {
      id: 'oidc-cc',
      title: 'peer oidc-provider: client_credentials (ES256 JWT)',
      kind: 'peer',
      countRoundTrips: false,
      shape: fixed({
        path: '/token',
        method: 'POST',
        headers: { ...FORM, authorization },
        body: `grant_type=client_credentials&scope=api&resource=${encodeURIComponent(peer.jwtResource)}`,
      }),
      accepts: (status, body) => status === 200 && typeof json(body).access_token === 'string',
    },
    {
      id: 'oidc-introspect',
      title: 'peer oidc-provider: introspection (opaque token)',
      kind: 'peer',
      countRoundTrips: false,
      async shape() {
        const res = await fetch(`${peer.url}/token`, {
          method: 'POST',
          headers: { ...FORM, authorization },
          body: `grant_type=client_credentials&scope=api&resource=${encodeURIComponent(peer.opaqueResource)}`,
        })
        const text = await res.text()
        const token = json(text).access_token
        if (res.status !== 200 || typeof token !== 'string') {
          return { ok: false, reason: reasonOf(res.status, text) }
        }
        return {
          ok: true,
          value: {
            path: '/token/introspection',
            method: 'POST',
            headers: { ...FORM, authorization },
            body: `token=${encodeURIComponent(token)}`,
          },
        }
      },
      accepts: (status, body) => status === 200 && json(body).active === true,
    },
  ]
}
