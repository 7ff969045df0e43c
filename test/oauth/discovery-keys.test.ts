import { sql } from 'drizzle-orm'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { testDb } from '../helpers/db'
import { adminClient, basicAuth, clientCredentialsToken, ISSUER } from '../helpers/oauth'
import { adminHeaders, call, describeResponse, postJson, useIsolatedDatabase } from '../helpers/worker'

// Rotation (an immediate one included) changes the signing keys of the whole database: this
// file runs on a database of its own so other files' tokens are not signed under their feet.
useIsolatedDatabase('keys')

interface Jwks {
  keys: { kid: string; alg: string; use: string; d?: string }[]
}

async function jwks(): Promise<Jwks> {
  return (await (await call('/.well-known/jwks.json')).json()) as Jwks
}

describe('discovery and signing keys', () => {
  it.each(['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration'])(
    '%s lists the endpoints and policy',
    async (path) => {
      const res = await call(path)
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toMatch(/max-age=\d+/)
      expect(await res.json()).toMatchObject({
        issuer: ISSUER,
        token_endpoint: `${ISSUER}/oauth/token`,
        jwks_uri: `${ISSUER}/.well-known/jwks.json`,
        code_challenge_methods_supported: ['S256'],
        authorization_response_iss_parameter_supported: true,
        scopes_supported: expect.arrayContaining(['openid', 'apikeys:verify', 'admin']),
        grant_types_supported: expect.arrayContaining(['urn:ietf:params:oauth:grant-type:device_code']),
      })
    },
  )

  it('serves public ES256 and RS256 keys with kid, alg, use and cache headers; never a private part', async () => {
    const res = await call('/.well-known/jwks.json')
    expect(res.headers.get('cache-control')).toMatch(/public, max-age=\d+/)
    const { keys } = (await res.json()) as Jwks
    expect(keys.map((k) => k.alg)).toEqual(expect.arrayContaining(['ES256', 'RS256']))
    for (const key of keys) {
      expect(key).toMatchObject({ kid: expect.any(String), use: 'sig' })
      expect(key.d).toBeUndefined()
    }
  })

  it('rotation publishes the new key before it signs and keeps old tokens valid', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const before = await clientCredentialsToken(client)
    const oldKid = decodeProtectedHeader(before).kid
    const rotated = await postJson('/admin/signing-keys/rotate', { alg: 'ES256' }, adminHeaders())
    expect(rotated.status, await describeResponse(rotated)).toBe(201)
    const { kid } = (await rotated.json()) as { kid: string }
    // The audit row commits with the key (one batch), naming the key it retires: read at once.
    const [event] = await queryRows<{ actor: string; metadata: { kid: string; retiring: string[] } }>(
      testDb(),
      sql`select actor, metadata from audit_events
          where type = 'signing_key_rotated' and metadata ->> 'kid' = ${kid}`,
    )
    expect(event?.actor).toBe('admin')
    expect(event?.metadata.retiring).toContain(oldKid)
    const published = await jwks()
    expect(published.keys.map((k) => k.kid)).toEqual(expect.arrayContaining([kid, oldKid]))
    // Still signed by the old key until the new one activates.
    const during = await clientCredentialsToken(client)
    expect(decodeProtectedHeader(during).kid).toBe(oldKid)
    await jwtVerify(before, createLocalJWKSet(published as never), { issuer: ISSUER, typ: 'at+jwt' })
    // An immediate (emergency) rotation signs at once; tokens of the previous keys still verify.
    const now = await postJson(
      '/admin/signing-keys/rotate',
      { alg: 'ES256', activate_in_seconds: 0 },
      adminHeaders(),
    )
    const { kid: immediate } = (await now.json()) as { kid: string }
    const after = await clientCredentialsToken(client)
    expect(decodeProtectedHeader(after).kid).toBe(immediate)
    const intro = await postJson('/oauth/introspect', { token: before }, basicAuth(client))
    expect(await intro.json()).toMatchObject({ active: true })
  })

  it('rotation needs the admin', async () => {
    expect((await postJson('/admin/signing-keys/rotate', {})).status).toBe(401)
  })
})
