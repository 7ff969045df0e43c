import {
  API_KEY_TIERS,
  type ApiKeyTier,
  SIGNING_ALGORITHMS,
  type SigningAlgorithm,
  TENANT_PLANS,
  type TenantPlan,
} from '../db/schema/constants'
import { type Brand, parseBrand } from './brand'
import { fromBase64Url } from './crypto/encoding'
import type { Bindings } from './env'
import { type FederationConfig, parseFederation } from './federation/config'

export const BUILTIN_SCOPES = [
  'openid',
  'profile',
  'email',
  'offline_access',
  'apikeys:write',
  'apikeys:verify',
  'admin',
  'tenant:admin',
  'connections:read',
] as const

export interface MasterKey {
  id: string
  /** 32 raw bytes for AES-256-GCM. */
  bytes: Uint8Array
}

export interface Argon2Params {
  memoryKib: number
  iterations: number
  parallelism: number
}

/** Typed, validated configuration. Durations are in seconds unless the name says otherwise. */
export interface Config {
  /** Public base URL without a trailing slash; the `iss` of every token. */
  issuer: string
  databaseUrl: string
  dbGatewayUrl: string | undefined
  /** Deadline of every database call (statement, batch, interactive transaction); past it, 503. */
  dbTimeoutMs: number
  /** The first key encrypts; every key listed can decrypt (rotation). */
  masterKeys: readonly [MasterKey, ...MasterKey[]]
  adminToken: string
  apiKeyEnv: 'live' | 'test'
  defaultAudience: string | undefined
  scopesSupported: readonly string[]
  /** JWS algorithm of access tokens (ES256 unless ACCESS_TOKEN_ALG says EdDSA or RS256). */
  accessTokenAlg: SigningAlgorithm
  accessTokenTtlSeconds: number
  refreshTokenTtlSeconds: number
  authCodeTtlSeconds: number
  sessionTtlSeconds: number
  rememberTtlSeconds: number
  passwordResetTtlSeconds: number
  emailVerificationTtlSeconds: number
  deviceCodeTtlSeconds: number
  requireApproval: boolean
  /**
   * REQUIRE_TWO_FACTOR (issue 14): every sign-in needs a second factor; a user without one is sent
   * to enrol before any session, and an older one-factor session is sent to sign in again before
   * any authorization.
   */
  requireTwoFactor: boolean
  /**
   * OUTBOUND_ALLOW_LOOPBACK: fetches of client-named URLs (metadata documents, jwks_uri) may reach
   * loopback addresses, over http too (functions/outbound/public-fetch.ts). Development only.
   */
  outboundAllowLoopback: boolean
  /**
   * Client ID Metadata Documents (issue 11): CLIENT_METADATA_DOCUMENTS turns them off;
   * CLIENT_METADATA_TRUSTED_PREFIXES (space-separated URL prefixes) limits which are accepted.
   */
  clientMetadataDocuments: { enabled: boolean; trustedPrefixes: readonly string[] }
  /** TENANT_SELF_SERVICE: any signed-in user may create a tenant (and becomes its owner). */
  tenantSelfService: boolean
  /** REQUIRE_PUSHED_AUTHORIZATION_REQUESTS: every client must push its request first (RFC 9126 §5). */
  requirePushedAuthorizationRequests: boolean
  /** DPOP_REQUIRE_NONCE: DPoP proofs must carry a server nonce (RFC 9449 §8, §9). */
  dpopNonceRequired: boolean
  /** TENANT_INVITATION_TTL: how long an invitation link works. */
  invitationTtlSeconds: number
  requireEmailVerification: boolean
  registrationPolicy: 'open' | 'token'
  /** Anonymous (no initial access token) client registrations allowed per IP per window. */
  registrationMaxPerIp: number
  registrationWindowSeconds: number
  /** Grant types an anonymous registration may ask for (client_credentials is not among the defaults). */
  anonymousRegistrationGrantTypes: readonly string[]
  loginMaxFailuresPerAccount: number
  loginMaxFailuresPerIp: number
  loginFailureWindowSeconds: number
  /** POST /auth/register attempts per IP per window (SIGNUP_MAX_PER_IP, SIGNUP_WINDOW). */
  signupMaxPerIp: number
  signupWindowSeconds: number
  /** Device user-code entries (RFC 8628 §5.1) per user and per IP per window. */
  deviceMaxAttemptsPerUser: number
  deviceMaxAttemptsPerIp: number
  deviceAttemptWindowSeconds: number
  /**
   * Lower-case name of the header carrying the client's address (TRUSTED_IP_HEADER, default
   * `cf-connecting-ip`); undefined (`none`) trusts no header and records no address.
   */
  trustedIpHeader: string | undefined
  defaultApiKeyTier: ApiKeyTier
  /** Monthly verify quota per tier; null is unlimited. */
  tierQuotas: Readonly<Record<ApiKeyTier, number | null>>
  /**
   * TENANT_MONTHLY_QUOTAS: the monthly verify quota all of a tenant's keys share, per plan; null
   * (the default for every plan) is none. A tenant's own `monthly_quota` overrides it.
   */
  tenantMonthlyQuotas: Readonly<Record<TenantPlan, number | null>>
  /** Hourly usage counters (what `/api-keys/{id}/usage` reads) are purged after this many days. */
  usageRetentionDays: number
  /**
   * USAGE_DETAIL_RETENTION_DAYS: raw usage rows (one per verify) are purged after this many days;
   * 0 writes none at all. Defaults to USAGE_RETENTION_DAYS.
   */
  usageDetailRetentionDays: number
  auditRetentionDays: number
  argon2: Argon2Params
  /** Most requests that may wait for a password hash at once per isolate (beyond: 503). */
  argon2MaxQueue: number
  /** Where account mail goes (MAIL_PROVIDER); `log` only works for a loopback issuer. */
  mail: MailConfig
  mailFrom: string
  /** Federated sign-in (issue 13): GITHUB_*, OIDC_PROVIDERS, FEDERATION_*. */
  federation: FederationConfig
  /** Product name, logo, accent colour and support address on pages and in mail (issue 14). */
  brand: Brand
}

