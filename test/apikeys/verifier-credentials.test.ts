import { describe, expect, it } from 'vitest'
import { createKeyAsAdmin, roundTrips, verify } from '../helpers/apikeys'
import { adminClient, clientCredentialsToken } from '../helpers/oauth'
import { describeResponse } from '../helpers/worker'

async function machineClient(scope: string) {
  const client = await adminClient({
    client_name: 'Resource server',
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
  })
  return clientCredentialsToken(client, scope)
}

describe('verify with a client_credentials access token', () => {
  it('accepts a token carrying apikeys:verify', async () => {
    const [key, token] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:verify')])
    const res = await verify({ key: key.key }, { authorization: `Bearer ${token}` })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await res.json()).toMatchObject({ valid: true, code: 'VALID', key_id: key.id })
    const stats = await roundTrips(res)
    expect(stats.wsConnections).toBe(0)
  })

  it('refuses a token without apikeys:verify with 403, before reading the body', async () => {
    const [key, token] = await Promise.all([createKeyAsAdmin(), machineClient('apikeys:write')])
    const res = await verify({ key: key.key }, { authorization: `Bearer ${token}` })
    expect(res.status, await describeResponse(res)).toBe(403)
    expect(await res.json()).toMatchObject({ code: 'insufficient_scope' })
  })
})
