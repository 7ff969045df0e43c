import type { Executor } from '../../db/client'
import { findClient } from '../../db/queries/oauth-clients'
import { insertAuthorizationCode } from '../../db/queries/oauth-grants'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { insertCodeSpendingPushedRequest } from '../../db/queries/pushed-requests'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import { OAuthError, type OAuthErrorCode } from '../errors/oauth'
import { type OAuthParams, param } from './form'
import { isMetadataDocumentClientId, metadataDocumentClient } from './metadata-document'
import { isValidCodeChallenge } from './pkce'
import { matchesRegisteredRedirectUri } from './redirect-uri'
import {
  MAX_RESOURCES,
  type ResourceTarget,
  resolveResources,
  storedResource,
  targetScopeNames,
} from './resources'
import { grantableScope } from './scope'

export interface AuthorizationRequest {
  client: OAuthClientRow
  redirectUri: string
  state: string | undefined
  scope: string[]
  nonce: string | undefined
  codeChallenge: string
  resource: string | null
  /** The resource servers `resource` names (their names and scope descriptions go on consent). */
  targets?: readonly ResourceTarget[]
  prompt: ReadonlySet<string>
  /** OIDC `max_age`: seconds since sign-in after which the user must sign in again. */
  maxAge: number | undefined
  /** OIDC `acr_values` as sent (space-separated), for the step-up check (auth/acr.ts). */
  acrValues: string | undefined
  /** RFC 9449 §10: the DPoP key thumbprint the code is bound to (`dpop_jkt`, or PAR's proof). */
  dpopJkt: string | undefined
  /** Set when the parameters came from a pushed request (RFC 9126); the code spends it. */
  pushed?: { id: string; requestUri: string; pushedAt: Date }
}

/** An error the client should learn about through its (validated) redirect URI. */
export class RedirectableError extends Error {
  override name = 'RedirectableError'
  constructor(
    readonly code: OAuthErrorCode | 'login_required' | 'consent_required' | 'interaction_required',
    readonly description: string,
    readonly redirectUri: string,
    readonly state: string | undefined,
  ) {
    super(description)
  }
}

const PROMPTS = new Set(['none', 'login', 'consent'])
/** RFC 7638 SHA-256 thumbprint, base64url without padding. */
const DPOP_JKT = /^[A-Za-z0-9_-]{43}$/

/** A registered client, or (issue 11) the one a Client ID Metadata Document URL describes. */
function findRequestClient(
  x: Executor,
  config: Config | undefined,
  clientId: string,
): Promise<OAuthClientRow | undefined> {
  return config !== undefined && isMetadataDocumentClientId(clientId)
    ? metadataDocumentClient(x, config, clientId, new Date())
    : findClient(x, clientId)
}

/**
 * Validates an authorization request (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1). Until the client and
 * its redirect URI are known good, errors are thrown as OAuthError (shown, never redirected —
 * RFC 6749 §4.1.2.1); after that as RedirectableError. One round trip (the client).
 */
