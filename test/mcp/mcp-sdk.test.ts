import { type OAuthClientProvider, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js'
import { PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js'
import { decodeJwt, exportJWK, generateKeyPair } from 'jose'
import { describe, expect, inject, it } from 'vitest'
import { createMcpServerHandler } from '../../examples/mcp-server/src/index'
import type { Bindings } from '../../functions/env'
import { adminClient, approveConsent, ensureResourceServer, ISSUER, seedUser } from '../helpers/oauth'
import { callWith, describeResponse, useBindings } from '../helpers/worker'

/**
 * Issue 11, "done when": the MCP TypeScript SDK's own client (`Client`, the Streamable HTTP
 * transport and its `auth()` through an OAuthClientProvider; nothing of the SDK changed) against
 * the example MCP server (examples/mcp-server, its fetch handler) and Portcullis (the Worker
 * under test). The only thing standing in is the network: `fetch` given to the transport routes
 * the issuer's origin to Portcullis and the MCP server's origin to its handler. The user's part
 * (sign-in, consent) is done as a browser would, with the session cookie.
 */
const MCP_URL = 'https://mcp.portcullis-example.net/mcp'
const MCP_ORIGIN = new URL(MCP_URL).origin
const SCOPE = 'mcp:tools'
const REDIRECT = 'http://127.0.0.1:33418/callback'
const BASE_VARS = { OUTBOUND_ALLOW_LOOPBACK: 'true' }
useBindings(BASE_VARS)

type Vars = Partial<Record<keyof Bindings, string>>

/** The network the SDK client sees: Portcullis at its issuer, the example server at its origin. */
function network(vars: Vars): typeof fetch {
  let mcp: ((request: Request) => Promise<Response>) | undefined
  const route = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init)
    const url = new URL(request.url)
    if (url.origin === ISSUER) {
      return callWith(vars, `${url.pathname}${url.search}`, {
        method: request.method,
        headers: request.headers,
        redirect: 'manual',
        ...(request.method === 'GET' || request.method === 'HEAD'
          ? {}
          : { body: await request.arrayBuffer() }),
      })
    }
    if (url.origin === MCP_ORIGIN) {
      mcp ??= createMcpServerHandler({ issuer: ISSUER, resource: MCP_URL, scope: SCOPE, fetch: route })
      return mcp(request)
    }
    throw new TypeError(`no route to ${url.origin}`)
  }
  return route as typeof fetch
}

/** What an MCP client application keeps: the SDK asks it for these (OAuthClientProvider). */
class MemoryProvider implements OAuthClientProvider {
  information: OAuthClientInformationMixed | undefined
  stored: OAuthTokens | undefined
  verifier = ''
  authorizationUrl: URL | undefined
  constructor(
    private readonly metadata: OAuthClientMetadata,
    readonly clientMetadataUrl?: string,
  ) {}
  get redirectUrl(): string {
    return REDIRECT
  }
  get clientMetadata(): OAuthClientMetadata {
    return this.metadata
  }
  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.information
  }
  saveClientInformation(information: OAuthClientInformationMixed): void {
    this.information = information
  }
  tokens(): OAuthTokens | undefined {
    return this.stored
  }
  saveTokens(tokens: OAuthTokens): void {
    this.stored = tokens
  }
  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url
  }
  saveCodeVerifier(verifier: string): void {
    this.verifier = verifier
  }
  codeVerifier(): string {
    return this.verifier
  }
}

const CLIENT_METADATA: OAuthClientMetadata = {
  client_name: 'SDK test client',
  redirect_uris: [REDIRECT],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}

/** A fresh SDK client over a fresh transport (as an application does after finishing auth). */
function connect(provider: MemoryProvider, fetchFn: typeof fetch) {
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
    authProvider: provider,
    fetch: fetchFn,
  })
  const client = new Client({ name: 'portcullis-sdk-test', version: '1.0.0' })
  return { client, transport }
}

/**
 * The whole first connection: refused (401 with resource_metadata), the SDK discovers Portcullis,
 * registers or names its document, and sends the user to /oauth/authorize; the user signs in and
 * approves; the SDK exchanges the code; the next connection calls the tool.
 */
async function authorizeAndCall(
  provider: MemoryProvider,
  vars: Vars,
): Promise<{ text: string; fetchFn: typeof fetch }> {
  const fetchFn = network(vars)
  const first = connect(provider, fetchFn)
  await expect(first.client.connect(first.transport)).rejects.toThrow(UnauthorizedError)
  const authorizationUrl = provider.authorizationUrl
  if (authorizationUrl === undefined) {
    throw new Error('the SDK did not send the user to the authorization endpoint')
  }
  expect(authorizationUrl.origin).toBe(ISSUER)
  expect(authorizationUrl.searchParams.get('resource')).toBe(MCP_URL)
  expect(authorizationUrl.searchParams.get('scope')?.split(' ')).toContain(SCOPE)
  const user = await seedUser()
  const page = await callWith(vars, `${authorizationUrl.pathname}${authorizationUrl.search}`, {
    redirect: 'manual',
    headers: { cookie: user.cookie, accept: 'text/html' },
  })
  expect(page.status, await describeResponse(page)).toBe(200)
  const location = await approveConsent(page, user)
  const code = new URL(location ?? '').searchParams.get('code')
  if (code === null) {
    throw new Error(`no code: ${location}`)
  }
  await first.transport.finishAuth(code)
  const second = connect(provider, fetchFn)
  await second.client.connect(second.transport)
  const result = await second.client.callTool({ name: 'whoami', arguments: {} })
  await second.client.close()
  const content = result.content as { type: string; text: string }[]
  return { text: content[0]?.text ?? '', fetchFn }
}

