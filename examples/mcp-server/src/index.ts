import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'
import { createRemoteJWKSet, customFetch, type JWTPayload, jwtVerify } from 'jose'

/**
 * An MCP server on Workers, built on the official MCP TypeScript SDK, whose tools need an access
 * token from Portcullis (see README.md). It never calls Portcullis per request: it checks each
 * token's signature against Portcullis's JWKS (fetched once, cached), its issuer, audience (this
 * server's identifier), type (`at+jwt`), expiry and scope. RFC 9728 metadata tells MCP clients
 * where to get a token, and every 401/403 says so in `WWW-Authenticate`.
 */
export interface McpServerBindings {
  /** Portcullis's issuer, exactly as its discovery document says. */
  PORTCULLIS_ISSUER: string
  /** This server's MCP endpoint URL: the resource server identifier registered in Portcullis. */
  MCP_RESOURCE: string
  /** The scope a caller needs (default `mcp:tools`). */
  MCP_SCOPE?: string
}

export interface McpServerOptions {
  issuer: string
  resource: string
  scope: string
  /** How the JWKS is fetched (default: the global fetch). */
  fetch?: typeof fetch
}

/** What Portcullis signs access tokens with (its ACCESS_TOKEN_ALG or a resource server's algorithm). */
const ALGORITHMS = ['ES256', 'RS256', 'EdDSA']

/** RFC 9728 §3.1: the metadata lives at the well-known path with the resource's path appended. */
export function protectedResourceMetadataUrl(resource: string): string {
  const url = new URL(resource)
  const path = url.pathname === '/' ? '' : url.pathname
  return `${url.origin}/.well-known/oauth-protected-resource${path}`
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'authorization, content-type, mcp-protocol-version, mcp-session-id',
  'access-control-expose-headers': 'www-authenticate, mcp-session-id',
} as const

function json(body: unknown, status: number, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...CORS, ...headers },
  })
}

/** Builds the request handler: metadata, the token check, then the MCP SDK's transport. */
export function createMcpServerHandler(options: McpServerOptions): (request: Request) => Promise<Response> {
  const metadataUrl = protectedResourceMetadataUrl(options.resource)
  const endpointPath = new URL(options.resource).pathname
  const jwks = createRemoteJWKSet(
    new URL(`${options.issuer}/.well-known/jwks.json`),
    options.fetch === undefined ? {} : { [customFetch]: options.fetch },
  )
  const metadata = {
    resource: options.resource,
    authorization_servers: [options.issuer],
    scopes_supported: [options.scope],
    bearer_methods_supported: ['header'],
    resource_name: 'Example MCP server',
  }

  /** RFC 6750 §3 / RFC 9728 §5.1: where to get a token, and what was wrong with this one. */
  function challenge(status: 401 | 403, error?: string, description?: string): Response {
    const params = [`resource_metadata="${metadataUrl}"`, `scope="${options.scope}"`]
    if (error !== undefined) {
      params.push(`error="${error}"`)
    }
    if (description !== undefined) {
      params.push(`error_description="${description}"`)
    }
    return json({ error: error ?? 'unauthorized', error_description: description }, status, {
      'www-authenticate': `Bearer ${params.join(', ')}`,
    })
  }

  async function authenticate(request: Request): Promise<AuthInfo | Response> {
    const header = request.headers.get('authorization') ?? ''
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header)
    if (match?.[1] === undefined) {
      return challenge(401)
    }
    const token = match[1]
    let payload: JWTPayload
    try {
      ;({ payload } = await jwtVerify(token, jwks, {
        issuer: options.issuer,
        audience: options.resource,
        typ: 'at+jwt',
        algorithms: ALGORITHMS,
      }))
    } catch {
      return challenge(401, 'invalid_token', 'The access token is invalid or expired')
    }
    if (payload.cnf !== undefined) {
      // A DPoP-bound token (RFC 9449) is only good with a proof; this example checks none.
      return challenge(401, 'invalid_token', 'DPoP-bound tokens are not accepted here')
    }
    const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []
    if (!scopes.includes(options.scope)) {
      return challenge(403, 'insufficient_scope', `This needs the ${options.scope} scope`)
    }
    return {
      token,
      clientId: typeof payload.client_id === 'string' ? payload.client_id : '',
      scopes,
      ...(payload.exp === undefined ? {} : { expiresAt: payload.exp }),
      resource: new URL(options.resource),
      extra: { subject: payload.sub ?? '' },
    }
  }

  /** One server per request: the transport is stateless (no session to keep between requests). */
  function mcpServer(): McpServer {
    const server = new McpServer({ name: 'portcullis-example', version: '1.0.0' })
    server.registerTool(
      'whoami',
      { title: 'Who am I', description: 'Says which user and client the access token speaks for' },
      (extra) => {
        const auth = extra.authInfo
        const subject = String(auth?.extra?.subject ?? 'nobody')
        return {
          content: [
            {
              type: 'text',
              text: `user ${subject} through client ${auth?.clientId ?? '?'} with scopes ${auth?.scopes.join(' ') ?? ''}`,
            },
          ],
        }
      },
    )
    return server
  }

  return async (request) => {
    const url = new URL(request.url)
    if (request.method === 'OPTIONS') {
      return new Response(null, {
        status: 204,
        headers: { ...CORS, 'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS' },
      })
    }
    if (url.pathname === new URL(metadataUrl).pathname) {
      return json(metadata, 200, { 'cache-control': 'public, max-age=3600' })
    }
    if (url.pathname !== endpointPath) {
      return json({ error: 'not_found' }, 404)
    }
    const auth = await authenticate(request)
    if (auth instanceof Response) {
      return auth
    }
    if (request.method !== 'POST') {
      // Stateless: no server-sent event stream to resume, no session to delete.
      return json({ error: 'method_not_allowed' }, 405, { allow: 'POST' })
    }
    const transport = new WebStandardStreamableHTTPServerTransport({ enableJsonResponse: true })
    await mcpServer().connect(transport)
    const response = await transport.handleRequest(request, { authInfo: auth })
    const headers = new Headers(response.headers)
    for (const [name, value] of Object.entries(CORS)) {
      headers.set(name, value)
    }
    return new Response(response.body, { status: response.status, headers })
  }
}

let cached: { env: McpServerBindings; handler: (request: Request) => Promise<Response> } | undefined

// biome-ignore lint/style/noDefaultExport: the Workers runtime loads the module's default as the handler.
export default {
  fetch(request: Request, env: McpServerBindings): Promise<Response> {
    if (cached?.env !== env) {
      // One handler per isolate, so the JWKS stays cached across requests.
      cached = {
        env,
        handler: createMcpServerHandler({
          issuer: env.PORTCULLIS_ISSUER.replace(/\/+$/, ''),
          resource: env.MCP_RESOURCE,
          scope: env.MCP_SCOPE ?? 'mcp:tools',
        }),
      }
    }
    return cached.handler(request)
  },
}