export const MAIL_PROVIDERS = ['webhook', 'resend', 'log'] as const

/** How mail leaves: a signed webhook POST, Resend's HTTP API, or the log (development only). */
export type MailConfig =
  | {
      provider: 'webhook'
      url: string /** HMAC-SHA256 key of `Portcullis-Signature`. */
      secret: string | undefined
    }
  | { provider: 'resend'; apiKey: string; baseUrl: string }
  | { provider: 'log' }

const RESEND_DEFAULT_BASE_URL = 'https://api.resend.com'
const MAIL_WEBHOOK_SECRET_MIN_LENGTH = 32

/** True for localhost, 127.0.0.1, [::1] and *.localhost: the only issuers that may log mail. */
export function isLoopbackIssuer(issuer: string): boolean {
  const host = new URL(issuer).hostname
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host.endsWith('.localhost')
}

/** A configuration variable that is missing or invalid; names the variable, never its value. */
export class ConfigError extends Error {
  override name = 'ConfigError'
  readonly code = 'invalid_config'
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`${variable} ${reason}`)
  }
}

/** Every problem with the configuration at once; `variable` is the first one's. */
export class InvalidConfigError extends ConfigError {
  override name = 'InvalidConfigError'
  constructor(readonly problems: readonly [ConfigError, ...ConfigError[]]) {
    super(problems[0].variable, problems[0].message.slice(problems[0].variable.length + 1))
    this.message = problems.map((p) => p.message).join('; ')
  }
}

const cache = new WeakMap<object, Config | ConfigError>()

/**
 * Parses and validates the bindings once per isolate (cached per bindings object); throws
 * the same ConfigError on every request while the configuration stays wrong.
 */
export function loadConfig(env: Bindings): Config {
  let entry = cache.get(env)
  if (entry === undefined) {
    try {
      entry = parseConfig(env)
    } catch (error) {
      if (!(error instanceof ConfigError)) {
        throw error
      }
      entry = error
    }
    cache.set(env, entry)
  }
  if (entry instanceof ConfigError) {
    throw entry
  }
  return entry
}