describe('the MCP SDK client against the example MCP server and Portcullis (issue 11)', () => {
  it('dynamic registration with the server-defined scope mcp:tools ends in a tool call', async () => {
    await ensureResourceServer(MCP_URL, [{ name: SCOPE, description: 'Use the example MCP tools' }])
    const provider = new MemoryProvider(CLIENT_METADATA)
    const { text } = await authorizeAndCall(provider, BASE_VARS)
    expect(text).toMatch(/^user [0-9a-f-]{36} through client \S+ with scopes .*mcp:tools/)
    // Registered by the SDK (RFC 7591) with the resource server's own scope.
    expect(provider.information?.client_id).toBeTruthy()
    expect(String((provider.information as { scope?: string }).scope).split(' ')).toContain(SCOPE)
    const claims = decodeJwt(provider.stored?.access_token ?? '')
    expect(claims.aud).toBe(MCP_URL)
  })

  it('a Client ID Metadata Document served from loopback ends in a tool call', async () => {
    await ensureResourceServer(MCP_URL, [{ name: SCOPE, description: 'Use the example MCP tools' }])
    const fake = new URL(inject('fakeOutboundUrl'))
    // The SDK accepts only an https client_id URL. The loopback fake site speaks plain http, so
    // while this test runs, Portcullis's outbound fetches to it go over http (a TLS stand-in):
    // the URL, its checks and the fetch rules are the https ones.
    const path = `/doc/${crypto.randomUUID()}`
    const clientId = `https://${fake.host}${path}`
    const put = await fetch(`${fake.origin}${path}`, {
      method: 'PUT',
      body: JSON.stringify({
        headers: { 'cache-control': 'max-age=300' },
        body: JSON.stringify({ client_id: clientId, ...CLIENT_METADATA, scope: SCOPE }),
      }),
    })
    expect(put.status).toBe(200)
    const realFetch = globalThis.fetch
    globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init)
      return request.url.startsWith(`https://${fake.host}/`)
        ? realFetch(new Request(request.url.replace(/^https:/, 'http:'), request))
        : realFetch(request)
    }) as typeof fetch
    try {
      const provider = new MemoryProvider(CLIENT_METADATA, clientId)
      const { text } = await authorizeAndCall(provider, BASE_VARS)
      expect(text).toContain(`through client ${clientId} with scopes`)
      // No registration: the document URL is the client_id.
      expect(provider.information?.client_id).toBe(clientId)
      expect(decodeJwt(provider.stored?.access_token ?? '').client_id).toBe(clientId)
    } finally {
      globalThis.fetch = realFetch
    }
    const hits = (await (await fetch(`${fake.origin}/__hits${path}`)).json()) as { hits: number }
    expect(hits.hits).toBe(1)
  })

  it('after the access token expires, the SDK refreshes it and the tool call goes through', async () => {
    await ensureResourceServer(MCP_URL, [{ name: SCOPE, description: 'Use the example MCP tools' }])
    const vars = { ...BASE_VARS, ACCESS_TOKEN_TTL: '2' }
    const provider = new MemoryProvider(CLIENT_METADATA)
    const { fetchFn } = await authorizeAndCall(provider, vars)
    const before = provider.stored
    expect(before?.refresh_token).toBeTruthy()
    expect(before?.expires_in).toBeLessThanOrEqual(2)
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    // The example server now refuses the old token (expired), saying where to get another.
    const stale = await fetchFn(MCP_URL, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${before?.access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    })
    expect(stale.status).toBe(401)
    expect(stale.headers.get('www-authenticate')).toMatch(/error="invalid_token"/)
    const again = connect(provider, fetchFn)
    await again.client.connect(again.transport)
    const result = await again.client.callTool({ name: 'whoami', arguments: {} })
    await again.client.close()
    expect((result.content as { text: string }[])[0]?.text).toContain(SCOPE)
    expect(provider.stored?.access_token).not.toBe(before?.access_token)
    expect(provider.stored?.refresh_token).not.toBe(before?.refresh_token)
    expect(decodeJwt(provider.stored?.access_token ?? '').aud).toBe(MCP_URL)
  })

  it('issue 15: the SDK PrivateKeyJwtProvider (client_credentials with private_key_jwt) calls the tool', async () => {
    await ensureResourceServer(MCP_URL, [{ name: SCOPE, description: 'Use the example MCP tools' }])
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const client = await adminClient({
      client_name: 'SDK agent',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: 'ES256',
      jwks: { keys: [{ ...(await exportJWK(publicKey)), use: 'sig', alg: 'ES256' }] },
      scope: SCOPE,
    })
    const provider = new PrivateKeyJwtProvider({
      clientId: client.client_id,
      privateKey: { ...(await exportJWK(privateKey)), alg: 'ES256' },
      algorithm: 'ES256',
      scope: SCOPE,
      expectedIssuer: ISSUER,
    })
    const fetchFn = network(BASE_VARS)
    const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
      authProvider: provider,
      fetch: fetchFn,
    })
    const mcp = new Client({ name: 'portcullis-sdk-agent', version: '1.0.0' })
    await mcp.connect(transport)
    const result = await mcp.callTool({ name: 'whoami', arguments: {} })
    await mcp.close()
    expect((result.content as { text: string }[])[0]?.text).toBe(
      `user ${client.client_id} through client ${client.client_id} with scopes ${SCOPE}`,
    )
    const claims = decodeJwt(provider.tokens()?.access_token ?? '')
    expect(claims.aud).toBe(MCP_URL)
    expect(claims.sub).toBe(client.client_id)
  })
})
