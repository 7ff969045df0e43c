import { createHash, randomBytes } from 'node:crypto'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import type { TestProject } from 'vitest/node'
import { startOidcMock } from './oidc-mock'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of the fake upstream providers: GitHub under /github and /github-api, OIDC under /oidc. */
    fakeFederationUrl: string
    /** Issuer URL of the oauth2-mock-server generic OpenID provider (test/setup/oidc-mock.ts). */
    oidcMockUrl: string
  }
}

/** The client credentials both fakes accept (test/federation/*.test.ts configures them). */
export const FAKE_CLIENT_ID = 'portcullis-test-client'
export const FAKE_CLIENT_SECRET = 'portcullis-test-secret-0123456789'

/**
 * Who signs in at the fake, chosen by the test: the `fake_user` query parameter of the
 * authorization request (base64url JSON). `behavior` scripts a failure of the token endpoint or
 * the ID token.
 */
interface FakeUser {
  id?: number
  login?: string
  name?: string
  emails?: { email: string; primary: boolean; verified: boolean }[]
  orgs?: string[]
  sub?: string
  email?: string
  email_verified?: boolean
  /** GitHub App user tokens: they expire after this many seconds and come with a refresh token. */
  expires_in?: number
  behavior?:
    | 'token_500'
    | 'token_hang'
    | 'wrong_aud'
    | 'wrong_nonce'
    | 'bad_signature'
    | 'user_500'
    | 'refresh_refused'
}

function defaultUser(): FakeUser {
  const login = `octocat-${randomBytes(4).toString('hex')}`
  return {
    id: Number.parseInt(randomBytes(5).toString('hex'), 16),
    login,
    name: 'Browser Octocat',
    emails: [{ email: `${login}@example.com`, primary: true, verified: true }],
  }
}

interface Grant {
  user: FakeUser
  challenge: string
  redirectUri: string
  nonce: string | undefined
}