/** The typed configuration; throws InvalidConfigError listing every problem at once. */
export function parseConfig(env: Bindings): Config {
  const problems: ConfigError[] = []
  const config = readConfig(env, problems)
  const [first, ...rest] = problems
  if (first !== undefined) {
    throw new InvalidConfigError([first, ...rest])
  }
  return config
}

export interface ConfigReport {
  /** What stops the service (or a deployment) from working: each variable once. */
  problems: ConfigError[]
  /** Allowed, but rarely what a public deployment wants. */
  warnings: ConfigError[]
}

// The documentation's reserved domains (RFC 2606), left in wrangler.toml's production section.
const PLACEHOLDER_DOMAIN = /(^|\.)example\.(com|org|net)$/

// A Workers isolate has 128 MB; an argon2id core needs m KiB of it on top of the Worker's own.
const ARGON2_MEMORY_KIB_WORKERS_MAX = 65_536

/**
 * The config check of `npm start` and `npm run check`: every parse problem at once, plus what a
 * public deployment needs (an https issuer, argon2 memory that fits an isolate) and warnings for
 * development defaults left in place. Never includes a value, only variable names.
 */
export function checkConfig(env: Bindings): ConfigReport {
  const problems: ConfigError[] = []
  const warnings: ConfigError[] = []
  const config = readConfig(env, problems)
  const publicIssuer = URL.canParse(config.issuer) && !isLoopbackIssuer(config.issuer)
  if (publicIssuer && new URL(config.issuer).protocol !== 'https:') {
    problems.push(
      new ConfigError('ISSUER', 'must be an https URL unless it is a loopback address (OAuth 2.1 §1.5)'),
    )
  }
  if (publicIssuer && PLACEHOLDER_DOMAIN.test(new URL(config.issuer).hostname)) {
    problems.push(new ConfigError('ISSUER', 'is still the example.com placeholder: set your public URL'))
  }
  // A provider refuses (or a receiver drops) mail from a domain that is not yours.
  const mailFromDomain = /@([^\s@>]+)>?\s*$/.exec(config.mailFrom)?.[1]?.toLowerCase()
  if (publicIssuer && mailFromDomain !== undefined && PLACEHOLDER_DOMAIN.test(mailFromDomain)) {
    problems.push(
      new ConfigError(
        'MAIL_FROM',
        'is still the example.com placeholder: use an address of your sending domain',
      ),
    )
  }
  if (config.argon2.memoryKib > ARGON2_MEMORY_KIB_WORKERS_MAX) {
    problems.push(
      new ConfigError(
        'ARGON2_MEMORY_KIB',
        `must be at most ${ARGON2_MEMORY_KIB_WORKERS_MAX} to fit a Workers isolate (128 MB)`,
      ),
    )
  }
  if (publicIssuer && config.apiKeyEnv === 'test') {
    warnings.push(
      new ConfigError('API_KEY_ENV', 'is test: keys read pk_test_…; production keys should be live'),
    )
  }
  if (publicIssuer && config.outboundAllowLoopback) {
    problems.push(
      new ConfigError(
        'OUTBOUND_ALLOW_LOOPBACK',
        'must be false for a public issuer: clients could aim fetches at loopback',
      ),
    )
  }
  if (publicIssuer && config.dbGatewayUrl !== undefined) {
    warnings.push(new ConfigError('DB_GATEWAY_URL', 'is set: it is meant for the local gateway only'))
  }
  if (publicIssuer && config.registrationPolicy === 'open') {
    warnings.push(
      new ConfigError(
        'REGISTRATION_POLICY',
        'is open: anyone may register OAuth clients (MCP clients need this)',
      ),
    )
  }
  return { problems, warnings }
}

