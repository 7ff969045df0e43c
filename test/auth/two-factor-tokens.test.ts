import { describe, expect, it } from 'vitest'
import { ACR_BASIC, ACR_MFA } from '../../functions/auth/acr'
import { type SeededUser, seedUser, sessionCookieOf } from '../helpers/accounts'
import { codeAt, enrol, firstStep, secondStep } from '../helpers/mfa'
import {
  authorize,
  basicAuth,
  codeRequest,
  exchangeCode,
  obtainCode,
  pkce,
  postForm,
  refresh,
  type TestClient,
  type TokenSet,
  verifyIdToken,
  webClient,
} from '../helpers/oauth'
import { call } from '../helpers/worker'

const SCOPE = 'openid email offline_access'

/** A user with TOTP on, signed in with password and code (a session whose amr is pwd+otp+mfa). */
async function signedInWithTotp(): Promise<SeededUser> {
  const user = await seedUser({ session: true })
  const { secret } = await enrol(user)
  const ok = await secondStep(await firstStep(user), await codeAt(secret, 1))
  expect(ok.status).toBe(200)
  return { ...user, cookie: `portcullis_session=${sessionCookieOf(ok)}` }
}

async function claimsOf(client: TestClient, tokens: TokenSet) {
  return verifyIdToken(tokens.id_token, { clientId: client.client_id })
}

async function tokensFor(client: TestClient, user: SeededUser): Promise<TokenSet> {
  const res = await exchangeCode(client, await obtainCode(client, user))
  expect(res.status).toBe(200)
  return (await res.json()) as TokenSet
}

async function refreshed(client: TestClient, tokens: TokenSet): Promise<TokenSet> {
  const res = await refresh(client, tokens.refresh_token ?? '')
  expect(res.status, await res.clone().text()).toBe(200)
  return (await res.json()) as TokenSet
}

describe('amr and acr in ID tokens', () => {
  it('carries the sign-in methods through every refresh: pwd+otp+mfa stays acr mfa', async () => {
    const client = await webClient({ scope: SCOPE })
    const user = await signedInWithTotp()
    const first = await tokensFor(client, user)
    expect(await claimsOf(client, first)).toMatchObject({ amr: ['pwd', 'otp', 'mfa'], acr: ACR_MFA })
    const second = await refreshed(client, first)
    expect(await claimsOf(client, second)).toMatchObject({ amr: ['pwd', 'otp', 'mfa'], acr: ACR_MFA })
    const third = await refreshed(client, second)
    expect(await claimsOf(client, third)).toMatchObject({ amr: ['pwd', 'otp', 'mfa'], acr: ACR_MFA })
  })

  it('a password sign-in stays pwd, acr basic, at refresh', async () => {
    const client = await webClient({ scope: SCOPE })
    const user = await seedUser({ session: true })
    const first = await tokensFor(client, user)
    expect(await claimsOf(client, first)).toMatchObject({ amr: ['pwd'], acr: ACR_BASIC })
    expect(await claimsOf(client, await refreshed(client, first))).toMatchObject({
      amr: ['pwd'],
      acr: ACR_BASIC,
    })
  })

  it('discovery advertises acr_values_supported and the acr claim', async () => {
    const meta = (await (await call('/.well-known/openid-configuration')).json()) as Record<string, unknown>
    expect(meta.acr_values_supported).toEqual([ACR_BASIC, ACR_MFA])
    expect(meta.claims_supported).toEqual(expect.arrayContaining(['amr', 'acr']))
  })
})

describe('acr_values=urn:portcullis:acr:mfa (step-up)', () => {
  async function authorizeMfa(client: TestClient, user: SeededUser, extra: Record<string, string> = {}) {
    const p = await pkce()
    return authorize(
      codeRequest(client, p, {
        scope: SCOPE,
        state: 'st',
        acr_values: ACR_MFA,
        ...extra,
      }),
      user.cookie,
    )
  }

  it('sends a one-factor session of a user with a factor back to sign in, keeping acr_values', async () => {
    const client = await webClient({ scope: SCOPE, first_party: true })
    const user = await seedUser({ session: true })
    await enrol(user)
    const res = await authorizeMfa(client, user)
    expect(res.status).toBe(302)
    const location = new URL(res.headers.get('location') ?? '', 'http://x')
    expect(location.pathname).toBe('/login')
    expect(location.searchParams.get('return_to')).toContain('acr_values=')
    const none = await authorizeMfa(client, user, { prompt: 'none' })
    expect(new URL(none.headers.get('location') ?? '').searchParams.get('error')).toBe('interaction_required')
  })

  it('honours acr_values from a pushed request (RFC 9126) too', async () => {
    const client = await webClient({ scope: SCOPE, first_party: true })
    const user = await seedUser({ session: true })
    await enrol(user)
    const p = await pkce()
    const pushed = await postForm(
      '/oauth/par',
      {
        response_type: 'code',
        redirect_uri: client.redirect_uris[0] ?? '',
        scope: SCOPE,
        state: 'st',
        code_challenge: p.challenge,
        code_challenge_method: 'S256',
        acr_values: ACR_MFA,
      },
      basicAuth(client),
    )
    expect(pushed.status).toBe(201)
    const { request_uri } = (await pushed.json()) as { request_uri: string }
    const res = await authorize({ client_id: client.client_id, request_uri }, user.cookie)
    expect(res.status).toBe(302)
    expect(new URL(res.headers.get('location') ?? '', 'http://x').pathname).toBe('/login')
  })

  it('lets a two-factor session through, and a user without a factor on at the basic level', async () => {
    const client = await webClient({ scope: SCOPE })
    const strong = await signedInWithTotp()
    const tokens = await tokensFor(client, strong)
    expect(await claimsOf(client, tokens)).toMatchObject({ acr: ACR_MFA })
    const viaMfa = await obtainCode(client, strong, { acr_values: ACR_MFA })
    expect(viaMfa.code).toBeTruthy()
    const plain = await seedUser({ session: true })
    const basic = await obtainCode(client, plain, { acr_values: ACR_MFA })
    const res = await exchangeCode(client, basic)
    expect(await claimsOf(client, (await res.json()) as TokenSet)).toMatchObject({ acr: ACR_BASIC })
  })
})
