import { type OAuthHelpers, OAuthProvider } from '@cloudflare/workers-oauth-provider'

/**
 * Peer: Cloudflare's workers-oauth-provider in a minimal Worker, grants and tokens in KV.
 * `GET /seed` stands in for a user approving the authorization page: it creates a public
 * client (once per isolate) and completes an authorization, answering the code, client id,
 * redirect URI and PKCE verifier for the bench to exchange at `/token`. `/api/*` is the
 * bearer-protected route.
 */
interface Env {
  OAUTH_KV: KVNamespace
  OAUTH_PROVIDER: OAuthHelpers
  /** This Worker's own origin (the bench sets it once the port is known). */
  BASE_URL: string
}

const REDIRECT_URI = 'http://127.0.0.1:9/callback'
let clientId: Promise<string> | undefined

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replaceAll('+', '-')
    .replaceAll('/', '_')
    .replace(/=+$/, '')
}

async function seed(helpers: OAuthHelpers): Promise<Response> {
  clientId ??= helpers
    .createClient({
      redirectUris: [REDIRECT_URI],
      tokenEndpointAuthMethod: 'none',
      grantTypes: ['authorization_code', 'refresh_token'],
      responseTypes: ['code'],
      clientName: 'bench',
    })
    .then((client) => client.clientId)
  const id = await clientId
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)))
  const challenge = base64url(
    new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))),
  )
  const { redirectTo } = await helpers.completeAuthorization({
    request: {
      responseType: 'code',
      clientId: id,
      redirectUri: REDIRECT_URI,
      scope: ['read'],
      state: 'bench',
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
    },
    userId: 'bench-user',
    metadata: {},
    scope: ['read'],
    props: { userId: 'bench-user' },
    revokeExistingGrants: false,
  })
  const code = new URL(redirectTo).searchParams.get('code')
  return Response.json({ code, client_id: id, redirect_uri: REDIRECT_URI, code_verifier: verifier })
}

const defaultHandler = {
  async fetch(request: Request, env: Env): Promise<Response> {
    const { pathname } = new URL(request.url)
    if (pathname === '/seed') {
      return seed(env.OAUTH_PROVIDER)
    }
    if (pathname === '/ready') {
      return new Response('ok')
    }
    return new Response('not found', { status: 404 })
  },
}

const apiHandler = {
  async fetch(_request: Request, _env: Env, ctx: ExecutionContext & { props?: unknown }): Promise<Response> {
    return Response.json({ ok: true, props: ctx.props ?? null })
  },
}

let provider: OAuthProvider<Env> | undefined

// The resource identifier is this Worker's own URL, known only from the binding: build once per isolate.
function providerFor(env: Env): OAuthProvider<Env> {
  provider ??= new OAuthProvider<Env>({
    apiRoute: `${env.BASE_URL}/api/`,
    apiHandler,
    defaultHandler,
    authorizeEndpoint: '/authorize',
    tokenEndpoint: '/token',
    clientRegistrationEndpoint: '/register',
    scopesSupported: ['read'],
    resourceMetadata: { resource: `${env.BASE_URL}/api/`, authorization_servers: [env.BASE_URL] },
  })
  return provider
}

// Default export: the Workers runtime reads the module's default.
export default {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    return providerFor(env).fetch(request, env, ctx)
  },
} satisfies ExportedHandler<Env>