function readConfig(env: Bindings, problems: ConfigError[]): Config {
  const read = reader(env, problems)
  // A parser outside the reader throws; its problem is recorded and a placeholder stands in.
  const attempt = <T>(parse: () => T, fallback: T): T => {
    try {
      return parse()
    } catch (error) {
      if (!(error instanceof ConfigError)) {
        throw error
      }
      record(problems, error)
      return fallback
    }
  }
  const issuer = read.url('ISSUER', 'http://127.0.0.1:8787').replace(/\/+$/, '')
  const usageRetentionDays = read.integer('USAGE_RETENTION_DAYS', 90, 1)
  return {
    issuer,
    databaseUrl: read.postgresUrl('DATABASE_URL'),
    dbGatewayUrl: read.optionalUrl('DB_GATEWAY_URL'),
    dbTimeoutMs: read.integer('DB_TIMEOUT_MS', 5_000, 100),
    masterKeys: attempt(() => parseMasterKeys(read.secret('MASTER_KEY')), PLACEHOLDER_MASTER_KEYS),
    adminToken: read.secret('ADMIN_TOKEN', 32),
    apiKeyEnv: read.oneOf('API_KEY_ENV', ['live', 'test'] as const, 'test'),
    defaultAudience: read.optionalUrl('DEFAULT_AUDIENCE'),
    scopesSupported: [...new Set([...BUILTIN_SCOPES, ...read.scopes('SCOPES')])],
    accessTokenAlg: read.oneOf('ACCESS_TOKEN_ALG', SIGNING_ALGORITHMS, 'ES256'),
    accessTokenTtlSeconds: read.seconds('ACCESS_TOKEN_TTL', 3600),
    refreshTokenTtlSeconds: read.seconds('REFRESH_TOKEN_TTL', 2_592_000),
    authCodeTtlSeconds: read.seconds('AUTH_CODE_TTL', 600),
    sessionTtlSeconds: read.seconds('SESSION_TTL', 7200),
    rememberTtlSeconds: read.seconds('REMEMBER_TTL', 2_592_000),
    passwordResetTtlSeconds: read.seconds('PASSWORD_RESET_TTL', 3600),
    emailVerificationTtlSeconds: read.seconds('EMAIL_VERIFICATION_TTL', 86_400),
    deviceCodeTtlSeconds: read.seconds('DEVICE_CODE_TTL', 600),
    requireApproval: read.flag('REQUIRE_APPROVAL', false),
    requireTwoFactor: read.flag('REQUIRE_TWO_FACTOR', false),
    outboundAllowLoopback: read.flag('OUTBOUND_ALLOW_LOOPBACK', false),
    clientMetadataDocuments: {
      enabled: read.flag('CLIENT_METADATA_DOCUMENTS', true),
      trustedPrefixes: attempt(() => parseTrustedPrefixes(env.CLIENT_METADATA_TRUSTED_PREFIXES), []),
    },
    tenantSelfService: read.flag('TENANT_SELF_SERVICE', false),
    requirePushedAuthorizationRequests: read.flag('REQUIRE_PUSHED_AUTHORIZATION_REQUESTS', false),
    dpopNonceRequired: read.flag('DPOP_REQUIRE_NONCE', false),
    invitationTtlSeconds: read.seconds('TENANT_INVITATION_TTL', 7 * 86_400),
    requireEmailVerification: read.flag('REQUIRE_EMAIL_VERIFICATION', false),
    registrationPolicy: read.oneOf('REGISTRATION_POLICY', ['open', 'token'] as const, 'open'),
    registrationMaxPerIp: read.integer('REGISTRATION_MAX_PER_IP', 20, 1),
    registrationWindowSeconds: read.seconds('REGISTRATION_WINDOW', 3600),
    anonymousRegistrationGrantTypes: attempt(
      () => parseAnonymousGrantTypes(env.REGISTRATION_ANONYMOUS_GRANT_TYPES),
      [],
    ),
    loginMaxFailuresPerAccount: read.integer('LOGIN_MAX_FAILURES_PER_ACCOUNT', 5, 1),
    loginMaxFailuresPerIp: read.integer('LOGIN_MAX_FAILURES_PER_IP', 50, 1),
    loginFailureWindowSeconds: read.seconds('LOGIN_FAILURE_WINDOW', 900),
    signupMaxPerIp: read.integer('SIGNUP_MAX_PER_IP', 10, 1),
    signupWindowSeconds: read.seconds('SIGNUP_WINDOW', 3600),
    deviceMaxAttemptsPerUser: read.integer('DEVICE_MAX_ATTEMPTS_PER_USER', 10, 1),
    deviceMaxAttemptsPerIp: read.integer('DEVICE_MAX_ATTEMPTS_PER_IP', 50, 1),
    deviceAttemptWindowSeconds: read.seconds('DEVICE_ATTEMPT_WINDOW', 900),
    trustedIpHeader: attempt(() => parseTrustedIpHeader(env.TRUSTED_IP_HEADER), undefined),
    defaultApiKeyTier: read.oneOf('DEFAULT_API_KEY_TIER', API_KEY_TIERS, 'trial'),
    tierQuotas: attempt(
      () => parseQuotas('TIER_QUOTAS', API_KEY_TIERS, DEFAULT_TIER_QUOTAS, env.TIER_QUOTAS),
      DEFAULT_TIER_QUOTAS,
    ),
    tenantMonthlyQuotas: attempt(
      () => parseQuotas('TENANT_MONTHLY_QUOTAS', TENANT_PLANS, NO_TENANT_QUOTAS, env.TENANT_MONTHLY_QUOTAS),
      NO_TENANT_QUOTAS,
    ),
    usageRetentionDays,
    usageDetailRetentionDays: read.integer('USAGE_DETAIL_RETENTION_DAYS', usageRetentionDays, 0),
    auditRetentionDays: read.integer('AUDIT_RETENTION_DAYS', 365, 1),
    argon2: {
      memoryKib: read.integer('ARGON2_MEMORY_KIB', 19_456, 8),
      iterations: read.integer('ARGON2_ITERATIONS', 2, 1),
      parallelism: read.integer('ARGON2_PARALLELISM', 1, 1),
    },
    argon2MaxQueue: read.integer('ARGON2_MAX_QUEUE', 16, 1),
    mail: attempt(() => parseMail(read, issuer), { provider: 'log' }),
    mailFrom: env.MAIL_FROM?.trim() || 'Portcullis <no-reply@localhost>',
    federation: federation(env, read, problems),
    brand: parseBrand(
      (name) => env[name]?.trim() || undefined,
      (variable, reason) => record(problems, new ConfigError(variable, reason)),
    ),
  }
}

