import { createRemoteJWKSet, jwtVerify } from 'jose'
import * as oauth from 'oauth4webapi'
import type { FederatedProvider, GitHubProvider, OidcProvider } from './config'

/**
 * The upstream half of federated sign-in, with panva's oauth4webapi: discovery, PKCE, state,
 * nonce, the code exchange and ID-token validation. No Hono here: typed input, typed outcomes.
 */

/** Who the provider says signed in. `subject` is the key: GitHub's numeric id, or OIDC `sub`. */
export interface UpstreamIdentity {
  subject: string
  /** The verified email (GitHub: the verified primary one); undefined when there is none. */
  email: string | undefined
  username: string | undefined
  name: string | undefined
  /** GitHub organisations the user belongs to (login names); empty for OpenID providers. */
  orgs: readonly string[]
}

/** What the provider's token endpoint gave: kept sealed for `GET /connections/{provider}/token`. */
export interface UpstreamTokens {
  accessToken: string
  refreshToken: string | undefined
  /** Seconds; undefined when the token does not expire (GitHub OAuth Apps). */
  expiresIn: number | undefined
  scope: string | undefined
}

function toTokens(response: oauth.TokenEndpointResponse): UpstreamTokens {
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token,
    expiresIn: response.expires_in,
    scope: response.scope,
  }
}

export type UpstreamOutcome =
  | { kind: 'ok'; identity: UpstreamIdentity; tokens: UpstreamTokens }
  /** The provider sent the user back with `error` (they declined, or it refused the request). */
  | { kind: 'provider_error'; error: string }
  /** GitHub account without a verified primary email. */
  | { kind: 'no_verified_email' }
  /** Timeout, 5xx, malformed answer, a bad ID token: the reason is for the log only. */
  | { kind: 'failed'; reason: string }

export interface FlowSecrets {
  state: string
  codeVerifier: string
  nonce: string
}

/** Loopback upstreams (tests, local development) may be plain http; everything else must be https. */
function isLoopbackUrl(url: string): boolean {
  const host = new URL(url).hostname
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]'
}

function requestOptions(url: string, timeoutMs: number) {
  return {
    signal: AbortSignal.timeout(timeoutMs),
    ...(isLoopbackUrl(url) ? { [oauth.allowInsecureRequests]: true } : {}),
  }
}

const DISCOVERY_TTL_MS = 3_600_000
/** Discovery documents per issuer, per isolate, for an hour. */
const discovered = new Map<string, { as: oauth.AuthorizationServer; until: number }>()
/** JWKS fetchers per jwks_uri (jose caches and refreshes the keys itself). */
const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>()

function githubServer(provider: GitHubProvider): oauth.AuthorizationServer {
  return {
    issuer: provider.webUrl,
    authorization_endpoint: `${provider.webUrl}/login/oauth/authorize`,
    token_endpoint: `${provider.webUrl}/login/oauth/access_token`,
  }
}

async function oidcServer(provider: OidcProvider, timeoutMs: number): Promise<oauth.AuthorizationServer> {
  const cached = discovered.get(provider.issuer)
  if (cached !== undefined && cached.until > Date.now()) {
    return cached.as
  }
  const issuer = new URL(provider.issuer)
  const response = await oauth.discoveryRequest(issuer, {
    algorithm: 'oidc',
    ...requestOptions(provider.issuer, timeoutMs),
  })
  const as = await oauth.processDiscoveryResponse(issuer, response)
  discovered.set(provider.issuer, { as, until: Date.now() + DISCOVERY_TTL_MS })
  return as
}

async function serverFor(provider: FederatedProvider, timeoutMs: number): Promise<oauth.AuthorizationServer> {
  return provider.kind === 'github' ? githubServer(provider) : oidcServer(provider, timeoutMs)
}