/**
 * A loopback fake GitHub (authorize, token, /user, /user/emails, /user/orgs) and a fake OpenID
 * provider (discovery, authorize, token with RS256 ID tokens, JWKS, userinfo). The authorize
 * endpoints approve at once and 302 back with a code; every code is single use and checked
 * against its PKCE challenge, client secret and redirect_uri. `GET /__stats` counts token calls.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [fake, mock] = await Promise.all([startFakeFederation(), startOidcMock()])
  project.provide('fakeFederationUrl', fake.url)
  project.provide('oidcMockUrl', mock.url)
  return async () => {
    await Promise.all([fake.close(), mock.close()])
  }
}

/** Starts the fakes on a free loopback port (vitest's globalSetup, and the browser harness). */
export async function startFakeFederation(): Promise<{ url: string; close: () => Promise<void> }> {
  const signing = await generateKeyPair('RS256')
  const impostor = await generateKeyPair('RS256')
  const publicJwk = { ...(await exportJWK(signing.publicKey)), kid: 'fake-1', alg: 'RS256', use: 'sig' }
  const grants = new Map<string, Grant>()
  const tokens = new Map<string, FakeUser>()
  const stats = { tokenRequests: 0 }
  // Per GitHub login: refresh grants served, and every token handed out (GET /__issued?login=).
  const refreshTokens = new Map<string, FakeUser>()
  const issued = new Map<string, { refreshes: number; tokens: string[] }>()
  const record = (user: FakeUser, ...values: string[]) => {
    const entry = issued.get(user.login ?? '') ?? { refreshes: 0, tokens: [] }
    entry.tokens.push(...values)
    issued.set(user.login ?? '', entry)
    return entry
  }
  let base = ''

  const json = (res: ServerResponse, status: number, payload: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(payload))
  }
  const authorize = (url: URL, res: ServerResponse) => {
    const redirectUri = url.searchParams.get('redirect_uri') ?? ''
    const state = url.searchParams.get('state') ?? ''
    const back = new URL(redirectUri)
    back.searchParams.set('state', state)
    const scriptedError = url.searchParams.get('fake_error')
    if (scriptedError !== null) {
      back.searchParams.set('error', scriptedError)
    } else {
      const scripted = url.searchParams.get('fake_user')
      // Without a script (a real browser clicking through): a fresh GitHub user each time.
      const user: FakeUser =
        scripted === null
          ? defaultUser()
          : (JSON.parse(Buffer.from(scripted, 'base64url').toString()) as FakeUser)
      const code = randomBytes(16).toString('hex')
      grants.set(code, {
        user,
        challenge: url.searchParams.get('code_challenge') ?? '',
        redirectUri,
        nonce: url.searchParams.get('nonce') ?? undefined,
      })
      back.searchParams.set('code', code)
    }
    res.writeHead(302, { location: back.toString() })
    res.end()
  }
  const token = async (body: URLSearchParams, res: ServerResponse, oidc: boolean) => {
    stats.tokenRequests++
    if (body.get('grant_type') === 'refresh_token') {
      const owner = refreshTokens.get(body.get('refresh_token') ?? '')
      if (owner === undefined || body.get('client_secret') !== FAKE_CLIENT_SECRET) {
        json(res, 400, { error: 'invalid_grant' })
        return
      }
      const entry = record(owner)
      entry.refreshes++
      // Slow enough that concurrent callers overlap with the one refreshing.
      await new Promise((resolve) => setTimeout(resolve, 150))
      if (owner.behavior === 'refresh_refused') {
        json(res, 400, { error: 'invalid_grant', error_description: 'The refresh token was revoked' })
        return
      }
      refreshTokens.delete(body.get('refresh_token') ?? '')
      const accessToken = `ghu_${randomBytes(16).toString('hex')}`
      const refreshToken = `ghr_${randomBytes(16).toString('hex')}`
      tokens.set(accessToken, owner)
      refreshTokens.set(refreshToken, owner)
      record(owner, accessToken, refreshToken)
      json(res, 200, {
        access_token: accessToken,
        refresh_token: refreshToken,
        expires_in: 28_800,
        token_type: 'bearer',
        scope: '',
      })
      return
    }
    const grant = grants.get(body.get('code') ?? '')
    grants.delete(body.get('code') ?? '')
    const verifier = body.get('code_verifier') ?? ''
    if (
      grant === undefined ||
      body.get('client_id') !== FAKE_CLIENT_ID ||
      body.get('client_secret') !== FAKE_CLIENT_SECRET ||
      body.get('redirect_uri') !== grant.redirectUri ||
      createHash('sha256').update(verifier).digest('base64url') !== grant.challenge
    ) {
      json(res, 400, { error: 'invalid_grant' })
      return
    }
    if (grant.user.behavior === 'token_500') {
      json(res, 500, { error: 'server_error' })
      return
    }
    if (grant.user.behavior === 'token_hang') {
      return // never answers: the caller's deadline must fire
    }
    const accessToken = randomBytes(16).toString('hex')
    tokens.set(accessToken, grant.user)
    if (!oidc) {
      record(grant.user, accessToken)
      if (grant.user.expires_in === undefined) {
        json(res, 200, { access_token: accessToken, token_type: 'bearer', scope: 'read:user,user:email' })
        return
      }
      const refreshToken = `ghr_${randomBytes(16).toString('hex')}`
      refreshTokens.set(refreshToken, grant.user)
      record(grant.user, refreshToken)
      json(res, 200, {
        access_token: accessToken,
        token_type: 'bearer',
        scope: '',
        expires_in: grant.user.expires_in,
        refresh_token: refreshToken,
      })
      return
    }
    const behavior = grant.user.behavior
    const idToken = await new SignJWT({
      nonce: behavior === 'wrong_nonce' ? 'not-the-nonce' : grant.nonce,
      email: grant.user.email,
      email_verified: grant.user.email_verified,
    })
      .setProtectedHeader({ alg: 'RS256', kid: 'fake-1' })
      .setIssuer(`${base}/oidc`)
      .setSubject(grant.user.sub ?? 'nobody')
      .setAudience(behavior === 'wrong_aud' ? 'someone-else' : FAKE_CLIENT_ID)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(behavior === 'bad_signature' ? impostor.privateKey : signing.privateKey)
    json(res, 200, { access_token: accessToken, token_type: 'Bearer', expires_in: 3600, id_token: idToken })
  }
  const bearer = (header: string | undefined) => tokens.get(header?.replace(/^Bearer /i, '') ?? '')

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', base)
      const body = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
      const path = url.pathname
      void (async () => {
        if (path === '/__stats') {
          return json(res, 200, stats)
        }
        if (path === '/__issued') {
          return json(res, 200, issued.get(url.searchParams.get('login') ?? '') ?? null)
        }
        if (path === '/github/login/oauth/authorize' || path === '/oidc/authorize') {
          return authorize(url, res)
        }
        if (path === '/github/login/oauth/access_token' && req.method === 'POST') {
          return token(body, res, false)
        }
        if (path === '/oidc/token' && req.method === 'POST') {
          return token(body, res, true)
        }
        if (path === '/oidc/.well-known/openid-configuration') {
          return json(res, 200, {
            issuer: `${base}/oidc`,
            authorization_endpoint: `${base}/oidc/authorize`,
            token_endpoint: `${base}/oidc/token`,
            jwks_uri: `${base}/oidc/jwks`,
            userinfo_endpoint: `${base}/oidc/userinfo`,
            response_types_supported: ['code'],
            subject_types_supported: ['public'],
            id_token_signing_alg_values_supported: ['RS256'],
          })
        }
        if (path === '/oidc/jwks') {
          return json(res, 200, { keys: [publicJwk] })
        }
        const user = bearer(req.headers.authorization)
        if (user === undefined) {
          return json(res, 401, { message: 'Bad credentials' })
        }
        if (path === '/oidc/userinfo') {
          return json(res, 200, {
            sub: user.sub,
            email: user.email,
            email_verified: user.email_verified,
            name: user.name,
          })
        }
        if (user.behavior === 'user_500') {
          return json(res, 500, { message: 'boom' })
        }
        if (path === '/github-api/user') {
          return json(res, 200, { id: user.id, login: user.login, name: user.name ?? null })
        }
        if (path === '/github-api/user/emails') {
          return json(res, 200, user.emails ?? [])
        }
        if (path === '/github-api/user/orgs') {
          return json(
            res,
            200,
            (user.orgs ?? []).map((login) => ({ login })),
          )
        }
        json(res, 404, { message: 'Not Found' })
      })().catch(() => json(res, 500, { message: 'fake failed' }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  base = `http://127.0.0.1:${port}`
  return {
    url: base,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
