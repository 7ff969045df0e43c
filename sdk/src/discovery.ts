import { PortcullisError } from './errors.js'
import { type HttpContext, isRecord, readJson, send } from './http.js'

/** The parts of RFC 8414 metadata the SDK uses. */
export interface IssuerMetadata {
  issuer: string
  tokenEndpoint: string
  jwksUri: string
  introspectionEndpoint: string | undefined
}

/** RFC 8414 §3: GET {issuer}/.well-known/oauth-authorization-server; `issuer` must match exactly (§3.3). */
export async function discover(http: HttpContext, issuer: string): Promise<IssuerMetadata> {
  const url = `${issuer}/.well-known/oauth-authorization-server`
  const body = await readJson(await send(http, url, { headers: { accept: 'application/json' } }), 'discovery')
  if (!isRecord(body) || typeof body.token_endpoint !== 'string' || typeof body.jwks_uri !== 'string') {
    throw new PortcullisError('unexpected_response', 'discovery: token_endpoint or jwks_uri missing')
  }
  if (body.issuer !== issuer) {
    throw new PortcullisError(
      'unexpected_response',
      `discovery: issuer is ${String(body.issuer)}, expected ${issuer}`,
    )
  }
  return {
    issuer,
    tokenEndpoint: body.token_endpoint,
    jwksUri: body.jwks_uri,
    introspectionEndpoint:
      typeof body.introspection_endpoint === 'string' ? body.introspection_endpoint : undefined,
  }
}

/** Discovery once per client; a failed attempt is forgotten so the next call retries. */
export function cachedDiscovery(http: HttpContext, issuer: string): () => Promise<IssuerMetadata> {
  let pending: Promise<IssuerMetadata> | undefined
  return () => {
    if (pending === undefined) {
      const attempt = discover(http, issuer)
      pending = attempt
      attempt.catch(() => {
        if (pending === attempt) {
          pending = undefined
        }
      })
    }
    return pending
  }
}
