import type { Bindings } from '../env'

/**
 * Where a provider was configured: the deployment (GITHUB_*, OIDC_PROVIDERS) or a row of
 * identity_providers made through the admin API, owned by the platform (`tenantId` null) or a tenant.
 */
export type ProviderOrigin = { kind: 'config' } | { kind: 'database'; rowId: string; tenantId: string | null }

/** GitHub as an upstream (OAuth App or GitHub App user tokens); every URL configurable. */
export interface GitHubProvider {
  kind: 'github'
  /** `github` for the deployment's; a database provider's slug (GitHub Enterprise, a second app). */
  id: string
  origin: ProviderOrigin
  name: string
  clientId: string
  clientSecret: string
  /** Where /login/oauth/authorize and /login/oauth/access_token live (GITHUB_BASE_URL). */
  webUrl: string
  /** The REST API root for /user, /user/emails, /user/orgs (GITHUB_API_URL). */
  apiUrl: string
}

/** Any OpenID Connect provider, found by discovery from its issuer. */
export interface OidcProvider {
  kind: 'oidc'
  id: string
  origin: ProviderOrigin
  name: string
  issuer: string
  clientId: string
  clientSecret: string
  /** Space-separated; `openid email profile` unless the entry says otherwise. */
  scope: string
}

export type FederatedProvider = GitHubProvider | OidcProvider

export interface FederationConfig {
  providers: readonly FederatedProvider[]
  /** FEDERATION_AUTO_LINK: a verified upstream email joins the existing account with that email. */
  autoLinkVerifiedEmail: boolean
  /**
   * FEDERATION_ALLOWLIST: sign-up by a provider is closed by default: a new account is `pending`
   * unless it matches an entry of /admin/identity-allowlist.
   */
  allowlist: boolean
  /** FEDERATION_TIMEOUT_MS: the deadline of every upstream HTTP call. */
  timeoutMs: number
  /** FEDERATION_STATE_TTL: how long a started sign-in may take to come back. */
  stateTtlSeconds: number
  /**
   * PASSWORD_LOGIN=off: no password sign-in, sign-up or reset (problem `password_login_disabled`);
   * /login shows only the provider buttons.
   */
  passwordLogin: boolean
}

export const NO_FEDERATION: FederationConfig = {
  providers: [],
  autoLinkVerifiedEmail: false,
  allowlist: false,
  timeoutMs: 10_000,
  stateTtlSeconds: 600,
  passwordLogin: true,
}

/** Provider ids appear in paths (`/federated/{id}/start`): short, lower-case, URL-safe. */
export const PROVIDER_ID = /^[a-z0-9][a-z0-9-]{0,31}$/

/** One configuration problem: the variable and why (never its value). */
export interface FederationConfigProblem {
  variable: string
  reason: string
}

function httpUrl(raw: string): boolean {
  return URL.canParse(raw) && /^https?:$/.test(new URL(raw).protocol)
}

/**
 * The providers of GITHUB_CLIENT_ID/GITHUB_CLIENT_SECRET (with GITHUB_BASE_URL and
 * GITHUB_API_URL) and OIDC_PROVIDERS (a JSON list of `{ id, name, issuer, client_id,
 * client_secret, scope? }`). Called by functions/config.ts, which records the problems.
 */
export function parseFederation(
  env: Bindings,
  read: {
    flag(name: string, fallback: boolean): boolean
    integer(name: string, fallback: number, min: number): number
    seconds(name: string, fallback: number): number
    oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T
  },
): { config: FederationConfig; problems: FederationConfigProblem[] } {
  const problems: FederationConfigProblem[] = []
  const value = (name: string): string | undefined => {
    const raw = env[name]?.trim()
    return raw === undefined || raw === '' ? undefined : raw
  }
  const providers: FederatedProvider[] = []
  const githubId = value('GITHUB_CLIENT_ID')
  const githubSecret = value('GITHUB_CLIENT_SECRET')
  if (githubId !== undefined || githubSecret !== undefined) {
    const webUrl = (value('GITHUB_BASE_URL') ?? 'https://github.com').replace(/\/+$/, '')
    const apiUrl = (value('GITHUB_API_URL') ?? 'https://api.github.com').replace(/\/+$/, '')
    if (githubId === undefined || githubSecret === undefined) {
      problems.push({ variable: 'GITHUB_CLIENT_SECRET', reason: 'and GITHUB_CLIENT_ID must be set together' })
    } else if (!httpUrl(webUrl)) {
      problems.push({ variable: 'GITHUB_BASE_URL', reason: 'must be an http(s) URL' })
    } else if (!httpUrl(apiUrl)) {
      problems.push({ variable: 'GITHUB_API_URL', reason: 'must be an http(s) URL' })
    } else {
      providers.push({
        kind: 'github',
        id: 'github',
        origin: { kind: 'config' },
        name: 'GitHub',
        clientId: githubId,
        clientSecret: githubSecret,
        webUrl,
        apiUrl,
      })
    }
  }
  const oidc = value('OIDC_PROVIDERS')
  if (oidc !== undefined) {
    const parsed = parseOidcProviders(oidc)
    if (typeof parsed === 'string') {
      problems.push({ variable: 'OIDC_PROVIDERS', reason: parsed })
    } else if (parsed.some((p) => p.id === 'github' && providers.length > 0)) {
      problems.push({ variable: 'OIDC_PROVIDERS', reason: 'may not reuse the id github' })
    } else {
      providers.push(...parsed)
    }
  }
  return {
    config: {
      providers,
      autoLinkVerifiedEmail: read.flag('FEDERATION_AUTO_LINK', false),
      allowlist: read.flag('FEDERATION_ALLOWLIST', false),
      timeoutMs: read.integer('FEDERATION_TIMEOUT_MS', 10_000, 100),
      stateTtlSeconds: read.seconds('FEDERATION_STATE_TTL', 600),
      passwordLogin: read.oneOf('PASSWORD_LOGIN', ['on', 'off'], 'on') === 'on',
    },
    problems,
  }
}

function parseOidcProviders(raw: string): OidcProvider[] | string {
  let list: unknown
  try {
    list = JSON.parse(raw)
  } catch {
    return 'must be a JSON list'
  }
  if (!Array.isArray(list)) {
    return 'must be a JSON list'
  }
  const seen = new Set<string>()
  const providers: OidcProvider[] = []
  for (const [index, entry] of list.entries()) {
    if (typeof entry !== 'object' || entry === null) {
      return `entry ${index} must be an object`
    }
    const field = (name: string): string | undefined => {
      const v: unknown = (entry as Record<string, unknown>)[name]
      return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined
    }
    const id = field('id')
    const issuer = field('issuer')
    const clientId = field('client_id')
    const clientSecret = field('client_secret')
    if (id === undefined || !PROVIDER_ID.test(id) || seen.has(id)) {
      return `entry ${index}: id must be unique, lower-case letters, digits and dashes`
    }
    if (issuer === undefined || !httpUrl(issuer)) {
      return `entry ${index}: issuer must be an http(s) URL`
    }
    if (clientId === undefined || clientSecret === undefined) {
      return `entry ${index}: client_id and client_secret are required`
    }
    seen.add(id)
    providers.push({
      kind: 'oidc',
      id,
      origin: { kind: 'config' },
      name: field('name') ?? id,
      issuer,
      clientId,
      clientSecret,
      scope: field('scope') ?? 'openid email profile',
    })
  }
  return providers
}