/** The upstream authorization URL: state, PKCE S256, and (OIDC) a nonce. */
export async function authorizationUrl(
  provider: FederatedProvider,
  redirectUri: string,
  secrets: FlowSecrets,
  timeoutMs: number,
): Promise<URL> {
  const as = await serverFor(provider, timeoutMs)
  if (as.authorization_endpoint === undefined) {
    throw new Error(`provider ${provider.id} has no authorization_endpoint`)
  }
  const url = new URL(as.authorization_endpoint)
  url.searchParams.set('client_id', provider.clientId)
  url.searchParams.set('redirect_uri', redirectUri)
  url.searchParams.set('response_type', 'code')
  url.searchParams.set('state', secrets.state)
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(secrets.codeVerifier))
  url.searchParams.set('code_challenge_method', 'S256')
  if (provider.kind === 'github') {
    url.searchParams.set('scope', 'read:user user:email read:org')
    url.searchParams.set('allow_signup', 'true')
  } else {
    url.searchParams.set('scope', provider.scope)
    url.searchParams.set('nonce', secrets.nonce)
  }
  return url
}

function failure(error: unknown): UpstreamOutcome {
  if (error instanceof oauth.AuthorizationResponseError) {
    return { kind: 'provider_error', error: error.error }
  }
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return { kind: 'failed', reason: 'timeout' }
  }
  if (error instanceof oauth.ResponseBodyError) {
    return { kind: 'failed', reason: `token_endpoint_${error.status}_${error.error}` }
  }
  const code = error instanceof Error && 'code' in error ? String(error.code) : undefined
  const name = error instanceof Error ? error.name : 'unknown'
  return { kind: 'failed', reason: code === undefined ? name : `${name}:${code}` }
}

/**
 * Completes the upstream side of a callback: checks the authorization response (an `error` from
 * the provider, the state), exchanges the code with the PKCE verifier, and reads the identity.
 * Never throws for the provider's failures: they come back as outcomes.
 */
export async function completeUpstream(
  provider: FederatedProvider,
  callback: URL,
  redirectUri: string,
  secrets: FlowSecrets,
  timeoutMs: number,
): Promise<UpstreamOutcome> {
  try {
    const as = await serverFor(provider, timeoutMs)
    const client: oauth.Client = { client_id: provider.clientId }
    const params = oauth.validateAuthResponse(as, client, callback.searchParams, secrets.state)
    const tokenResponse = await oauth.authorizationCodeGrantRequest(
      as,
      client,
      oauth.ClientSecretPost(provider.clientSecret),
      params,
      redirectUri,
      secrets.codeVerifier,
      requestOptions(as.token_endpoint ?? redirectUri, timeoutMs),
    )
    if (provider.kind === 'github') {
      const tokens = await oauth.processAuthorizationCodeResponse(as, client, tokenResponse)
      return withTokens(await githubIdentity(provider, tokens.access_token, timeoutMs), tokens)
    }
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, tokenResponse, {
      expectedNonce: secrets.nonce,
      requireIdToken: true,
    })
    return withTokens(await oidcIdentity(provider, as, client, tokens, timeoutMs), tokens)
  } catch (error) {
    return failure(error)
  }
}

type IdentityOutcome = Exclude<UpstreamOutcome, { kind: 'ok' }> | { kind: 'ok'; identity: UpstreamIdentity }

function withTokens(outcome: IdentityOutcome, tokens: oauth.TokenEndpointResponse): UpstreamOutcome {
  return outcome.kind === 'ok' ? { ...outcome, tokens: toTokens(tokens) } : outcome
}

export type RefreshOutcome =
  | { kind: 'ok'; tokens: UpstreamTokens }
  /** The provider answered the refresh with an OAuth error (invalid_grant...): the link is broken. */
  | { kind: 'refused'; error: string }
  | { kind: 'failed'; reason: string }

/** One refresh_token grant at the provider. */
export async function refreshUpstream(
  provider: FederatedProvider,
  refreshToken: string,
  timeoutMs: number,
): Promise<RefreshOutcome> {
  try {
    const as = await serverFor(provider, timeoutMs)
    const client: oauth.Client = { client_id: provider.clientId }
    const response = await oauth.refreshTokenGrantRequest(
      as,
      client,
      oauth.ClientSecretPost(provider.clientSecret),
      refreshToken,
      requestOptions(as.token_endpoint ?? provider.clientId, timeoutMs),
    )
    const tokens = await oauth.processRefreshTokenResponse(as, client, response)
    return { kind: 'ok', tokens: toTokens(tokens) }
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError && error.status >= 400 && error.status < 500) {
      return { kind: 'refused', error: error.error }
    }
    const outcome = failure(error)
    return outcome.kind === 'failed' ? outcome : { kind: 'failed', reason: outcome.kind }
  }
}

