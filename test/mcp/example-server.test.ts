import { describe, expect, it } from 'vitest'
import { createMcpServerHandler, protectedResourceMetadataUrl } from '../../examples/mcp-server/src/index'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  ensureResourceServer,
  ISSUER,
  postForm,
} from '../helpers/oauth'
import { call } from '../helpers/worker'

/**
 * The example MCP server's own answers (examples/mcp-server): its RFC 9728 metadata and what
 * it says to tokens it must refuse. The SDK-driven flows are in mcp-sdk.test.ts.
 */
const MCP_URL = 'https://mcp.portcullis-example.net/mcp'
const OTHER_URL = 'https://other.portcullis-example.net/api'

const jwksFetch = ((input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(new Request(input, init).url)
  return call(`${url.pathname}${url.search}`)
}) as typeof fetch
const server = createMcpServerHandler({
  issuer: ISSUER,
  resource: MCP_URL,
  scope: 'mcp:tools',
  fetch: jwksFetch,
})

function listTools(token: string): Promise<Response> {
  return server(
    new Request(MCP_URL, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    }),
  )
}

async function machineToken(scope: string, resource: string): Promise<string> {
  const client = await adminClient({
    client_name: 'Example caller',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  })
  const res = await postForm(
    '/oauth/token',
    { grant_type: 'client_credentials', scope, resource },
    basicAuth(client),
  )
  expect(res.status, await res.clone().text()).toBe(200)
  return ((await res.json()) as { access_token: string }).access_token
}

describe('the example MCP server (issue 11)', () => {
  it('serves RFC 9728 metadata at the well-known path plus its endpoint path', async () => {
    expect(protectedResourceMetadataUrl(MCP_URL)).toBe(
      'https://mcp.portcullis-example.net/.well-known/oauth-protected-resource/mcp',
    )
    const res = await server(new Request(protectedResourceMetadataUrl(MCP_URL)))
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      resource: MCP_URL,
      authorization_servers: [ISSUER],
      scopes_supported: ['mcp:tools'],
    })
  })

  it('no token: 401 naming the metadata and the scope; garbage: invalid_token', async () => {
    const bare = await server(new Request(MCP_URL, { method: 'POST', body: '{}' }))
    expect(bare.status).toBe(401)
    expect(bare.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${protectedResourceMetadataUrl(MCP_URL)}", scope="mcp:tools"`,
    )
    const garbage = await listTools('not.a.token')
    expect(garbage.status).toBe(401)
    expect(garbage.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })

  it('a Portcullis token for another audience is refused; one without mcp:tools is 403 insufficient_scope; the right one lists the tool', async () => {
    await ensureResourceServer(MCP_URL, [{ name: 'mcp:tools', description: 'Use the example MCP tools' }])
    await ensureResourceServer(OTHER_URL, [{ name: 'other:read', description: 'Read the other API' }])
    const elsewhere = await listTools(await machineToken('other:read', OTHER_URL))
    expect(elsewhere.status).toBe(401)
    expect(elsewhere.headers.get('www-authenticate')).toContain('error="invalid_token"')
    // A token for this server without its scope (the issuer's own API token is not for it either).
    const plain = await clientCredentialsToken(
      await adminClient({
        client_name: 'Plain caller',
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'apikeys:write',
      }),
    )
    expect((await listTools(plain)).status).toBe(401)
    const scopeless = await listTools(await machineToken('other:read', MCP_URL))
    expect(scopeless.status).toBe(403)
    expect(scopeless.headers.get('www-authenticate')).toContain('error="insufficient_scope"')
    const ok = await listTools(await machineToken('mcp:tools', MCP_URL))
    expect(ok.status, await ok.clone().text()).toBe(200)
    const body = (await ok.json()) as { result: { tools: { name: string }[] } }
    expect(body.result.tools.map((t) => t.name)).toEqual(['whoami'])
  })
})
