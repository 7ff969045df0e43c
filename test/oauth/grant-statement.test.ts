import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb } from '../helpers/db'
import { withFailingInserts } from '../helpers/faults'
import {
  adminClient,
  basicAuth,
  deviceDecide,
  devicePoll,
  deviceStart,
  exchangeCode,
  obtainCode,
  postForm,
  publicDeviceClient,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import { describeResponse } from '../helpers/worker'

/** Audit rows of this type for this client, read the moment the response is in (no waiting). */
async function auditCount(type: string, clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from audit_events where type = ${type} and client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function refreshTokenCount(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from refresh_tokens r join oauth_clients c on c.id = r.client_id
        where c.client_id = ${clientId}`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

async function unconsumedCodes(clientId: string): Promise<number> {
  const result = await testDb().execute(
    sql`select count(*)::int as n from authorization_codes a join oauth_clients c on c.id = a.client_id
        where c.client_id = ${clientId} and a.consumed_at is null`,
  )
  return Number((result.rows[0] as { n: number } | undefined)?.n ?? 0)
}

describe('issue 16: each grant is one statement — authentication, the grant and its audit row', () => {
  it('every successful grant has its token_issued row when the response arrives', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(machine))
    expect(cc.status, await describeResponse(cc)).toBe(200)
    expect(await auditCount('token_issued', machine.client_id)).toBe(1)

    const client = await webClient()
    const code = await exchangeCode(client, await obtainCode(client, await seedUser()))
    expect(code.status, await describeResponse(code)).toBe(200)
    expect(await auditCount('token_issued', client.client_id)).toBe(1)
    const tokens = (await code.json()) as TokenSet
    const rotated = await refresh(client, tokens.refresh_token ?? '')
    expect(rotated.status, await describeResponse(rotated)).toBe(200)
    expect(await auditCount('token_issued', client.client_id)).toBe(2)
  })

  it('a refused client_credentials request (scope beyond registration) writes no token_issued', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials', scope: 'apikeys:write' },
      basicAuth(machine),
    )
    expect(await res.json()).toMatchObject({ error: 'invalid_scope' })
    const wrong = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      basicAuth({ ...machine, client_secret: 'wrong' }),
    )
    expect(wrong.status, await describeResponse(wrong)).toBe(401)
    expect(await auditCount('token_issued', machine.client_id)).toBe(0)
  })

  it('a failed code-exchange statement leaves the code unused and no refresh token; the code then works', async () => {
    const client = await webClient()
    const result = await obtainCode(client, await seedUser())
    const failed = await withFailingInserts('audit_events', { clientId: client.client_id }, () =>
      exchangeCode(client, result),
    )
    expect(failed.status, await describeResponse(failed)).toBeGreaterThanOrEqual(500)
    expect(await unconsumedCodes(client.client_id)).toBe(1)
    expect(await refreshTokenCount(client.client_id)).toBe(0)
    const retried = await exchangeCode(client, result)
    expect(retried.status, await describeResponse(retried)).toBe(200)
    expect(await auditCount('token_issued', client.client_id)).toBe(1)
  })

  it('a failed device poll leaves the code approved and no refresh token; the next poll issues', async () => {
    const client = await publicDeviceClient()
    const device = await deviceStart(client.client_id)
    expect((await deviceDecide(await seedUser(), device.user_code, 'approve')).status).toBe(200)
    const failed = await withFailingInserts('audit_events', { clientId: client.client_id }, () =>
      devicePoll(client.client_id, device.device_code),
    )
    expect(failed.status, await describeResponse(failed)).toBeGreaterThanOrEqual(500)
    const [code] = await queryRows<{ status: string }>(
      testDb(),
      sql`select status from device_codes where device_code_hash = encode(sha256(${device.device_code}::bytea), 'hex')`,
    )
    expect(code?.status).toBe('approved')
    expect(await refreshTokenCount(client.client_id)).toBe(0)
    const retried = await devicePoll(client.client_id, device.device_code)
    expect(retried.status, await describeResponse(retried)).toBe(200)
    expect(await refreshTokenCount(client.client_id)).toBe(1)
    expect(await auditCount('token_issued', client.client_id)).toBe(1)
  })

  it('a failed refresh statement rotates nothing; the same refresh token then rotates', async () => {
    const client = await webClient()
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, await seedUser()))
    ).json()) as TokenSet
    const failed = await withFailingInserts('audit_events', { clientId: client.client_id }, () =>
      refresh(client, tokens.refresh_token ?? ''),
    )
    expect(failed.status, await describeResponse(failed)).toBeGreaterThanOrEqual(500)
    expect(await refreshTokenCount(client.client_id)).toBe(1)
    const retried = await refresh(client, tokens.refresh_token ?? '')
    expect(retried.status, await describeResponse(retried)).toBe(200)
  })

  it('concurrent exchanges of one code: one 200, one token_issued; the replay is recorded with its revocation', async () => {
    const client = await webClient()
    const result = await obtainCode(client, await seedUser())
    const answers = await Promise.all(Array.from({ length: 6 }, () => exchangeCode(client, result)))
    expect(answers.map((r) => r.status).filter((s) => s === 200)).toHaveLength(1)
    expect(await auditCount('token_issued', client.client_id)).toBe(1)
    expect(await auditCount('code_replay_detected', client.client_id)).toBe(5)
  })

  it('concurrent refreshes of one token: one rotation, one token_issued, every loser recorded as reuse', async () => {
    const client = await webClient()
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, await seedUser()))
    ).json()) as TokenSet
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => refresh(client, tokens.refresh_token ?? '')),
    )
    expect(answers.map((r) => r.status).filter((s) => s === 200)).toHaveLength(1)
    expect(await auditCount('token_issued', client.client_id)).toBe(2)
    expect(await auditCount('refresh_token_reuse_detected', client.client_id)).toBe(5)
  })

  it('refresh-token reuse is recorded in the statement that revokes the family', async () => {
    const client = await webClient()
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, await seedUser()))
    ).json()) as TokenSet
    expect((await refresh(client, tokens.refresh_token ?? '')).status).toBe(200)
    const reused = await refresh(client, tokens.refresh_token ?? '')
    expect(await reused.json()).toMatchObject({ error: 'invalid_grant' })
    expect(await auditCount('refresh_token_reuse_detected', client.client_id)).toBe(1)
  })

  it('revocation writes token_revoked with the revocation, for refresh and access tokens', async () => {
    const client = await webClient()
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, await seedUser()))
    ).json()) as TokenSet
    const access = await postForm('/oauth/revoke', { token: tokens.access_token }, basicAuth(client))
    expect(access.status, await describeResponse(access)).toBe(200)
    expect(await auditCount('token_revoked', client.client_id)).toBe(1)
    const family = await postForm('/oauth/revoke', { token: tokens.refresh_token ?? '' }, basicAuth(client))
    expect(family.status, await describeResponse(family)).toBe(200)
    expect(await auditCount('token_revoked', client.client_id)).toBe(2)
    // Already revoked: nothing changes, nothing is recorded.
    await postForm('/oauth/revoke', { token: tokens.refresh_token ?? '' }, basicAuth(client))
    expect(await auditCount('token_revoked', client.client_id)).toBe(2)
  })

  it('refresh-token introspection: one round trip, own client only, credentials checked', async () => {
    const client = await webClient()
    const other = await webClient()
    const tokens = (await (
      await exchangeCode(client, await obtainCode(client, await seedUser()))
    ).json()) as TokenSet
    const own = await postForm('/oauth/introspect', { token: tokens.refresh_token ?? '' }, basicAuth(client))
    expect(await own.json()).toMatchObject({
      active: true,
      token_type: 'refresh_token',
      client_id: client.client_id,
    })
    await expectRoundTrips(own, { httpRequests: 1 })
    const foreign = await postForm(
      '/oauth/introspect',
      { token: tokens.refresh_token ?? '' },
      basicAuth(other),
    )
    expect(await foreign.json()).toEqual({ active: false })
    const wrong = await postForm(
      '/oauth/introspect',
      { token: tokens.refresh_token ?? '' },
      basicAuth({ ...client, client_secret: 'wrong' }),
    )
    expect(wrong.status, await describeResponse(wrong)).toBe(401)
  })
})
