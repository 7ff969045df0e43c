import { Hono, type MiddlewareHandler } from 'hono'
import * as v from 'valibot'
import type { Config } from '../config'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { ProblemError } from '../errors/problem'
import { documentRoute } from '../openapi/registry'
import { DPOP_SIGNING_ALGS } from '../tokens/dpop'

/**
 * RFC 9728 for Portcullis's own protected APIs (issue 11): one protected resource, the issuer
 * (the audience their tokens carry when no `resource` was asked for), described at
 * `/.well-known/oauth-protected-resource`, and named in the `WWW-Authenticate` challenge of their
 * 401 and 403 `insufficient_scope` answers so a client can discover where to get a token.
 */

export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource'

/** Protected API paths (prefixes) and the scope a token needs there (the challenge's `scope`). */
const PROTECTED_APIS: readonly { prefix: string; scope: string }[] = [
  { prefix: '/api-keys/verify', scope: 'apikeys:verify' },
  { prefix: '/api-keys', scope: 'apikeys:write' },
  { prefix: '/oauth/userinfo', scope: 'openid' },
  { prefix: '/tenants', scope: 'tenant:admin' },
  { prefix: '/admin', scope: 'admin' },
]

function protectedApi(path: string): { scope: string } | undefined {
  return PROTECTED_APIS.find((api) => path === api.prefix || path.startsWith(`${api.prefix}/`))
}

/** The RFC 9728 §2 document for Portcullis's own APIs. Config only: no database access. */
export function protectedResourceMetadata(config: Config): Record<string, unknown> {
  const scopes = new Set([...config.scopesSupported, ...PROTECTED_APIS.map((api) => api.scope)])
  return {
    resource: config.issuer,
    authorization_servers: [config.issuer],
    scopes_supported: [...scopes],
    bearer_methods_supported: ['header'],
    dpop_signing_alg_values_supported: DPOP_SIGNING_ALGS,
    resource_name: 'Portcullis account and API-key APIs',
    resource_documentation: `${config.issuer}/openapi.json`,
  }
}

const METADATA_MAX_AGE_SECONDS = 3600

/** GET /.well-known/oauth-protected-resource (RFC 9728 §3). */
export const protectedResource = new Hono<AppEnv>().get('/', (c) =>
  c.json(protectedResourceMetadata(c.var.config), 200, {
    'cache-control': `public, max-age=${METADATA_MAX_AGE_SECONDS}`,
  }),
)

function isInsufficientScope(error: Error | undefined): boolean {
  return (error instanceof ProblemError || error instanceof OAuthError) && error.code === 'insufficient_scope'
}

/**
 * On a protected API's 401 with a Bearer challenge, and on its 403 `insufficient_scope`, the
 * challenge names the metadata and the scope needed (RFC 9728 §5.1, RFC 6750 §3). A DPoP
 * challenge (RFC 9449 §7.1) and cookie-only answers are left as they are.
 */
export function resourceChallenge(): MiddlewareHandler<AppEnv> {
  return async function resourceChallenge(c, next) {
    await next()
    const api = protectedApi(c.req.path)
    const status = c.res.status
    if (api === undefined || (status !== 401 && status !== 403)) {
      return
    }
    const existing = c.res.headers.get('www-authenticate')
    const insufficient = status === 403 && isInsufficientScope(c.error)
    // Only Bearer challenges: a DPoP one (RFC 9449 §7.1) stays as it is.
    if (existing !== null ? !/^Bearer\b/i.test(existing) : !insufficient) {
      return
    }
    const params = [
      'realm="portcullis"',
      ...(insufficient ? ['error="insufficient_scope"'] : []),
      ...(!insufficient && existing !== null && /error="invalid_token"/.test(existing)
        ? ['error="invalid_token"']
        : []),
      `scope="${api.scope}"`,
      `resource_metadata="${c.var.config.issuer}${PROTECTED_RESOURCE_PATH}"`,
    ]
    c.res.headers.set('www-authenticate', `Bearer ${params.join(', ')}`)
  }
}

documentRoute({
  method: 'get',
  path: PROTECTED_RESOURCE_PATH,
  summary: 'Protected resource metadata for Portcullis’s own APIs (RFC 9728)',
  tags: ['discovery'],
  responses: {
    200: {
      description: 'Metadata',
      schema: v.object({
        resource: v.string(),
        authorization_servers: v.array(v.string()),
        scopes_supported: v.array(v.string()),
        bearer_methods_supported: v.array(v.string()),
      }),
    },
  },
})
