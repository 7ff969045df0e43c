import { Hono } from 'hono'
import * as v from 'valibot'
import type { Executor } from '../../db/client'
import { findPushedRequest, insertPushedRequest } from '../../db/queries/pushed-requests'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { OAUTH_ERRORS, OAuthError, type OAuthErrorCode } from '../errors/oauth'
import { documentRoute } from '../openapi/registry'
import { currentDpopNonce } from '../tokens/dpop-nonce'
import {
  type AuthorizationRequest,
  RedirectableError,
  validateAuthorizationRequest,
} from './authorization-request'
import { authenticateClient } from './client-auth'
import { type OAuthParams, param, readOAuthBody } from './form'
import { freshenMetadataDocumentClient } from './metadata-document'
import { CLIENT_ASSERTION_FIELDS, DPOP_HEADER_DOC, NO_STORE, tokenRequestProof } from './token'

/** RFC 9126 §2.2: a pushed request lives this long (the RFC suggests 5 to 600 s). */
export const PAR_TTL_SECONDS = 60
export const REQUEST_URI_PREFIX = 'urn:ietf:params:oauth:request_uri:'

/** The authorization request parameters a pushed request may carry (everything else is dropped). */
const PUSHABLE = [
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'nonce',
  'code_challenge',
  'code_challenge_method',
  'resource',
  'prompt',
  'max_age',
  'acr_values',
  'dpop_jkt',
] as const

function requiresPush(config: Config, request: AuthorizationRequest): boolean {
  return (
    config.requirePushedAuthorizationRequests ||
    request.client.metadata.require_pushed_authorization_requests === true
  )
}

/**
 * The authorization request behind /oauth/authorize or the consent form: the pushed one when
 * `request_uri` is given (RFC 9126 §4: only its parameters count, and it must belong to
 * `client_id`), else the query itself, refused when the client or the server requires PAR.
 * Round trips: one (the client), two with a `request_uri` (the pushed row, then the client).
 */
export async function resolveAuthorizationRequest(
  x: Executor,
  config: Config,
  params: OAuthParams,
  now: Date,
): Promise<AuthorizationRequest> {
  const requestUri = param(params, 'request_uri', 300)
  if (requestUri === undefined) {
    const request = await validateAuthorizationRequest(x, params, undefined, config)
    if (requiresPush(config, request)) {
      throw new RedirectableError(
        'invalid_request',
        'This client must push its authorization request to the pushed_authorization_request_endpoint',
        request.redirectUri,
        request.state,
      )
    }
    return request
  }
  const clientId = param(params, 'client_id', 200)
  if (clientId === undefined) {
    throw new OAuthError('invalid_request', { description: 'client_id is required' })
  }
  const pushed = requestUri.startsWith(REQUEST_URI_PREFIX)
    ? await findPushedRequest(x, await sha256Hex(requestUri), clientId, now)
    : undefined
  if (pushed === undefined) {
    throw new OAuthError('invalid_request_uri', {
      description: 'request_uri is unknown, expired, already used or not this client’s',
    })
  }
  const request = await validateAuthorizationRequest(
    x,
    new Map(Object.entries(pushed.params)),
    undefined,
    config,
  )
  return { ...request, pushed: { id: pushed.id, requestUri, pushedAt: pushed.createdAt } }
}

function asOAuthError(error: RedirectableError): OAuthError {
  const code: OAuthErrorCode = Object.hasOwn(OAUTH_ERRORS, error.code)
    ? (error.code as OAuthErrorCode)
    : 'invalid_request'
  return new OAuthError(code, { description: error.description })
}

/**
 * POST /oauth/par (RFC 9126): the client authenticates as at the token endpoint, its request is
 * validated exactly as /oauth/authorize would, and a one-time `request_uri` valid for
 * PAR_TTL_SECONDS comes back. Errors are answered here, never redirected. Round trips: two (the
 * client, then the stored request).
 */
export const parEndpoint = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  // RFC 9126 §2.1: a request_uri cannot be pushed; request objects are not supported at all.
  if (params.has('request_uri') || params.has('request')) {
    throw new OAuthError('invalid_request', { description: 'request_uri and request are not accepted here' })
  }
  // Issue 11: a metadata document client is read (or refreshed) before it authenticates.
  await freshenMetadataDocumentClient(c.var.db.http, c.var.config, param(params, 'client_id', 200), now)
  // RFC 9449 §10.1: a DPoP proof here binds the code to its key, as `dpop_jkt` would; both: equal.
  const dpop = await tokenRequestProof(c, now)
  const dpopJkt = param(params, 'dpop_jkt', 100)
  if (dpop !== null && dpopJkt !== undefined && dpopJkt !== dpop.jkt) {
    throw new OAuthError('invalid_request', { description: 'dpop_jkt does not match the DPoP proof’s key' })
  }
  const client = await authenticateClient(c, c.var.db.http, params, now)
  let request: AuthorizationRequest
  try {
    request = await validateAuthorizationRequest(c.var.db.http, params, client, c.var.config)
  } catch (error) {
    throw error instanceof RedirectableError ? asOAuthError(error) : error
  }
  const stored: Record<string, string> = { client_id: client.clientId, redirect_uri: request.redirectUri }
  for (const name of PUSHABLE) {
    const value = params.get(name)
    if (value !== undefined && stored[name] === undefined) {
      stored[name] = value
    }
  }
  if (dpop !== null) {
    stored.dpop_jkt = dpop.jkt
  }
  const requestUri = `${REQUEST_URI_PREFIX}${randomToken(32)}`
  const pushed = await insertPushedRequest(
    c.var.db.http,
    {
      requestUriHash: await sha256Hex(requestUri),
      clientId: client.id,
      params: stored,
      expiresAt: new Date(now.getTime() + PAR_TTL_SECONDS * 1000),
    },
    dpop,
  )
  if (!pushed) {
    throw new OAuthError('invalid_dpop_proof', { description: 'The DPoP proof was already used' })
  }
  const body = { request_uri: requestUri, expires_in: PAR_TTL_SECONDS }
  if (dpop !== null && c.var.config.dpopNonceRequired) {
    return c.json(body, 201, { ...NO_STORE, 'dpop-nonce': await currentDpopNonce(c.var.config, now) })
  }
  return c.json(body, 201, NO_STORE)
})

documentRoute({
  method: 'post',
  path: '/oauth/par',
  summary: 'Pushed authorization request (RFC 9126)',
  tags: ['oauth'],
  security: ['clientBasic'],
  headers: [{ name: 'DPoP', description: DPOP_HEADER_DOC }],
  requestBody: {
    schema: v.object({
      response_type: v.literal('code'),
      client_id: v.optional(v.string()),
      redirect_uri: v.optional(v.string()),
      scope: v.optional(v.string()),
      state: v.optional(v.string()),
      nonce: v.optional(v.string()),
      code_challenge: v.string(),
      code_challenge_method: v.literal('S256'),
      resource: v.optional(
        v.pipe(v.string(), v.description('RFC 8707 target; repeat it for several, at most 5')),
      ),
      prompt: v.optional(v.string()),
      max_age: v.optional(v.string()),
      acr_values: v.optional(v.string()),
      ...CLIENT_ASSERTION_FIELDS,
      dpop_jkt: v.optional(
        v.pipe(v.string(), v.description('RFC 9449 §10: bind the code to this DPoP key thumbprint')),
      ),
    }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: {
    201: {
      description: 'The one-time request_uri for /oauth/authorize',
      schema: v.object({ request_uri: v.string(), expires_in: v.number() }),
    },
  },
})
