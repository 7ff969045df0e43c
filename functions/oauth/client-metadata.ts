import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import type { SigningAlgorithm } from '../../db/schema'
import {
  APPLICATION_TYPES,
  type ApplicationType,
  TOKEN_ENDPOINT_AUTH_METHODS,
  type TokenEndpointAuthMethod,
} from '../../db/schema'
import { SECRETLESS_AUTH_METHODS } from '../../db/schema/constants'
import type { Config } from '../config'
import { MAX_REDIRECT_URIS, redirectUriProblem } from './redirect-uri'

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code'
/** RFC 8693: registering this grant type is the per-client policy that allows exchanges (off by default). */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  DEVICE_CODE_GRANT,
  TOKEN_EXCHANGE_GRANT,
] as const
/** Scopes only an administrator may give a client (DESIGN: open registration never grants them). */
export const PRIVILEGED_SCOPES: ReadonlySet<string> = new Set(['apikeys:verify', 'admin', 'tenant:admin'])
export const ID_TOKEN_ALGS = ['RS256', 'ES256', 'EdDSA'] as const satisfies readonly SigningAlgorithm[]

/** The JWS algorithm of a client's id_tokens: what it registered, RS256 otherwise (OIDC default). */
export function idTokenAlgorithm(registered: string): SigningAlgorithm {
  return ID_TOKEN_ALGS.find((alg) => alg === registered) ?? 'RS256'
}
const MAX_NAME = 200
const MAX_URI = 2000
const MAX_SCOPE = 1000
const MAX_CONTACTS = 10
const PRIVATE_JWK_FIELDS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']
/** Registered metadata we keep verbatim so RFC 7592 reads return it. */
const PASSTHROUGH_FIELDS = ['tos_uri', 'policy_uri', 'software_id', 'software_version'] as const

export interface ClientMetadata {
  redirectUris: string[]
  tokenEndpointAuthMethod: TokenEndpointAuthMethod
  grantTypes: string[]
  responseTypes: string[]
  applicationType: ApplicationType
  clientName: string | null
  clientUri: string | null
  logoUri: string | null
  contacts: string[]
  scope: string
  idTokenSignedResponseAlg: string
  metadata: Record<string, unknown>
  firstParty: boolean
}

export type MetadataResult =
  | { ok: true; value: ClientMetadata }
  | { ok: false; error: 'invalid_redirect_uri' | 'invalid_client_metadata'; field: string; message: string }

export interface MetadataOptions {
  /** Admin-created clients may hold privileged scopes and be first-party. */
  privileged: boolean
  /** Scopes resource servers define (issue 11): registrable besides SCOPES. */
  resourceScopes?: ReadonlySet<string>
}

class MetadataIssue extends Error {
  constructor(
    readonly error: 'invalid_redirect_uri' | 'invalid_client_metadata',
    readonly field: string,
    message: string,
  ) {
    super(message)
  }
}

function optionalString(body: Record<string, unknown>, field: string, max: number): string | null {
  const value = body[field]
  if (value === undefined || value === null) {
    return null
  }
  if (typeof value !== 'string') {
    throw new MetadataIssue('invalid_client_metadata', field, 'must be a string')
  }
  if (value.length > max) {
    throw new MetadataIssue('invalid_client_metadata', field, `must be at most ${max} characters`)
  }
  return value
}

function optionalWebUri(body: Record<string, unknown>, field: string): string | null {
  const value = optionalString(body, field, MAX_URI)
  if (value !== null && (!URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol))) {
    throw new MetadataIssue('invalid_client_metadata', field, 'must be an http(s) URL')
  }
  return value
}

function stringArray(
  body: Record<string, unknown>,
  field: string,
  maxItems: number,
  maxLength: number,
): string[] | undefined {
  const value = body[field]
  if (value === undefined || value === null) {
    return undefined
  }
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw new MetadataIssue('invalid_client_metadata', field, 'must be an array of strings')
  }
  if (value.length > maxItems) {
    throw new MetadataIssue('invalid_client_metadata', field, `must have at most ${maxItems} entries`)
  }
  const strings = value as string[]
  const tooLong = strings.findIndex((s) => s.length > maxLength)
  if (tooLong !== -1) {
    throw new MetadataIssue(
      'invalid_client_metadata',
      `${field}.${tooLong}`,
      `must be at most ${maxLength} characters`,
    )
  }
  return [...new Set(strings)]
}