function federation(
  env: Bindings,
  read: ReturnType<typeof reader>,
  problems: ConfigError[],
): FederationConfig {
  const parsed = parseFederation(env, read)
  for (const problem of parsed.problems) {
    record(problems, new ConfigError(problem.variable, problem.reason))
  }
  return parsed.config
}

const REGISTRABLE_GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'urn:ietf:params:oauth:grant-type:device_code',
  'urn:ietf:params:oauth:grant-type:token-exchange',
] as const

/** CLIENT_METADATA_TRUSTED_PREFIXES: https URL prefixes (with a path) a metadata document must start with. */
function parseTrustedPrefixes(raw: string | undefined): readonly string[] {
  const prefixes = (raw ?? '').split(/\s+/).filter(Boolean)
  const bad = prefixes.find((p) => !URL.canParse(p) || !/^https?:\/\/[^/]+\//i.test(p))
  if (bad !== undefined) {
    throw new ConfigError('CLIENT_METADATA_TRUSTED_PREFIXES', `${bad} is not a URL prefix with a path`)
  }
  return prefixes
}

/**
 * REGISTRATION_ANONYMOUS_GRANT_TYPES: space- or comma-separated grant types. By default an
 * anonymous client may not take client_credentials (a machine identity nobody vouched for).
 */
function parseAnonymousGrantTypes(raw: string | undefined): readonly string[] {
  const text = raw?.trim()
  if (text === undefined || text === '') {
    // Token exchange lets a client act for users whose tokens reach it: never anonymous by default.
    return REGISTRABLE_GRANT_TYPES.filter(
      (g) => g !== 'client_credentials' && g !== 'urn:ietf:params:oauth:grant-type:token-exchange',
    )
  }
  const grants = [...new Set(text.split(/[\s,]+/).filter(Boolean))]
  if (grants.some((g) => !(REGISTRABLE_GRANT_TYPES as readonly string[]).includes(g))) {
    throw new ConfigError(
      'REGISTRATION_ANONYMOUS_GRANT_TYPES',
      `must list grant types among ${REGISTRABLE_GRANT_TYPES.join(', ')}`,
    )
  }
  return grants
}

// Stands in for an unusable MASTER_KEY while the other variables are checked; never returned.
const PLACEHOLDER_MASTER_KEYS: readonly [MasterKey] = [{ id: 'k1', bytes: new Uint8Array(32) }]

/** Records a problem once per variable (a missing secret is not also reported as malformed). */
function record(problems: ConfigError[], error: ConfigError): void {
  if (!problems.some((p) => p.variable === error.variable)) {
    problems.push(error)
  }
}

/** Typed reads of the raw bindings; a bad value is recorded in `problems` and its fallback used. */
function reader(env: Bindings, problems: ConfigError[]) {
  const value = (name: string): string | undefined => {
    const raw = env[name]?.trim()
    return raw === undefined || raw === '' ? undefined : raw
  }
  const fail = <T>(name: string, reason: string, fallback: T): T => {
    record(problems, new ConfigError(name, reason))
    return fallback
  }
  return {
    secret(name: string, minLength = 1): string {
      const raw = value(name)
      if (raw === undefined) {
        return fail(name, 'is required (a secret: wrangler secret put, or .dev.vars locally)', '')
      }
      if (raw.length < minLength) {
        return fail(name, `must be at least ${minLength} characters`, raw)
      }
      return raw
    },
    optionalSecret(name: string, minLength = 1): string | undefined {
      return value(name) === undefined ? undefined : this.secret(name, minLength)
    },
    postgresUrl(name: string): string {
      const raw = this.secret(name)
      if (!/^postgres(ql)?:\/\//.test(raw) || !URL.canParse(raw)) {
        return fail(name, 'must be a postgres:// connection string', raw)
      }
      return raw
    },
    url(name: string, fallback: string): string {
      return this.optionalUrl(name) ?? fallback
    },
    optionalUrl(name: string): string | undefined {
      const raw = value(name)
      if (raw === undefined) {
        return undefined
      }
      if (!URL.canParse(raw) || !/^https?:$/.test(new URL(raw).protocol)) {
        return fail(name, 'must be an http(s) URL', undefined)
      }
      return raw
    },
    integer(name: string, fallback: number, min: number): number {
      const raw = value(name)
      if (raw === undefined) {
        return fallback
      }
      if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw))) {
        return fail(name, `must be an integer >= ${min}`, fallback)
      }
      return Number(raw)
    },
    seconds(name: string, fallback: number): number {
      return this.integer(name, fallback, 1)
    },
    flag(name: string, fallback: boolean): boolean {
      const raw = value(name)?.toLowerCase()
      if (raw === undefined) {
        return fallback
      }
      if (raw === 'true' || raw === '1') {
        return true
      }
      if (raw === 'false' || raw === '0') {
        return false
      }
      return fail(name, 'must be true or false', fallback)
    },
    oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
      const raw = value(name)
      if (raw === undefined) {
        return fallback
      }
      const found = allowed.find((a) => a === raw)
      if (found === undefined) {
        return fail(name, `must be one of ${allowed.join(', ')}`, fallback)
      }
      return found
    },
    scopes(name: string): string[] {
      const raw = value(name)
      if (raw === undefined) {
        return []
      }
      const scopes = raw.split(/[\s,]+/).filter(Boolean)
      // RFC 6749 §3.3 scope-token: printable ASCII except space, quote and backslash.
      if (scopes.some((s) => !/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))) {
        return fail(name, 'must be a space-separated list of RFC 6749 scope tokens', [])
      }
      return scopes
    },
  }
}