export async function validateAuthorizationRequest(
  x: Executor,
  params: OAuthParams,
  /** The client, already read and authenticated (PAR): no round trip. */
  known?: OAuthClientRow,
  /** For `resource`: the issuer and DEFAULT_AUDIENCE are targets without a lookup. */
  config?: Config,
): Promise<AuthorizationRequest> {
  const clientId = param(params, 'client_id', 200)
  if (clientId === undefined && known === undefined) {
    throw new OAuthError('invalid_request', { description: 'client_id is required' })
  }
  if (known !== undefined && clientId !== undefined && clientId !== known.clientId) {
    throw new OAuthError('invalid_request', {
      description: 'client_id does not match the authenticated client',
    })
  }
  const client = known ?? (clientId === undefined ? undefined : await findRequestClient(x, config, clientId))
  if (client === undefined || client.disabledAt !== null) {
    throw new OAuthError('invalid_request', { description: 'Unknown client' })
  }
  const presented = param(params, 'redirect_uri')
  let redirectUri: string
  if (presented === undefined) {
    const [only, ...others] = client.redirectUris
    if (only === undefined || others.length > 0) {
      throw new OAuthError('invalid_request', { description: 'redirect_uri is required' })
    }
    redirectUri = only
  } else if (matchesRegisteredRedirectUri(client.redirectUris, presented, client.applicationType)) {
    redirectUri = presented
  } else {
    throw new OAuthError('invalid_request', { description: 'redirect_uri is not registered for this client' })
  }
  const state = param(params, 'state', 1000)
  const fail = (code: RedirectableError['code'], description: string) =>
    new RedirectableError(code, description, redirectUri, state)
  if (params.get('response_type') !== 'code') {
    throw fail('unsupported_response_type', 'response_type must be code')
  }
  if (!client.grantTypes.includes('authorization_code')) {
    throw fail('unauthorized_client', 'This client may not use the authorization code flow')
  }
  const codeChallenge = param(params, 'code_challenge', 200)
  if (codeChallenge === undefined) {
    throw fail('invalid_request', 'code_challenge is required (PKCE)')
  }
  // OAuth 2.1 §4.1.1: S256 only; an absent method would mean `plain`.
  if (params.get('code_challenge_method') !== 'S256') {
    throw fail('invalid_request', 'code_challenge_method must be S256')
  }
  if (!isValidCodeChallenge(codeChallenge)) {
    throw fail('invalid_request', 'code_challenge is not a base64url SHA-256')
  }
  let scope: string[]
  let resource: string | null
  let targets: ResourceTarget[]
  try {
    // RFC 8707: an unknown resource is invalid_target; known ones lend their scopes (issue 11).
    targets = await resolveResources(x, config, param(params, 'resource', MAX_RESOURCES * 2001))
    scope = grantableScope(
      param(params, 'scope'),
      client.scope,
      ['admin', 'apikeys:verify', 'tenant:admin'],
      targetScopeNames(targets),
    )
    resource = storedResource(targets)
  } catch (error) {
    if (error instanceof OAuthError) {
      throw fail(error.code, error.options.description ?? error.code)
    }
    throw error
  }
  const prompt = new Set((param(params, 'prompt', 100) ?? '').split(' ').filter(Boolean))
  if ([...prompt].some((p) => !PROMPTS.has(p)) || (prompt.has('none') && prompt.size > 1)) {
    throw fail('invalid_request', 'prompt must be none, login or consent')
  }
  const maxAge = params.get('max_age') || undefined
  if (maxAge !== undefined && !/^\d{1,10}$/.test(maxAge)) {
    throw fail('invalid_request', 'max_age must be a non-negative integer')
  }
  const dpopJkt = param(params, 'dpop_jkt', 100)
  if (dpopJkt !== undefined && !DPOP_JKT.test(dpopJkt)) {
    throw fail('invalid_request', 'dpop_jkt must be a base64url SHA-256 JWK thumbprint')
  }
  return {
    client,
    redirectUri,
    state,
    scope,
    nonce: param(params, 'nonce', 500),
    codeChallenge,
    resource,
    targets,
    prompt,
    maxAge: maxAge === undefined ? undefined : Number(maxAge),
    acrValues: param(params, 'acr_values', 500),
    dpopJkt,
  }
}

/** The redirect URI with the response parameters (and RFC 9207 `iss`) appended. */
export function redirectTarget(
  redirectUri: string,
  issuer: string,
  values: Record<string, string | undefined>,
): string {
  const url = new URL(redirectUri)
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined) {
      url.searchParams.set(key, value)
    }
  }
  url.searchParams.set('iss', issuer)
  return url.href
}

/** Issues an authorization code (stored as its SHA-256). One round trip. */
export async function issueAuthorizationCode(
  x: Executor,
  config: Config,
  request: AuthorizationRequest,
  user: { userId: string; authenticatedAt: Date; amr?: string[] },
  now: Date,
): Promise<string> {
  const code = randomToken(32)
  const row = {
    codeHash: await sha256Hex(code),
    clientId: request.client.id,
    userId: user.userId,
    redirectUri: request.redirectUri,
    scope: request.scope.join(' '),
    resource: request.resource,
    nonce: request.nonce ?? null,
    codeChallenge: request.codeChallenge,
    codeChallengeMethod: 'S256',
    authTime: user.authenticatedAt,
    ...(user.amr === undefined ? {} : { amr: user.amr }),
    dpopJkt: request.dpopJkt ?? null,
    expiresAt: new Date(now.getTime() + config.authCodeTtlSeconds * 1000),
  }
  if (request.pushed === undefined) {
    await insertAuthorizationCode(x, row)
  } else if (!(await insertCodeSpendingPushedRequest(x, request.pushed.id, row, now))) {
    throw new RedirectableError(
      'invalid_request_uri',
      'The pushed authorization request was already used or has expired',
      request.redirectUri,
      request.state,
    )
  }
  return code
}

/** Hidden fields that carry a validated request through the consent form. */
export function requestFields(request: AuthorizationRequest): Record<string, string> {
  if (request.pushed !== undefined) {
    // RFC 9126 §4: the pushed request is the request; the form carries only its reference.
    return { client_id: request.client.clientId, request_uri: request.pushed.requestUri }
  }
  const fields: Record<string, string> = {
    response_type: 'code',
    client_id: request.client.clientId,
    redirect_uri: request.redirectUri,
    scope: request.scope.join(' '),
    code_challenge: request.codeChallenge,
    code_challenge_method: 'S256',
  }
  if (request.state !== undefined) {
    fields.state = request.state
  }
  if (request.nonce !== undefined) {
    fields.nonce = request.nonce
  }
  if (request.resource !== null) {
    fields.resource = request.resource
  }
  if (request.dpopJkt !== undefined) {
    fields.dpop_jkt = request.dpopJkt
  }
  return fields
}