function oneOf<T extends string>(
  body: Record<string, unknown>,
  field: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const value = body[field]
  if (value === undefined || value === null) {
    return fallback
  }
  const found = allowed.find((a) => a === value)
  if (found === undefined) {
    throw new MetadataIssue('invalid_client_metadata', field, `must be one of ${allowed.join(', ')}`)
  }
  return found
}

/** Scopes a client gets when it registers none: every non-privileged scope we support. */
export function defaultClientScope(config: Config): string {
  return config.scopesSupported.filter((s) => !PRIVILEGED_SCOPES.has(s)).join(' ')
}

/**
 * Validates RFC 7591 §2 client metadata (plus `first_party` for admins) and applies defaults.
 * Unknown fields are ignored (RFC 7591 §2). Returns the first problem, naming its field.
 */
export function parseClientMetadata(
  input: unknown,
  config: Config,
  options: MetadataOptions,
): MetadataResult {
  try {
    return { ok: true, value: readMetadata(input, config, options) }
  } catch (error) {
    if (error instanceof MetadataIssue) {
      return { ok: false, error: error.error, field: error.field, message: error.message }
    }
    throw error
  }
}

function readMetadata(input: unknown, config: Config, options: MetadataOptions): ClientMetadata {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new MetadataIssue('invalid_client_metadata', 'body', 'must be a JSON object')
  }
  const body = input as Record<string, unknown>
  const applicationType = oneOf(body, 'application_type', APPLICATION_TYPES, 'web')
  const tokenEndpointAuthMethod = oneOf(
    body,
    'token_endpoint_auth_method',
    TOKEN_ENDPOINT_AUTH_METHODS,
    'client_secret_basic',
  )
  const grantTypes = stringArray(body, 'grant_types', GRANT_TYPES.length, 100) ?? ['authorization_code']
  const unknownGrant = grantTypes.find((g) => !(GRANT_TYPES as readonly string[]).includes(g))
  if (unknownGrant !== undefined) {
    throw new MetadataIssue('invalid_client_metadata', 'grant_types', `${unknownGrant} is not supported`)
  }
  if (grantTypes.length === 0) {
    throw new MetadataIssue('invalid_client_metadata', 'grant_types', 'must not be empty')
  }
  const usesCode = grantTypes.includes('authorization_code')
  const responseTypes = stringArray(body, 'response_types', 5, 100) ?? (usesCode ? ['code'] : [])
  if (responseTypes.some((r) => r !== 'code')) {
    throw new MetadataIssue('invalid_client_metadata', 'response_types', 'only "code" is supported')
  }
  if (usesCode !== responseTypes.includes('code')) {
    throw new MetadataIssue(
      'invalid_client_metadata',
      'response_types',
      'response_types "code" goes with grant_types "authorization_code" (RFC 7591 §2.1)',
    )
  }
  if (grantTypes.includes(TOKEN_EXCHANGE_GRANT) && tokenEndpointAuthMethod === 'none') {
    throw new MetadataIssue(
      'invalid_client_metadata',
      'grant_types',
      'token exchange needs a confidential client',
    )
  }
  if (grantTypes.includes('client_credentials') && tokenEndpointAuthMethod === 'none') {
    throw new MetadataIssue(
      'invalid_client_metadata',
      'grant_types',
      'client_credentials needs a confidential client',
    )
  }
  const redirectUris = stringArray(body, 'redirect_uris', MAX_REDIRECT_URIS, Number.MAX_SAFE_INTEGER) ?? []
  redirectUris.forEach((uri, index) => {
    const problem = redirectUriProblem(uri, applicationType)
    if (problem !== undefined) {
      throw new MetadataIssue('invalid_redirect_uri', `redirect_uris.${index}`, problem)
    }
  })
  if (usesCode && redirectUris.length === 0) {
    throw new MetadataIssue(
      'invalid_redirect_uri',
      'redirect_uris',
      'the authorization_code grant needs a redirect URI',
    )
  }
  const scopeText = optionalString(body, 'scope', MAX_SCOPE)
  const scopes =
    scopeText === null ? defaultClientScope(config).split(' ') : scopeText.split(' ').filter(Boolean)
  const unsupported = scopes.find(
    (s) => !config.scopesSupported.includes(s) && !options.resourceScopes?.has(s),
  )
  if (unsupported !== undefined) {
    throw new MetadataIssue('invalid_client_metadata', 'scope', `${unsupported} is not a supported scope`)
  }
  const privileged = scopes.find((s) => PRIVILEGED_SCOPES.has(s))
  if (privileged !== undefined && !options.privileged) {
    throw new MetadataIssue(
      'invalid_client_metadata',
      'scope',
      `${privileged} is granted only by an administrator`,
    )
  }
  const firstParty = body.first_party
  if (firstParty !== undefined && typeof firstParty !== 'boolean') {
    throw new MetadataIssue('invalid_client_metadata', 'first_party', 'must be a boolean')
  }
  if (firstParty === true && !options.privileged) {
    throw new MetadataIssue('invalid_client_metadata', 'first_party', 'is set only by an administrator')
  }
  const metadata: Record<string, unknown> = {}
  // RFC 9449 §5.2: true means every token request of this client must carry a DPoP proof.
  const dpopBound = body.dpop_bound_access_tokens
  if (dpopBound !== undefined && typeof dpopBound !== 'boolean') {
    throw new MetadataIssue('invalid_client_metadata', 'dpop_bound_access_tokens', 'must be a boolean')
  }
  if (dpopBound === true) {
    metadata.dpop_bound_access_tokens = true
  }
  // OIDC RP-Initiated Logout §3.1: where /oauth/logout may send the user back, checked like redirect_uris.
  const postLogout = stringArray(
    body,
    'post_logout_redirect_uris',
    MAX_REDIRECT_URIS,
    Number.MAX_SAFE_INTEGER,
  )
  postLogout?.forEach((uri, index) => {
    const problem = redirectUriProblem(uri, applicationType)
    if (problem !== undefined) {
      throw new MetadataIssue('invalid_redirect_uri', `post_logout_redirect_uris.${index}`, problem)
    }
  })
  if (postLogout !== undefined && postLogout.length > 0) {
    metadata.post_logout_redirect_uris = postLogout
  }
  // RFC 7523 §2.2 / RFC 7591 §2: a private_key_jwt client registers its public keys, inline or by URL.
  const jwks = body.jwks
  const jwksUri = optionalWebUri(body, 'jwks_uri')
  if (jwks !== undefined && jwksUri !== null) {
    throw new MetadataIssue('invalid_client_metadata', 'jwks', 'use jwks or jwks_uri, not both')
  }
  if (jwks !== undefined) {
    const keys = (jwks as { keys?: unknown } | null)?.keys
    if (
      typeof jwks !== 'object' ||
      jwks === null ||
      !Array.isArray(keys) ||
      keys.length === 0 ||
      keys.length > 10 ||
      keys.some((k) => typeof k !== 'object' || k === null || PRIVATE_JWK_FIELDS.some((f) => f in k)) ||
      JSON.stringify(jwks).length > 20_000
    ) {
      throw new MetadataIssue('invalid_client_metadata', 'jwks', 'must be a JWK set of 1 to 10 public keys')
    }
    metadata.jwks = { keys }
  }
  if (jwksUri !== null) {
    const loopbackHttp =
      config.outboundAllowLoopback && /^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?\//.test(jwksUri)
    if (!jwksUri.startsWith('https://') && !loopbackHttp) {
      throw new MetadataIssue('invalid_client_metadata', 'jwks_uri', 'must be an https URL')
    }
    metadata.jwks_uri = jwksUri
  }
  if (tokenEndpointAuthMethod === 'private_key_jwt' && jwks === undefined && jwksUri === null) {
    throw new MetadataIssue('invalid_client_metadata', 'jwks', 'private_key_jwt needs jwks or jwks_uri')
  }
  if (tokenEndpointAuthMethod === 'private_key_jwt') {
    metadata.token_endpoint_auth_signing_alg = oneOf(
      body,
      'token_endpoint_auth_signing_alg',
      ID_TOKEN_ALGS,
      'ES256',
    )
  }
  // RFC 9126 §6: true means this client's authorization requests must be pushed first.
  const requirePar = body.require_pushed_authorization_requests
  if (requirePar !== undefined && typeof requirePar !== 'boolean') {
    throw new MetadataIssue(
      'invalid_client_metadata',
      'require_pushed_authorization_requests',
      'must be a boolean',
    )
  }
  if (requirePar === true) {
    metadata.require_pushed_authorization_requests = true
  }
  for (const field of PASSTHROUGH_FIELDS) {
    const value = field.endsWith('_uri') ? optionalWebUri(body, field) : optionalString(body, field, MAX_NAME)
    if (value !== null) {
      metadata[field] = value
    }
  }
  return {
    redirectUris,
    tokenEndpointAuthMethod,
    grantTypes,
    responseTypes,
    applicationType,
    clientName: optionalString(body, 'client_name', MAX_NAME),
    clientUri: optionalWebUri(body, 'client_uri'),
    logoUri: optionalWebUri(body, 'logo_uri'),
    contacts: stringArray(body, 'contacts', MAX_CONTACTS, 254) ?? [],
    scope: [...new Set(scopes)].join(' '),
    idTokenSignedResponseAlg: oneOf(body, 'id_token_signed_response_alg', ID_TOKEN_ALGS, 'RS256'),
    metadata,
    firstParty: firstParty === true,
  }
}

