import { sql } from 'drizzle-orm'
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { agent, assertion, tokenWith } from '../helpers/agents'
import { testDb, unique } from '../helpers/db'
import { withFailingInserts } from '../helpers/faults'
import {
  ACCESS_TOKEN_TYPE,
  adminClient,
  basicAuth,
  clientCredentialsToken,
  exchangeCode,
  ISSUER,
  obtainCode,
  postForm,
  seedUser,
  type TestClient,
  TOKEN_EXCHANGE_GRANT,
  type TokenSet,
  tokenExchange,
  webClient,
} from '../helpers/oauth'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

const EXCHANGE = TOKEN_EXCHANGE_GRANT
const ACCESS = ACCESS_TOKEN_TYPE

async function issuedTo(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = 'token_issued' and client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function userToken(): Promise<{ token: string; app: TestClient; userId: string }> {
  const app = await webClient({ first_party: true })
  const user = await seedUser()
  const res = await exchangeCode(app, await obtainCode(app, user, { scope: 'openid email offline_access' }))
  const body = (await res.json()) as TokenSet
  expect(res.status, JSON.stringify(body)).toBe(200)
  return { token: body.access_token, app, userId: user.id }
}

function exchanger(extra: Record<string, unknown> = {}): Promise<TestClient> {
  return adminClient({ client_name: 'Orders API', grant_types: [EXCHANGE], scope: 'openid', ...extra })
}

const exchange = tokenExchange

async function downstream(): Promise<string> {
  const identifier = `https://${unique('billing')}.example.com/`
  const res = await postJson(
    '/admin/resource-servers',
    { identifier, display_name: 'Billing', scopes: [] },
    adminHeaders(),
  )
  expect(res.status, await res.clone().text()).toBe(201)
  return identifier
}

describe('token exchange (RFC 8693)', () => {
  it('exchanges a user token for a registered resource: narrowed scope, act names the client, not longer-lived', async () => {
    const { token, userId } = await userToken()
    const rs = await exchanger()
    const audience = await downstream()
    const res = await exchange(rs, { subject_token: token, audience, scope: 'email' })
    const body = (await res.json()) as TokenSet & { issued_token_type: string }
    expect(res.status, JSON.stringify(body)).toBe(200)
    expect(body.issued_token_type).toBe(ACCESS)
    expect(body.token_type).toBe('Bearer')
    expect(body.scope).toBe('email')
    const claims = decodeJwt(body.access_token)
    const subject = decodeJwt(token)
    expect(claims.sub).toBe(userId)
    expect(claims.aud).toBe(audience)
    expect(claims.client_id).toBe(rs.client_id)
    expect(claims.act).toEqual({ sub: rs.client_id })
    expect(claims.exp ?? 0).toBeLessThanOrEqual(subject.exp ?? 0)
    expect(await issuedTo(rs.client_id)).toBe(1)
  })

  it('for the issuer as audience the exchanged token works at userinfo; a second exchange nests act', async () => {
    const { token } = await userToken()
    const rs = await exchanger()
    const first = (await (await exchange(rs, { subject_token: token, resource: ISSUER })).json()) as TokenSet
    const info = await call('/oauth/userinfo', { headers: { authorization: `Bearer ${first.access_token}` } })
    expect(info.status).toBe(200)
    const rs2 = await exchanger({ client_name: 'Billing API' })
    const second = (await (await exchange(rs2, { subject_token: first.access_token })).json()) as TokenSet
    expect(decodeJwt(second.access_token).act).toEqual({ sub: rs2.client_id, act: { sub: rs.client_id } })
  })

  it.each([
    ['a widened scope', { scope: 'openid email profile' }, 'invalid_scope'],
    ['an unknown audience', { audience: 'https://unknown.example.com/' }, 'invalid_target'],
    [
      'audience and resource that differ',
      { audience: ISSUER, resource: 'https://x.example.com/' },
      'invalid_target',
    ],
    [
      'another subject_token_type',
      { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' },
      'invalid_request',
    ],
    ['an actor_token', { actor_token: 'x', actor_token_type: ACCESS }, 'invalid_request'],
    ['a garbage subject_token', { subject_token: 'a.b.c' }, 'invalid_grant'],
  ])('refuses %s with %s and issues nothing', async (_name, extra, error) => {
    const { token } = await userToken()
    const rs = await exchanger()
    const res = await exchange(rs, { subject_token: token, ...(extra as Record<string, string>) })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toBe(error)
    expect(await issuedTo(rs.client_id)).toBe(0)
  })

  it('a revoked subject token or a client token is invalid_grant', async () => {
    const { token, app } = await userToken()
    const rs = await exchanger()
    const revoked = await postForm('/oauth/revoke', { token }, basicAuth(app))
    expect(revoked.status).toBe(200)
    const res = await exchange(rs, { subject_token: token })
    expect(((await res.json()) as { error: string }).error).toBe('invalid_grant')
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const own = await exchange(rs, { subject_token: await clientCredentialsToken(machine) })
    expect(((await own.json()) as { error: string }).error).toBe('invalid_grant')
    expect(await issuedTo(rs.client_id)).toBe(0)
  })

  it('an agent’s exchange is counted with its token_issued row; a failing count (fault injected) records nothing and spends no assertion', async () => {
    const { token } = await userToken()
    const a = await agent('ES256', { grant_types: [EXCHANGE], scope: 'openid' })
    const counted = async (): Promise<number> => {
      const rows = await testDb().execute(
        sql`select coalesce(sum(u.success), 0)::int as n from oauth_client_usage_counters u
            join oauth_clients c on c.id = u.client_id
            where c.client_id = ${a.client.client_id} and u.grant_type = ${EXCHANGE}`,
      )
      return Number((rows.rows[0] as { n: number } | undefined)?.n ?? 0)
    }
    const form = { grant_type: EXCHANGE, subject_token: token, subject_token_type: ACCESS }
    const first = await tokenWith(await assertion(a), form)
    expect(first.status, await describeResponse(first)).toBe(200)
    expect(await issuedTo(a.client.client_id)).toBe(1)
    expect(await counted()).toBe(1)

    const signed = await assertion(a)
    await withFailingInserts('oauth_client_usage_counters', { clientId: a.client.client_id }, async () => {
      const failed = await tokenWith(signed, form)
      expect(failed.status).toBe(500)
    })
    // Nothing of the failed statement happened: no audit row, and the same assertion works, once.
    expect(await issuedTo(a.client.client_id)).toBe(1)
    expect(await counted()).toBe(1)
    const retried = await tokenWith(signed, form)
    expect(retried.status, await describeResponse(retried)).toBe(200)
    expect(await issuedTo(a.client.client_id)).toBe(2)
    expect(await counted()).toBe(2)
    const replayed = await tokenWith(signed, form)
    expect(replayed.status).toBe(401)
    expect(await issuedTo(a.client.client_id)).toBe(2)
  })

  it('is off by default: a client without the grant gets unauthorized_client; public or anonymous registration is refused', async () => {
    const { token } = await userToken()
    const plain = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await exchange(plain, { subject_token: token })
    expect(((await res.json()) as { error: string }).error).toBe('unauthorized_client')
    const pub = await postJson(
      '/admin/clients',
      { grant_types: [EXCHANGE], token_endpoint_auth_method: 'none', scope: 'openid' },
      adminHeaders(),
    )
    expect(pub.status).toBe(400)
    const anonymous = await postJson('/oauth/register', { grant_types: [EXCHANGE], scope: 'openid' })
    expect(anonymous.status).toBe(400)
    const meta = (await (await call('/.well-known/oauth-authorization-server')).json()) as {
      grant_types_supported: string[]
    }
    expect(meta.grant_types_supported).toContain(EXCHANGE)
  })
})
