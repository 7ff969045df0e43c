import type { IncomingMessage } from 'node:http'
import { OAuth2Server } from 'oauth2-mock-server'

/**
 * Who signs in at the mock, chosen by the test: the `mock_user` query parameter of the
 * authorization request (base64url JSON). `behavior` scripts a failure.
 */
export interface MockUser {
  sub: string
  email?: string
  email_verified?: boolean
  name?: string
  behavior?: 'wrong_aud' | 'wrong_nonce' | 'token_500' | 'access_denied'
}

/**
 * The generic OpenID provider of the tests: `oauth2-mock-server` (a maintained npm mock) on a
 * loopback port. It serves discovery, JWKS, authorize, token (checks PKCE; puts the request's
 * nonce in the ID token) and userinfo; its hooks give each authorization the user the test
 * named, so every test signs in as someone of its own.
 */
export async function startOidcMock(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = new OAuth2Server()
  await server.issuer.keys.generate('RS256')
  const byCode = new Map<string, MockUser>()
  const byAccessToken = new Map<string, MockUser>()
  const userOfCode = (req: IncomingMessage & { body?: unknown }) => {
    const body = req.body as Record<string, unknown> | undefined
    return typeof body?.code === 'string' ? byCode.get(body.code) : undefined
  }

  server.service.on('beforeAuthorizeRedirect', (redirect: { url: URL }, req: IncomingMessage) => {
    const scripted = new URL(req.url ?? '/', 'http://mock').searchParams.get('mock_user')
    const code = redirect.url.searchParams.get('code')
    if (scripted === null || code === null) {
      return
    }
    const user = JSON.parse(Buffer.from(scripted, 'base64url').toString()) as MockUser
    if (user.behavior === 'access_denied') {
      redirect.url.searchParams.delete('code')
      redirect.url.searchParams.set('error', 'access_denied')
      return
    }
    byCode.set(code, user)
  })
  server.service.on(
    'beforeTokenSigning',
    (token: { payload: Record<string, unknown> }, req: IncomingMessage & { body?: unknown }) => {
      const user = userOfCode(req)
      if (user === undefined) {
        return
      }
      token.payload.sub = user.sub
      token.payload.email = user.email
      token.payload.email_verified = user.email_verified
      if (user.behavior === 'wrong_aud') {
        token.payload.aud = 'someone-else'
      }
      if (user.behavior === 'wrong_nonce') {
        token.payload.nonce = 'not-the-nonce'
      }
    },
  )
  server.service.on(
    'beforeResponse',
    (
      response: { body: Record<string, unknown>; statusCode: number },
      req: IncomingMessage & { body?: unknown },
    ) => {
      const user = userOfCode(req)
      if (user === undefined) {
        return
      }
      if (user.behavior === 'token_500') {
        response.statusCode = 500
        response.body = { error: 'server_error' }
        return
      }
      if (typeof response.body.access_token === 'string') {
        byAccessToken.set(response.body.access_token, user)
      }
    },
  )
  server.service.on('beforeUserinfo', (response: { body: Record<string, unknown> }, req: IncomingMessage) => {
    const user = byAccessToken.get(req.headers.authorization?.replace(/^Bearer /i, '') ?? '')
    if (user !== undefined) {
      response.body = {
        sub: user.sub,
        email: user.email,
        email_verified: user.email_verified,
        name: user.name,
      }
    }
  })
  await server.start(0, '127.0.0.1')
  return { url: server.issuer.url ?? '', close: () => server.stop() }
}