/**
 * MAIL_PROVIDER, or inferred: webhook when MAIL_WEBHOOK_URL is set, resend when RESEND_API_KEY
 * is, else log. A non-loopback issuer must deliver mail (issue 12: it was silently dropped), and
 * its webhook must be signed.
 */
function parseMail(read: ReturnType<typeof reader>, issuer: string): MailConfig {
  const url = read.optionalUrl('MAIL_WEBHOOK_URL')
  const apiKey = read.optionalSecret('RESEND_API_KEY')
  const inferred = url !== undefined ? 'webhook' : apiKey !== undefined ? 'resend' : 'log'
  const provider = read.oneOf('MAIL_PROVIDER', MAIL_PROVIDERS, inferred)
  const loopback = isLoopbackIssuer(issuer)
  switch (provider) {
    case 'webhook': {
      if (url === undefined) {
        throw new ConfigError('MAIL_WEBHOOK_URL', 'is required when MAIL_PROVIDER is webhook')
      }
      const secret = read.optionalSecret('MAIL_WEBHOOK_SECRET', MAIL_WEBHOOK_SECRET_MIN_LENGTH)
      if (secret === undefined && !loopback) {
        throw new ConfigError(
          'MAIL_WEBHOOK_SECRET',
          'is required for a non-loopback ISSUER (the webhook is signed)',
        )
      }
      return { provider, url, secret }
    }
    case 'resend': {
      if (apiKey === undefined) {
        throw new ConfigError('RESEND_API_KEY', 'is required when MAIL_PROVIDER is resend')
      }
      const baseUrl = read.url('RESEND_BASE_URL', RESEND_DEFAULT_BASE_URL).replace(/\/+$/, '')
      return { provider, apiKey, baseUrl }
    }
    case 'log':
      if (!loopback) {
        throw new ConfigError(
          'MAIL_PROVIDER',
          'must be webhook or resend for a non-loopback ISSUER (set MAIL_WEBHOOK_URL and MAIL_WEBHOOK_SECRET, or RESEND_API_KEY); mail would be dropped',
        )
      }
      return { provider }
  }
}