export interface IssuedClientSecrets {
  clientSecret?: string
  registrationAccessToken?: string
}

/** RFC 7591 §3.2.1 client information response (snake_case, secrets only when just issued). */
export function clientInformation(
  client: OAuthClientRow,
  config: Config,
  issued: IssuedClientSecrets = {},
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    client_id: client.clientId,
    client_id_issued_at: Math.floor(client.createdAt.getTime() / 1000),
    redirect_uris: client.redirectUris,
    token_endpoint_auth_method: client.tokenEndpointAuthMethod,
    grant_types: client.grantTypes,
    response_types: client.responseTypes,
    application_type: client.applicationType,
    scope: client.scope,
    contacts: client.contacts,
    id_token_signed_response_alg: client.idTokenSignedResponseAlg,
    ...client.metadata,
  }
  if (client.clientName !== null) {
    body.client_name = client.clientName
  }
  if (client.clientUri !== null) {
    body.client_uri = client.clientUri
  }
  if (client.logoUri !== null) {
    body.logo_uri = client.logoUri
  }
  if (!(SECRETLESS_AUTH_METHODS as readonly string[]).includes(client.tokenEndpointAuthMethod)) {
    body.client_secret_expires_at = client.clientSecretExpiresAt
      ? Math.floor(client.clientSecretExpiresAt.getTime() / 1000)
      : 0
  }
  if (issued.clientSecret !== undefined) {
    body.client_secret = issued.clientSecret
  }
  if (issued.registrationAccessToken !== undefined) {
    body.registration_access_token = issued.registrationAccessToken
    body.registration_client_uri = `${config.issuer}/oauth/register/${encodeURIComponent(client.clientId)}`
  }
  return body
}

/** The columns a registration (RFC 7591) or an update (RFC 7592) writes from validated metadata. */
export function metadataColumns(metadata: ClientMetadata) {
  return {
    redirectUris: metadata.redirectUris,
    grantTypes: metadata.grantTypes,
    responseTypes: metadata.responseTypes,
    scope: metadata.scope,
    tokenEndpointAuthMethod: metadata.tokenEndpointAuthMethod,
    applicationType: metadata.applicationType,
    clientName: metadata.clientName,
    clientUri: metadata.clientUri,
    logoUri: metadata.logoUri,
    contacts: metadata.contacts,
    idTokenSignedResponseAlg: metadata.idTokenSignedResponseAlg,
    metadata: metadata.metadata,
  }
}
