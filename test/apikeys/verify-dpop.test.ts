import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeyRateWindows } from '../../db/schema'
import { checksumOf } from '../../functions/apikeys/key-format'
import { createKeyAsAdmin, quotaUsed, usageRows } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { type DpopKey, dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  basicAuth,
  exchangeCode,
  ISSUER,
  obtainCode,
  postForm,
  seedUser,
  type TokenSet,
} from '../helpers/oauth'
import { expectRoundTrips, roundTrips } from '../helpers/round-trips'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

const VERIFY_URL = `${ISSUER}/api-keys/verify`
const TOKEN_URL = `${ISSUER}/oauth/token`

/** A client_credentials token with apikeys:verify bound to a fresh DPoP key. */
async function boundVerifier(): Promise<{ token: string; key: DpopKey }> {
  const agent = await adminClient({
    client_name: 'DPoP verifier',
    grant_types: ['client_credentials'],
    scope: 'apikeys:verify',
  })
  const key = await dpopKey()
  const issued = await postForm(
    '/oauth/token',
    { grant_type: 'client_credentials' },
    { ...basicAuth(agent), dpop: await dpopProof(key, { htu: TOKEN_URL }) },
  )
  expect(issued.status, await describeResponse(issued)).toBe(200)
  return { token: ((await issued.json()) as TokenSet).access_token, key }
}

async function dpopHeaders(bound: { token: string; key: DpopKey }, htu = VERIFY_URL, htm = 'POST') {
  return {
    authorization: `DPoP ${bound.token}`,
    dpop: await dpopProof(bound.key, { htu, htm, accessToken: bound.token }),
  }
}

async function windowCount(keyId: string): Promise<number | undefined> {
  const [row] = await testDb().select().from(apiKeyRateWindows).where(eq(apiKeyRateWindows.keyId, keyId))
  return row?.count
}

function madeUpKey(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  const bytes = crypto.getRandomValues(new Uint8Array(43))
  const body = `pk_test_${Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('')}`
  return `${body}${checksumOf(body)}`
}

