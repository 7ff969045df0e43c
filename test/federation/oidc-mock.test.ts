import { describe, expect, inject, it } from 'vitest'
import { uniqueEmail } from '../helpers/accounts'
import { unique } from '../helpers/db'
import type { MockUser } from '../setup/oidc-mock'
import {
  authorizeThroughProvider,
  beginFlow,
  cookieOf,
  createStoredProvider,
  FED,
  finish,
  identitiesOf,
  sessionUser,
  usersWithEmail,
} from './flow'

/**
 * The generic OpenID flow against `oauth2-mock-server` (started by the suite's global setup on
 * 127.0.0.1): discovery, PKCE S256 (the mock checks the verifier), nonce, RS256 ID tokens from its
 * JWKS, userinfo. The mock accepts any client secret; the hand-written fake checks that part.
 */
const issuer = inject('oidcMockUrl')
const MOCK = {
  ...FED,
  OIDC_PROVIDERS: JSON.stringify([
    {
      id: 'mock',
      name: 'Mock OpenID',
      issuer,
      client_id: 'portcullis-mock-client',
      client_secret: 'mock-secret',
    },
  ]),
}

function mockUser(extra: Partial<MockUser> = {}): MockUser {
  return {
    sub: unique('mock-sub'),
    email: uniqueEmail(),
    email_verified: true,
    name: 'Mock Person',
    ...extra,
  }
}

async function signInAtMock(user: MockUser, provider = 'mock', vars: Record<string, string> = MOCK) {
  const flow = await beginFlow(provider, user, { vars, userParam: 'mock_user' })
  return finish(flow, vars)
}

describe('generic OpenID provider: oauth2-mock-server', () => {
  it('signs up by (provider, sub) with the verified email, and signs the same sub in again', async () => {
    const user = mockUser()
    const flow = await beginFlow('mock', user, { vars: MOCK, userParam: 'mock_user' })
    const upstream = new URL(flow.start.headers.get('location') ?? '')
    expect(upstream.origin).toBe(issuer)
    expect(upstream.searchParams.get('nonce')).toMatch(/.+/)
    expect(upstream.searchParams.get('code_challenge_method')).toBe('S256')
    const res = await finish(flow, MOCK)
    expect(res.status, await res.clone().text()).toBe(303)
    const me = await sessionUser(res)
    expect(me.email).toBe(user.email)
    const [identity] = await identitiesOf('mock', user.sub)
    expect(identity?.userId).toBe(me.id)
    const again = await signInAtMock({ ...user, email: uniqueEmail() })
    expect((await sessionUser(again)).id).toBe(me.id)
  })

  it('a database provider pointing at the mock works end to end', async () => {
    const vars = { ...MOCK, OUTBOUND_ALLOW_LOOPBACK: 'true' }
    const { slug } = await createStoredProvider(vars, { issuer, client_id: 'db-client', client_secret: 's' })
    const user = mockUser()
    const res = await signInAtMock(user, slug, vars)
    expect(res.status).toBe(303)
    expect((await sessionUser(res)).email).toBe(user.email)
  })

  it('works inside /oauth/authorize: login → the provider → consent → the client redirect with a code', async () => {
    const { redirect, redirectUri } = await authorizeThroughProvider('mock', mockUser(), {
      vars: MOCK,
      userParam: 'mock_user',
    })
    expect(`${redirect.origin}${redirect.pathname}`).toBe(redirectUri)
    expect(redirect.searchParams.get('code')).toMatch(/.+/)
    expect(redirect.searchParams.get('state')).toBe('client-state')
  })

  it('wrong aud, wrong nonce, a token endpoint 500, an error from the provider, an unverified email: a clear page and no account', async () => {
    for (const [extra, status, words] of [
      [{ behavior: 'wrong_aud' }, 502, 'did not work'],
      [{ behavior: 'wrong_nonce' }, 502, 'did not work'],
      [{ behavior: 'token_500' }, 502, 'did not work'],
      [{ behavior: 'access_denied' }, 400, 'You cancelled'],
      [{ email_verified: false }, 400, 'verified email'],
    ] as const) {
      const user = mockUser(extra)
      const res = await signInAtMock(user)
      expect(res.status, JSON.stringify(extra)).toBe(status)
      expect(await res.text()).toContain(words)
      expect(cookieOf(res, 'portcullis_session')).toBeUndefined()
      expect(await usersWithEmail(user.email ?? '')).toHaveLength(0)
      expect(await identitiesOf('mock', user.sub)).toHaveLength(0)
    }
  })

  it('a replayed callback is refused: the mock’s code is exchanged once, the state is single use', async () => {
    const user = mockUser()
    const flow = await beginFlow('mock', user, { vars: MOCK, userParam: 'mock_user' })
    expect((await finish(flow, MOCK)).status).toBe(303)
    const replay = await finish(flow, MOCK)
    expect(replay.status).toBe(400)
    expect(await replay.text()).toContain('expired or was already used')
    expect(await identitiesOf('mock', user.sub)).toHaveLength(1)
  })
})
