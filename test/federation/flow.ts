import { and, eq, sql } from 'drizzle-orm'
import { expect, inject } from 'vitest'
import { externalIdentities, users } from '../../db/schema'
import { uniqueEmail } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { approveConsent, exchangeCode, obtainCode, pkce, type SeededUser, webClient } from '../helpers/oauth'
import { adminHeaders, BASE, callWith } from '../helpers/worker'
import { FAKE_CLIENT_ID, FAKE_CLIENT_SECRET } from '../setup/fake-federation'

export const fake = inject('fakeFederationUrl')

/** A deployment with GitHub and one OpenID provider, both pointing at the loopback fakes. */
export const FED = {
  GITHUB_CLIENT_ID: FAKE_CLIENT_ID,
  GITHUB_CLIENT_SECRET: FAKE_CLIENT_SECRET,
  GITHUB_BASE_URL: `${fake}/github`,
  GITHUB_API_URL: `${fake}/github-api`,
  OIDC_PROVIDERS: JSON.stringify([
    {
      id: 'acme',
      name: 'Acme SSO',
      issuer: `${fake}/oidc`,
      client_id: FAKE_CLIENT_ID,
      client_secret: FAKE_CLIENT_SECRET,
    },
  ]),
}

export type Vars = Record<string, string>

export interface FakeUser {
  expires_in?: number
  id?: number
  login?: string
  orgs?: string[]
  emails?: { email: string; primary: boolean; verified: boolean }[]
  sub?: string
  email?: string
  email_verified?: boolean
  behavior?: string
}

export function githubUser(email = uniqueEmail(), extra: Partial<FakeUser> = {}): FakeUser {
  return {
    id: Math.floor(Math.random() * 1e12),
    login: unique('octo'),
    emails: [
      { email: `other-${email}`, primary: false, verified: true },
      { email, primary: true, verified: true },
    ],
    ...extra,
  }
}

export function oidcUser(email = uniqueEmail(), extra: Partial<FakeUser> = {}): FakeUser {
  return { sub: unique('sub'), email, email_verified: true, ...extra }
}

export function cookieOf(res: Response, name: string): string | undefined {
  const all = res.headers.getSetCookie()
  const line = all.find((c) => c.startsWith(`${name}=`))
  const value = line?.split(';')[0]?.slice(name.length + 1)
  return value === undefined || value === '' ? undefined : value
}

export interface Flow {
  start: Response
  /** The callback path with code and state, as the provider sent the browser back. */
  callbackPath: string
  flowCookie: string
}

/** GET /federated/{provider}/start, then the fake provider's authorization endpoint. */
export async function beginFlow(
  provider: string,
  user: FakeUser | object,
  options: {
    vars?: Vars
    returnTo?: string
    cookie?: string
    providerError?: string
    /** The authorization request's parameter naming the user: `mock_user` at oauth2-mock-server. */
    userParam?: string
  } = {},
): Promise<Flow> {
  const vars = { ...FED, ...options.vars }
  const start = await callWith(
    vars,
    `/federated/${provider}/start?return_to=${encodeURIComponent(options.returnTo ?? '/welcome')}`,
    { redirect: 'manual', headers: options.cookie === undefined ? {} : { cookie: options.cookie } },
  )
  expect(start.status, await start.clone().text()).toBe(302)
  const upstream = new URL(start.headers.get('location') ?? '')
  expect(upstream.searchParams.get('code_challenge_method')).toBe('S256')
  upstream.searchParams.set(
    options.userParam ?? 'fake_user',
    Buffer.from(JSON.stringify(user)).toString('base64url'),
  )
  if (options.providerError !== undefined) {
    upstream.searchParams.set('fake_error', options.providerError)
  }
  const back = await fetch(upstream, { redirect: 'manual' })
  expect(back.status).toBe(302)
  const callback = new URL(back.headers.get('location') ?? '')
  const flowCookie = cookieOf(start, 'portcullis_federated') ?? ''
  expect(flowCookie).not.toBe('')
  return { start, callbackPath: `${callback.pathname}${callback.search}`, flowCookie }
}

export function finish(flow: Flow, vars: Vars = {}, cookie = `portcullis_federated=${flow.flowCookie}`) {
  return callWith({ ...FED, ...vars }, flow.callbackPath, { redirect: 'manual', headers: { cookie } })
}

export async function signIn(provider: string, user: FakeUser | object, vars: Vars = {}) {
  const flow = await beginFlow(provider, user, { vars })
  return finish(flow, vars)
}

export async function identitiesOf(provider: string, subject: string) {
  return testDb()
    .select()
    .from(externalIdentities)
    .where(and(eq(externalIdentities.provider, provider), eq(externalIdentities.subject, subject)))
}