/** RFC 9110 §5.1 field name; `none` turns client addresses off (no proxy in front to trust). */
function parseTrustedIpHeader(raw: string | undefined): string | undefined {
  const value = raw?.trim().toLowerCase()
  if (value === undefined || value === '') {
    return 'cf-connecting-ip'
  }
  if (value === 'none') {
    return undefined
  }
  if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(value)) {
    throw new ConfigError('TRUSTED_IP_HEADER', 'must be a header name or none')
  }
  return value
}

const DEFAULT_TIER_QUOTAS: Record<ApiKeyTier, number | null> = {
  trial: 10_000,
  starter: 50_000,
  professional: 500_000,
  enterprise: null,
}

const NO_TENANT_QUOTAS: Record<TenantPlan, number | null> = {
  free: null,
  starter: null,
  professional: null,
  enterprise: null,
}

/**
 * `trial=10000,starter=50000,...,enterprise=unlimited` (TIER_QUOTAS per key tier,
 * TENANT_MONTHLY_QUOTAS per tenant plan); names left out keep their default.
 */
function parseQuotas<K extends string>(
  variable: string,
  names: readonly K[],
  defaults: Record<K, number | null>,
  raw: string | undefined,
): Record<K, number | null> {
  const quotas = { ...defaults }
  for (const part of (raw ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [name, limit] = part.split('=').map((s) => s.trim())
    const known = names.find((n) => n === name)
    if (known === undefined || limit === undefined || !/^(\d+|unlimited)$/.test(limit)) {
      throw new ConfigError(variable, `must look like ${names[0]}=10000,${names.at(-1)}=unlimited`)
    }
    quotas[known] = limit === 'unlimited' ? null : Number(limit)
  }
  return quotas
}

/**
 * MASTER_KEY is `id:base64url` entries separated by commas, newest first, each 32 bytes,
 * e.g. `k2:...,k1:...`. A bare base64url value is accepted as key id `k1`.
 */
function parseMasterKeys(raw: string): readonly [MasterKey, ...MasterKey[]] {
  const keys = raw.split(',').map((entry, index) => {
    const separator = entry.indexOf(':')
    const id = separator === -1 ? 'k1' : entry.slice(0, separator).trim()
    const encoded = (separator === -1 ? entry : entry.slice(separator + 1)).trim()
    const bytes = fromBase64Url(encoded)
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id) || bytes?.length !== 32) {
      throw new ConfigError('MASTER_KEY', `entry ${index + 1} must be id:base64url of 32 random bytes`)
    }
    return { id, bytes }
  })
  const [first, ...rest] = keys
  if (first === undefined || new Set(keys.map((k) => k.id)).size !== keys.length) {
    throw new ConfigError('MASTER_KEY', 'must list distinct key ids')
  }
  return [first, ...rest]
}
