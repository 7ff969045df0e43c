import { describe, expect, it } from 'vitest'
import { callerTokenCacheStats } from '../../functions/apikeys/verifier-auth'
import { createKeyAsAdmin, quotaUsed, roundTrips, usageRows, verify } from '../helpers/apikeys'
import { adminClient, basicAuth, clientCredentialsToken, postForm, type TestClient } from '../helpers/oauth'
import { consistently } from '../helpers/poll'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, describeResponse, postJson } from '../helpers/worker'

async function machineClient(scope: string): Promise<{ client: TestClient; token: string }> {
  const client = await adminClient({
    client_name: 'Resource server',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  })
  return { client, token: await clientCredentialsToken(client, scope) }
}

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` }
}

describe('verify with a client_credentials access token', () => {
  it('accepts a token carrying apikeys:verify', async () => {
    const [key, { token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const res = await verify({ key: key.key }, bearer(token))
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ valid: true, code: 'VALID', key_id: key.id })
    const stats = await roundTrips(res)
    expect(stats.wsConnections).toBe(0)
  })

  it('checks the token, the key, charges and records in one round trip together', async () => {
    const [key, { token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    // The first call may load the signing keys into this isolate; the second shows the steady state.
    await verify({ key: key.key }, bearer(token))
    const res = await verify({ key: key.key }, bearer(token))
    expect(await res.json()).toMatchObject({ valid: true, code: 'VALID' })
    await expectRoundTrips(res, { httpRequests: 1, httpQueries: 1, wsConnections: 0, wsClientMessages: 0 })
    expect(await usageRows(key.id)).toHaveLength(2)
  })

  it('refuses a revoked token with 401 and charges the key nothing', async () => {
    const [key, { client, token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const revoked = await postForm('/oauth/revoke', { token }, basicAuth(client))
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    const res = await verify({ key: key.key }, bearer(token))
    expect(res.status, await describeResponse(res)).toBe(401)
    expect(res.headers.get('www-authenticate')).toContain('invalid_token')
    await consistently(
      async () => [await quotaUsed(key.id), (await usageRows(key.id)).length] as const,
      ([used, rows]) => used === undefined && rows === 0,
      300,
      'no quota charge and no usage row',
    )
  })

  it('checks a caller token’s signature once per isolate, yet a later revocation still refuses it', async () => {
    const [key, { client, token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const first = await verify({ key: key.key }, bearer(token))
    expect(first.status, await describeResponse(first)).toBe(200)
    const before = callerTokenCacheStats()
    const again = await verify({ key: key.key }, bearer(token))
    expect(await again.json()).toMatchObject({ valid: true, code: 'VALID' })
    // Served from the isolate's cache of verified tokens: no second signature check.
    expect(callerTokenCacheStats().hits).toBe(before.hits + 1)
    expect(callerTokenCacheStats().misses).toBe(before.misses)
    // The cache holds what the signature proved, never the revocation state.
    const revoked = await postForm('/oauth/revoke', { token }, basicAuth(client))
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    const res = await verify({ key: key.key }, bearer(token))
    expect(res.status, await describeResponse(res)).toBe(401)
    expect(await quotaUsed(key.id)).toBe(2)
    expect(await usageRows(key.id)).toHaveLength(2)
  })

  it('refuses a token whose client has been disabled', async () => {
    const [key, { client, token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const disabled = await postJson(`/admin/clients/${client.client_id}/disable`, {}, adminHeaders())
    expect(disabled.status, await describeResponse(disabled)).toBe(200)
    const res = await verify({ key: key.key }, bearer(token))
    expect(res.status, await describeResponse(res)).toBe(401)
  })

  it('refuses a forged token (signature by a key we never published) with 401', async () => {
    const [key, { token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const [header, payload] = token.split('.')
    const forged = `${header}.${payload}.${'A'.repeat(86)}`
    const res = await verify({ key: key.key }, bearer(forged))
    expect(res.status, await describeResponse(res)).toBe(401)
    await expectRoundTrips(res, { httpRequests: 0 })
  })

  it('refuses a token without apikeys:verify with 403, before reading the body', async () => {
    const [key, { token }] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:write')])
    const res = await verify({ key: key.key }, bearer(token))
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'insufficient_scope' })
  })
})