export async function usersWithEmail(email: string) {
  return testDb().select().from(users).where(sql`lower(${users.email}) = lower(${email})`)
}

export async function sessionUser(res: Response): Promise<{ id: string; email: string }> {
  const token = cookieOf(res, 'portcullis_session')
  expect(token).toBeDefined()
  const me = await callWith(FED, '/auth/session', { headers: { cookie: `portcullis_session=${token}` } })
  expect(me.status).toBe(200)
  return ((await me.json()) as { user: { id: string; email: string } }).user
}

/**
 * A client's /oauth/authorize that needs a login, through the provider: authorize → /login's
 * return_to → the provider → back signed in → consent approved. Returns the client's redirect.
 */
export async function authorizeThroughProvider(
  provider: string,
  user: FakeUser | object,
  options: { vars?: Vars; userParam?: string } = {},
): Promise<{ redirect: URL; redirectUri: string }> {
  const vars = { ...FED, ...options.vars }
  const client = await webClient()
  const p = await pkce()
  const redirectUri = client.redirect_uris[0] ?? ''
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: redirectUri,
    code_challenge: p.challenge,
    code_challenge_method: 'S256',
    scope: 'openid email',
    state: 'client-state',
  })
  const authorize = await callWith(vars, `/oauth/authorize?${query}`, { redirect: 'manual' })
  expect(authorize.status).toBe(302)
  const login = new URL(authorize.headers.get('location') ?? '', BASE)
  expect(login.pathname).toBe('/login')
  const returnTo = login.searchParams.get('return_to') ?? ''
  const flow = await beginFlow(provider, user, { vars: options.vars, returnTo, userParam: options.userParam })
  const done = await finish(flow, options.vars)
  expect(done.status).toBe(303)
  expect(done.headers.get('location')).toBe(returnTo)
  const session = `portcullis_session=${cookieOf(done, 'portcullis_session')}`
  const consent = await callWith(vars, returnTo, { redirect: 'manual', headers: { cookie: session } })
  expect(consent.status).toBe(200)
  const location = await approveConsent(consent, {
    id: '',
    tenantId: '',
    email: '',
    password: '',
    cookie: session,
    headers: { cookie: session },
  })
  return { redirect: new URL(location ?? ''), redirectUri }
}

/** A stored OpenID provider's body for the admin API, pointing at the loopback fake. */
export function oidcBody(extra: Record<string, unknown> = {}) {
  return {
    slug: unique('sso').toLowerCase().slice(0, 32),
    kind: 'oidc',
    name: `SSO ${unique('n')}`,
    issuer: `${fake}/oidc`,
    client_id: FAKE_CLIENT_ID,
    client_secret: FAKE_CLIENT_SECRET,
    ...extra,
  }
}

export interface StoredProviderJson {
  id: string
  slug: string
  kind: string
  name: string
  tenant_id: string | null
  enabled: boolean
  client_id: string
  login_url: string
  redirect_uri: string
}

/** A platform provider made through POST /admin/identity-providers (vars need OUTBOUND_ALLOW_LOOPBACK). */
export async function createStoredProvider(
  vars: Vars,
  extra: Record<string, unknown> = {},
): Promise<StoredProviderJson> {
  const res = await callWith(vars, '/admin/identity-providers', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...adminHeaders() },
    body: JSON.stringify(oidcBody(extra)),
  })
  expect(res.status, await res.clone().text()).toBe(201)
  return (await res.json()) as StoredProviderJson
}

/**
 * An account signed in through `provider` and an access token of it for a client, with
 * `connections:read` unless `scope` says otherwise (what a resource server would hold).
 */
export async function accountWithToken(
  user: FakeUser | object,
  options: { provider?: string; scope?: string; vars?: Vars } = {},
) {
  const res = await signIn(options.provider ?? 'github', user, options.vars)
  expect(res.status).toBe(303)
  const cookie = `portcullis_session=${cookieOf(res, 'portcullis_session')}`
  const me = await sessionUser(res)
  const client = await webClient({ scope: 'openid connections:read' })
  const seeded: SeededUser = {
    id: me.id,
    tenantId: '',
    email: me.email,
    password: '',
    cookie,
    headers: { cookie },
  }
  const code = await obtainCode(client, seeded, { scope: options.scope ?? 'openid connections:read' })
  const tokens = (await (await exchangeCode(client, code)).json()) as { access_token: string }
  return { userId: me.id, cookie, accessToken: tokens.access_token }
}

/** `GET /connections/{provider}/token` with the user's access token. */
export function upstreamToken(accessToken: string, provider = 'github', vars: Vars = {}) {
  return callWith({ ...FED, ...vars }, `/connections/${provider}/token`, {
    headers: { authorization: `Bearer ${accessToken}` },
  })
}
