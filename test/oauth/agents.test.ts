import { sql } from 'drizzle-orm'
import { exportJWK, generateKeyPair } from 'jose'
import { describe, expect, it } from 'vitest'
import { type Agent, ASSERTION_TYPE, agent, assertion, tokenWith } from '../helpers/agents'
import { testDb } from '../helpers/db'
import { withFailingInserts } from '../helpers/faults'
import {
  adminClient,
  basicAuth,
  ISSUER,
  obtainCode,
  pkce,
  postForm,
  seedUser,
  type TokenSet,
} from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse } from '../helpers/worker'
import { seedTenant } from '../tenants/fixtures'

async function issued(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = 'token_issued' and client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

interface Usage {
  client_id: string
  last_request_at: string | null
  totals: { success: number; failure: number }
  grant_types: { grant_type: string; success: number; failure: number }[]
  buckets: { start: string; success: number; failure: number }[]
}

async function usage(clientId: string, init: RequestInit = { headers: adminHeaders() }): Promise<Response> {
  return call(`/admin/clients/${encodeURIComponent(clientId)}/usage`, init)
}

function ccWith(a: Agent, extra: Record<string, string> = {}): Promise<Response> {
  return assertion(a).then((signed) => tokenWith(signed, { scope: 'apikeys:verify', ...extra }))
}

async function userAgent(): Promise<Agent> {
  return agent('ES256', {
    grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
    redirect_uris: ['https://agent.example.com/cb'],
    scope: 'apikeys:verify openid email offline_access',
  })
}

describe('agent clients (private_key_jwt): one round trip, keys that cannot go stale, usage', () => {
  it('client_credentials, authorization_code and refresh_token are 1 round trip in all once warm (cold: 2)', async () => {
    expect((await ccWith(await agent())).status).toBe(200) // warm the signing keys
    const a = await userAgent()
    const cold = await ccWith(a)
    expect(cold.status, await describeResponse(cold)).toBe(200)
    await expectRoundTrips(cold, { httpRequests: 2 })
    const warm = await ccWith(a)
    expect(warm.status, await describeResponse(warm)).toBe(200)
    await expectRoundTrips(warm, { httpRequests: 1 })

    const result = await obtainCode(a.client, await seedUser())
    const code = await tokenWith(await assertion(a), {
      grant_type: 'authorization_code',
      code: result.code,
      code_verifier: result.pkce.verifier,
      redirect_uri: result.redirectUri,
    })
    expect(code.status, await describeResponse(code)).toBe(200)
    await expectRoundTrips(code, { httpRequests: 1 })
    const tokens = (await code.json()) as TokenSet
    const rotated = await tokenWith(await assertion(a), {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token ?? '',
    })
    expect(rotated.status, await describeResponse(rotated)).toBe(200)
    await expectRoundTrips(rotated, { httpRequests: 1 })
  })

  it('a key removed from the registration stops working at once, though this isolate cached it; a new key works', async () => {
    const a = await agent()
    expect((await ccWith(a)).status).toBe(200) // the keys are now cached
    const next = await generateKeyPair('ES256', { extractable: true })
    const kid = crypto.randomUUID()
    const jwk = { ...(await exportJWK(next.publicKey)), kid, alg: 'ES256' }
    await testDb().execute(
      sql`update oauth_clients set metadata = jsonb_set(metadata, '{jwks}', ${JSON.stringify({ keys: [jwk] })}::jsonb)
          where client_id = ${a.client.client_id}`,
    )
    const stale = await ccWith(a)
    expect(stale.status).toBe(401)
    await expectRoundTrips(stale, { httpRequests: 2 })
    expect(await stale.json()).toMatchObject({ error: 'invalid_client' })
    expect(await issued(a.client.client_id)).toBe(1)
    const rotated = await ccWith({ ...a, privateKey: next.privateKey, kid })
    expect(rotated.status, await describeResponse(rotated)).toBe(200)
    expect(await issued(a.client.client_id)).toBe(2)
  })

  it('a disabled agent is refused at once, though this isolate cached its keys', async () => {
    const a = await agent()
    expect((await ccWith(a)).status).toBe(200)
    const disabled = await call(`/admin/clients/${a.client.client_id}/disable`, {
      method: 'POST',
      headers: adminHeaders(),
    })
    expect(disabled.status).toBe(200)
    const refused = await ccWith(a)
    expect(refused.status).toBe(401)
    expect(await issued(a.client.client_id)).toBe(1)
  })

  it('usage: successes counted by the grant statement, failures by the refusal; read by admins and the tenant’s managers', async () => {
    const a = await agent()
    expect((await ccWith(a)).status).toBe(200)
    const replayed = await assertion(a)
    expect((await tokenWith(replayed, { scope: 'apikeys:verify' })).status).toBe(200)
    const replay = await tokenWith(replayed, { scope: 'apikeys:verify' })
    expect(replay.status).toBe(401)
    // The refusal explains itself (and counts the failure) in one more round trip, no more.
    await expectRoundTrips(replay, { httpRequests: 2 })
    expect((await ccWith(a, { scope: 'admin' })).status).toBe(400)

    const res = await usage(a.client.client_id)
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as Usage
    expect(body.totals).toEqual({ success: 2, failure: 2 })
    expect(body.grant_types).toEqual([{ grant_type: 'client_credentials', success: 2, failure: 2 }])
    expect(body.buckets.reduce((n, b) => n + b.success, 0)).toBe(2)
    expect(Date.parse(body.last_request_at ?? '')).toBeGreaterThan(Date.now() - 60_000)

    const daily = (await (
      await call(`/admin/clients/${a.client.client_id}/usage?granularity=day`, { headers: adminHeaders() })
    ).json()) as Usage
    expect(daily.totals).toEqual({ success: 2, failure: 2 })
    expect(daily.buckets.length).toBeGreaterThanOrEqual(30)

    const tenant = await seedTenant()
    await testDb().execute(
      sql`update oauth_clients set tenant_id = ${tenant.id}::uuid where client_id = ${a.client.client_id}`,
    )
    const path = `/tenants/${tenant.id}/clients/${encodeURIComponent(a.client.client_id)}/usage`
    const asOwner = await call(path, { headers: { cookie: tenant.owner.cookie } })
    expect(asOwner.status, await describeResponse(asOwner)).toBe(200)
    expect(((await asOwner.json()) as Usage).totals).toEqual({ success: 2, failure: 2 })
    expect((await call(path, { headers: { cookie: tenant.member.cookie } })).status).toBe(403)
    const other = await seedTenant()
    const elsewhere = `/tenants/${other.id}/clients/${encodeURIComponent(a.client.client_id)}/usage`
    expect((await call(elsewhere, { headers: { cookie: other.owner.cookie } })).status).toBe(404)
  })

  it('usage: a secret client is not an agent (nothing counted); bad windows are 400; unknown is 404; no admin is 401', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(machine))
    expect(cc.status).toBe(200)
    const res = await usage(machine.client_id)
    expect(res.status).toBe(200)
    expect(((await res.json()) as Usage).totals).toEqual({ success: 0, failure: 0 })
    for (const query of [
      'from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z',
      'from=2020-01-01T00:00:00Z&to=2030-01-01T00:00:00Z',
      'granularity=week',
      'from=yesterday',
    ]) {
      const bad = await call(`/admin/clients/${machine.client_id}/usage?${query}`, {
        headers: adminHeaders(),
      })
      expect(bad.status, query).toBe(400)
    }
    expect((await usage('no-such-client')).status).toBe(404)
    expect((await usage(machine.client_id, {})).status).toBe(401)
  })

  it('an assertion refused for a grant the agent did not register is spent all the same (nothing issued)', async () => {
    const a = await agent()
    const one = await assertion(a)
    const wrongGrant = await tokenWith(one, { grant_type: 'refresh_token', refresh_token: 'x' })
    expect(wrongGrant.status).toBe(400)
    expect(await wrongGrant.json()).toMatchObject({ error: 'unauthorized_client' })
    expect(await issued(a.client.client_id)).toBe(0)
    // The refusal's explanation checked and spent it (RFC 7523 §3: once), so it cannot come back.
    const again = await tokenWith(one, { scope: 'apikeys:verify' })
    expect(again.status).toBe(401)
    expect(await issued(a.client.client_id)).toBe(0)
  })

  it('introspection authenticated by an assertion: 1 round trip once warm; a replay or a removed key is invalid_client', async () => {
    const a = await agent()
    const issuedToken = await ccWith(a)
    const { access_token: token } = (await issuedToken.json()) as TokenSet
    const introspectWith = async (signed: string, form: Record<string, string> = { token }) =>
      postForm('/oauth/introspect', {
        ...form,
        client_assertion_type: ASSERTION_TYPE,
        client_assertion: signed,
      })
    const INTROSPECT_URL = `${ISSUER}/oauth/introspect`
    const one = await assertion(a, { aud: INTROSPECT_URL })
    const active = await introspectWith(one)
    expect(await active.json()).toMatchObject({ active: true, client_id: a.client.client_id })
    await expectRoundTrips(active, { httpRequests: 1 })
    const opaque = await introspectWith(await assertion(a, { aud: INTROSPECT_URL }), { token: 'opaque' })
    expect(await opaque.json()).toEqual({ active: false })
    await expectRoundTrips(opaque, { httpRequests: 1 })
    const replay = await introspectWith(one)
    expect(replay.status).toBe(401)
    expect(await replay.json()).toMatchObject({ error: 'invalid_client' })
    await testDb().execute(
      sql`update oauth_clients set metadata = jsonb_set(metadata, '{jwks}', '{"keys":[]}'::jsonb)
          where client_id = ${a.client.client_id}`,
    )
    const removed = await introspectWith(await assertion(a, { aud: INTROSPECT_URL }))
    expect(removed.status).toBe(401)
  })

  it('PAR and revocation authenticated by an assertion cost what a secret costs: the client read and the jti spent in one batch', async () => {
    const a = await userAgent()
    expect((await ccWith(a)).status).toBe(200) // keys cached
    const { challenge } = await pkce()
    const pushed = await postForm('/oauth/par', {
      response_type: 'code',
      redirect_uri: a.client.redirect_uris[0] ?? '',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: await assertion(a, { aud: `${ISSUER}/oauth/par` }),
    })
    expect(pushed.status, await describeResponse(pushed)).toBe(201)
    await expectRoundTrips(pushed, { httpRequests: 2 })
    const { access_token: token } = (await (await ccWith(a)).json()) as TokenSet
    const revokeAssertion = await assertion(a, { aud: `${ISSUER}/oauth/revoke` })
    const revokeWith = (signed: string) =>
      postForm('/oauth/revoke', { token, client_assertion_type: ASSERTION_TYPE, client_assertion: signed })
    const revoked = await revokeWith(revokeAssertion)
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    await expectRoundTrips(revoked, { httpRequests: 2 })
    const replayed = await revokeWith(revokeAssertion)
    expect(replayed.status).toBe(401)
  })

  it('20 concurrent grants of one agent: 20 tokens and a success count of exactly 20', async () => {
    const a = await agent()
    const answers = await Promise.all(Array.from({ length: 20 }, () => ccWith(a)))
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200))
    expect(await issued(a.client.client_id)).toBe(20)
    expect(((await (await usage(a.client.client_id)).json()) as Usage).totals).toEqual({
      success: 20,
      failure: 0,
    })
  })

  it('the usage count is part of the grant: when it fails (fault injected) nothing is issued and the jti is not spent', async () => {
    const a = await agent()
    const signed = await assertion(a)
    await withFailingInserts('oauth_client_usage_counters', { clientId: a.client.client_id }, async () => {
      const failed = await tokenWith(signed, { scope: 'apikeys:verify' })
      expect(failed.status).toBe(500)
    })
    expect(await issued(a.client.client_id)).toBe(0)
    // Nothing of the failed statement happened: the same assertion still works, once.
    const retried = await tokenWith(signed, { scope: 'apikeys:verify' })
    expect(retried.status, await describeResponse(retried)).toBe(200)
    expect(await issued(a.client.client_id)).toBe(1)
  })

  it('20 concurrent uses of one assertion with the keys cached: one token, 19 invalid_client, 19 failures counted', async () => {
    const a = await agent()
    expect((await ccWith(a)).status).toBe(200)
    const one = await assertion(a)
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => tokenWith(one, { scope: 'apikeys:verify' })),
    )
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 401)).toHaveLength(19)
    expect(await issued(a.client.client_id)).toBe(2)
    expect(((await (await usage(a.client.client_id)).json()) as Usage).totals).toEqual({
      success: 2,
      failure: 19,
    })
  })
})