describe('verify with a DPoP-bound caller token: the proof’s jti is spent in the verify statement', () => {
  it('costs one round trip in all, like a Bearer caller', async () => {
    const apiKey = await createKeyAsAdmin({ rate_limit: { limit: 100 } })
    const bound = await boundVerifier()
    const res = await postJson('/api-keys/verify', { key: apiKey.key }, await dpopHeaders(bound))
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(((await res.json()) as { code: string }).code).toBe('VALID')
    await expectRoundTrips(res, { httpRequests: 1 })
    const bearer = await postJson('/api-keys/verify', { key: apiKey.key }, adminHeaders())
    expect(((await bearer.json()) as { code: string }).code).toBe('VALID')
    await expectRoundTrips(bearer, { httpRequests: 1 })
    expect(await quotaUsed(apiKey.id)).toBe(2)
  })

  it('refuses a replayed proof as before (401 invalid_dpop_proof) and charges nothing', async () => {
    const apiKey = await createKeyAsAdmin({ rate_limit: { limit: 100 } })
    const bound = await boundVerifier()
    const headers = await dpopHeaders(bound)
    const first = await postJson('/api-keys/verify', { key: apiKey.key }, headers)
    expect(first.status, await describeResponse(first)).toBe(200)
    const replay = await postJson('/api-keys/verify', { key: apiKey.key, endpoint: 'again' }, headers)
    expect(replay.status).toBe(401)
    expect(replay.headers.get('content-type')).toContain('application/problem+json')
    expect(replay.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_dpop_proof"/)
    await expectRoundTrips(replay, { httpRequests: 1 })
    expect(await quotaUsed(apiKey.id)).toBe(1)
    expect(await windowCount(apiKey.id)).toBe(1)
    expect((await usageRows(apiKey.id)).map((r) => r.endpoint)).toEqual([null])
    // A fresh proof for the same token still works.
    const fresh = await postJson('/api-keys/verify', { key: apiKey.key }, await dpopHeaders(bound))
    expect(((await fresh.json()) as { code: string }).code).toBe('VALID')
  })

  it('accepts exactly one of 20 concurrent requests carrying one proof, and charges once', async () => {
    const apiKey = await createKeyAsAdmin({ rate_limit: { limit: 1000 } })
    const bound = await boundVerifier()
    const headers = await dpopHeaders(bound)
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => postJson('/api-keys/verify', { key: apiKey.key }, headers)),
    )
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 401)).toHaveLength(19)
    expect(await quotaUsed(apiKey.id)).toBe(1)
    expect(await windowCount(apiKey.id)).toBe(1)
    expect(await usageRows(apiKey.id)).toHaveLength(1)
  })

  it('refuses a proof for another URL, another method or signed by another key, charging nothing', async () => {
    const apiKey = await createKeyAsAdmin({ rate_limit: { limit: 100 } })
    const bound = await boundVerifier()
    const other = await dpopKey()
    const proofs = [
      await dpopProof(bound.key, { htu: `${ISSUER}/api-keys`, accessToken: bound.token }),
      await dpopProof(bound.key, { htu: VERIFY_URL, htm: 'PUT', accessToken: bound.token }),
      await dpopProof(other, { htu: VERIFY_URL, accessToken: bound.token }),
      await dpopProof(bound.key, { htu: VERIFY_URL }),
    ]
    for (const dpop of proofs) {
      const res = await postJson(
        '/api-keys/verify',
        { key: apiKey.key },
        { authorization: `DPoP ${bound.token}`, dpop },
      )
      expect(res.status).toBe(401)
      expect(res.headers.get('www-authenticate')).toContain('invalid_dpop_proof')
      expect((await roundTrips(res)).httpRequests).toBe(0)
    }
    expect(await quotaUsed(apiKey.id)).toBeUndefined()
    expect(await windowCount(apiKey.id)).toBeUndefined()
    expect(await usageRows(apiKey.id)).toEqual([])
  })

  it('spends the proof for a key this isolate already knows to be unknown, so it cannot be replayed there either', async () => {
    const bound = await boundVerifier()
    const unknown = madeUpKey()
    const first = await postJson('/api-keys/verify', { key: unknown }, await dpopHeaders(bound))
    expect(((await first.json()) as { code: string }).code).toBe('NOT_FOUND')
    const headers = await dpopHeaders(bound)
    const cached = await postJson('/api-keys/verify', { key: unknown }, headers)
    expect(((await cached.json()) as { code: string }).code).toBe('NOT_FOUND')
    await expectRoundTrips(cached, { httpRequests: 1 })
    const replay = await postJson('/api-keys/verify', { key: unknown }, headers)
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toContain('invalid_dpop_proof')
  })
})

describe('/api-keys management with a DPoP-bound token: the jti rides in the caller check’s batch', () => {
  async function userTokens() {
    const web = await adminClient({
      client_name: 'DPoP web app',
      redirect_uris: ['https://web.example.com/cb'],
      grant_types: ['authorization_code'],
      scope: 'openid apikeys:write',
      first_party: true,
    })
    const user = await seedUser()
    const exchange = async (key: DpopKey | undefined) => {
      const code = await obtainCode(web, user, { scope: 'openid apikeys:write' })
      const proof: Record<string, string> =
        key === undefined ? {} : { dpop: await dpopProof(key, { htu: TOKEN_URL }) }
      const res = await exchangeCode(web, code, {}, proof)
      expect(res.status, await describeResponse(res)).toBe(200)
      return ((await res.json()) as TokenSet).access_token
    }
    const key = await dpopKey()
    return { bound: { token: await exchange(key), key }, bearer: await exchange(undefined) }
  }

  it('lists keys in as many round trips as a Bearer caller, and refuses a replay', async () => {
    const { bound, bearer } = await userTokens()
    const listUrl = `${ISSUER}/api-keys`
    const plain = await call('/api-keys', { headers: { authorization: `Bearer ${bearer}` } })
    expect(plain.status, await describeResponse(plain)).toBe(200)
    const bearerTrips = (await roundTrips(plain)).httpRequests
    const headers = await dpopHeaders(bound, listUrl, 'GET')
    const list = await call('/api-keys', { headers })
    expect(list.status, await describeResponse(list)).toBe(200)
    await expectRoundTrips(list, { httpRequests: bearerTrips })
    const replay = await call('/api-keys', { headers })
    expect(replay.status).toBe(401)
    expect(replay.headers.get('www-authenticate')).toContain('invalid_dpop_proof')
    await expectRoundTrips(replay, { httpRequests: 1 })
  })
})
