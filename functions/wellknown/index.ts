import { Hono } from 'hono'
import * as v from 'valibot'
import { ACR_VALUES_SUPPORTED } from '../auth/acr'
import type { Config } from '../config'
import type { AppEnv } from '../env'
import { CLIENT_ASSERTION_ALGS } from '../oauth/client-assertion'
import { ID_TOKEN_ALGS } from '../oauth/client-metadata'
import { documentRoute } from '../openapi/registry'
import { DPOP_SIGNING_ALGS } from '../tokens/dpop'
import { JWKS_MAX_AGE_SECONDS, publicJwks } from '../tokens/keys'

const DISCOVERY_MAX_AGE_SECONDS = 3600

let cached:
  | { issuer: string; scopes: readonly string[]; par: boolean; cimd: boolean; body: Record<string, unknown> }
  | undefined

/** RFC 8414 §2 / OIDC Discovery §3 metadata: built from config only, so no database access. */
export function serverMetadata(config: Config): Record<string, unknown> {
  if (
    cached?.issuer === config.issuer &&
    cached.scopes === config.scopesSupported &&
    cached.par === config.requirePushedAuthorizationRequests &&
    cached.cimd === config.clientMetadataDocuments.enabled
  ) {
    return cached.body
  }
  const base = config.issuer
  const body = {
    issuer: base,
    authorization_endpoint: `${base}/oauth/authorize`,
    token_endpoint: `${base}/oauth/token`,
    registration_endpoint: `${base}/oauth/register`,
    revocation_endpoint: `${base}/oauth/revoke`,
    introspection_endpoint: `${base}/oauth/introspect`,
    userinfo_endpoint: `${base}/oauth/userinfo`,
    device_authorization_endpoint: `${base}/oauth/device_authorization`,
    pushed_authorization_request_endpoint: `${base}/oauth/par`,
    end_session_endpoint: `${base}/oauth/logout`,
    require_pushed_authorization_requests: config.requirePushedAuthorizationRequests,
    // Issue 11 (MCP 2025-11-25): an https URL with a path may be the client_id.
    client_id_metadata_document_supported: config.clientMetadataDocuments.enabled,
    jwks_uri: `${base}/.well-known/jwks.json`,
    scopes_supported: config.scopesSupported,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: [
      'authorization_code',
      'refresh_token',
      'client_credentials',
      'urn:ietf:params:oauth:grant-type:device_code',
      'urn:ietf:params:oauth:grant-type:token-exchange',
    ],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: [
      'client_secret_basic',
      'client_secret_post',
      'none',
      'private_key_jwt',
    ],
    token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
    revocation_endpoint_auth_methods_supported: [
      'client_secret_basic',
      'client_secret_post',
      'none',
      'private_key_jwt',
    ],
    revocation_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
    introspection_endpoint_auth_methods_supported: [
      'client_secret_basic',
      'client_secret_post',
      'private_key_jwt',
    ],
    introspection_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGS,
    authorization_response_iss_parameter_supported: true,
    dpop_signing_alg_values_supported: DPOP_SIGNING_ALGS,
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ID_TOKEN_ALGS,
    userinfo_signing_alg_values_supported: ['none'],
    claims_supported: [
      'sub',
      'iss',
      'aud',
      'exp',
      'iat',
      'auth_time',
      'amr',
      'acr',
      'nonce',
      'email',
      'email_verified',
      'name',
    ],
    prompt_values_supported: ['none', 'login', 'consent'],
    acr_values_supported: [...ACR_VALUES_SUPPORTED],
    claims_parameter_supported: false,
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    require_request_uri_registration: false,
    service_documentation: `${base}/openapi.json`,
  }
  cached = {
    issuer: config.issuer,
    scopes: config.scopesSupported,
    par: config.requirePushedAuthorizationRequests,
    cimd: config.clientMetadataDocuments.enabled,
    body,
  }
  return body
}

const METADATA_HEADERS = {
  'cache-control': `public, max-age=${DISCOVERY_MAX_AGE_SECONDS}`,
  'access-control-allow-origin': '*',
} as const

/** /.well-known: discovery documents and the JWKS; no database access on a warm isolate. */
export const wellKnown = new Hono<AppEnv>()
  .get('/oauth-authorization-server', (c) => c.json(serverMetadata(c.var.config), 200, METADATA_HEADERS))
  .get('/openid-configuration', (c) => c.json(serverMetadata(c.var.config), 200, METADATA_HEADERS))
  .get('/jwks.json', async (c) =>
    c.json(await publicJwks(c.var.db, c.var.config), 200, {
      // Edge and client caches may keep it this long: rotated keys are published earlier (keys.ts).
      'cache-control': `public, max-age=${JWKS_MAX_AGE_SECONDS}, stale-while-revalidate=60`,
      'access-control-allow-origin': '*',
      'content-type': 'application/jwk-set+json',
    }),
  )

const METADATA_SCHEMA = v.object({ issuer: v.string(), token_endpoint: v.string(), jwks_uri: v.string() })
for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
  documentRoute({
    method: 'get',
    path,
    summary: path.endsWith('openid-configuration')
      ? 'OpenID Connect Discovery'
      : 'Authorization server metadata (RFC 8414)',
    tags: ['discovery'],
    responses: { 200: { description: 'Metadata', schema: METADATA_SCHEMA } },
  })
}
documentRoute({
  method: 'get',
  path: '/.well-known/jwks.json',
  summary: 'Public signing keys (JWKS)',
  tags: ['discovery'],
  responses: {
    200: { description: 'JWK set', schema: v.object({ keys: v.array(v.record(v.string(), v.unknown())) }) },
  },
})