async function githubGet(provider: GitHubProvider, accessToken: string, path: string, timeoutMs: number) {
  const url = `${provider.apiUrl}${path}`
  const response = await oauth.protectedResourceRequest(
    accessToken,
    'GET',
    new URL(url),
    new Headers({ accept: 'application/vnd.github+json', 'user-agent': 'Portcullis' }),
    null,
    requestOptions(url, timeoutMs),
  )
  if (!response.ok) {
    throw new Error(`github ${path} answered ${response.status}`)
  }
  return (await response.json()) as unknown
}

interface GitHubUser {
  id: number
  login?: string
  name?: string | null
}

interface GitHubEmail {
  email: string
  primary: boolean
  verified: boolean
}

async function githubIdentity(
  provider: GitHubProvider,
  accessToken: string,
  timeoutMs: number,
): Promise<IdentityOutcome> {
  const [user, emails, orgs] = await Promise.all([
    githubGet(provider, accessToken, '/user', timeoutMs),
    githubGet(provider, accessToken, '/user/emails', timeoutMs),
    // Only the allowlist reads organisations: a refusal (no read:org grant) is no organisation.
    githubGet(provider, accessToken, '/user/orgs', timeoutMs).catch(() => []),
  ])
  const profile = user as Partial<GitHubUser>
  if (typeof profile.id !== 'number' || !Number.isSafeInteger(profile.id)) {
    return { kind: 'failed', reason: 'github_user_without_numeric_id' }
  }
  const primary = Array.isArray(emails)
    ? (emails as Partial<GitHubEmail>[]).find((e) => e.primary === true && e.verified === true)
    : undefined
  if (primary === undefined || typeof primary.email !== 'string') {
    return { kind: 'no_verified_email' }
  }
  return {
    kind: 'ok',
    identity: {
      subject: String(profile.id),
      email: primary.email,
      username: typeof profile.login === 'string' ? profile.login : undefined,
      name: typeof profile.name === 'string' ? profile.name : undefined,
      orgs: Array.isArray(orgs)
        ? (orgs as { login?: unknown }[]).flatMap((o) => (typeof o.login === 'string' ? [o.login] : []))
        : [],
    },
  }
}

async function oidcIdentity(
  provider: OidcProvider,
  as: oauth.AuthorizationServer,
  client: oauth.Client,
  tokens: oauth.TokenEndpointResponse,
  timeoutMs: number,
): Promise<IdentityOutcome> {
  const claims = oauth.getValidatedIdTokenClaims(tokens)
  if (claims === undefined || tokens.id_token === undefined || as.jwks_uri === undefined) {
    return { kind: 'failed', reason: 'id_token_missing' }
  }
  // oauth4webapi checked iss, aud, exp and nonce; the signature is checked here against the
  // provider's JWKS (a code-flow ID token over TLS may skip it, but we do not).
  let keys = keySets.get(as.jwks_uri)
  if (keys === undefined) {
    keys = createRemoteJWKSet(new URL(as.jwks_uri), { timeoutDuration: timeoutMs })
    keySets.set(as.jwks_uri, keys)
  }
  await jwtVerify(tokens.id_token, keys, { issuer: as.issuer, audience: provider.clientId })
  let merged: Record<string, unknown> = { ...claims }
  if (as.userinfo_endpoint !== undefined) {
    const response = await oauth.userInfoRequest(
      as,
      client,
      tokens.access_token,
      requestOptions(as.userinfo_endpoint, timeoutMs),
    )
    merged = { ...merged, ...(await oauth.processUserInfoResponse(as, client, claims.sub, response)) }
  }
  const email = typeof merged.email === 'string' && merged.email_verified === true ? merged.email : undefined
  const username = merged.preferred_username
  return {
    kind: 'ok',
    identity: {
      subject: claims.sub,
      email,
      username: typeof username === 'string' ? username : undefined,
      name: typeof merged.name === 'string' ? merged.name : undefined,
      orgs: [],
    },
  }
}
