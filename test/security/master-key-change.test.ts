import { env } from 'cloudflare:test'
import { ne } from 'drizzle-orm'
import { afterEach, describe, expect, it } from 'vitest'
import { signingKeys } from '../../db/schema'
import { randomToken } from '../../functions/crypto/random'
import { resetKeyCache } from '../../functions/tokens/keys'
import { testDb } from '../helpers/db'
import { adminClient, basicAuth, type TestClient } from '../helpers/oauth'
import { callWith, describeResponse } from '../helpers/worker'

/**
 * Issue 9 item 17: the same deployment started with another MASTER_KEY. /healthz must say so
 * (503, naming the key ids, never key material) instead of 200 while every token request fails.
 *
 * The key ring is cached per isolate with the MASTER_KEY it was opened under, so each request
 * here starts from a cold ring and the ring is dropped again afterwards: the next request of this
 * isolate (another file under --no-isolate) reads it under the suite's own key.
 */
async function fresh(vars: Record<string, string>, path: string, init: RequestInit = {}): Promise<Response> {
  resetKeyCache()
  try {
    return await callWith(vars, path, init)
  } finally {
    resetKeyCache()
  }
}

async function publishedKids(): Promise<string[]> {
  const rows = await testDb()
    .select({ kid: signingKeys.kid })
    .from(signingKeys)
    .where(ne(signingKeys.status, 'retired'))
  return rows.map((r) => r.kid)
}

function clientCredentials(client: TestClient): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'apikeys:write' }).toString(),
  }
}

const OWN_KEY = env.MASTER_KEY ?? ''
const CHANGED = [
  ['the same key id with another secret', `k1:${randomToken(32)}`],
  ['another key id', `k7:${randomToken(32)}`],
] as const

describe('a changed MASTER_KEY shows at /healthz (issue 9 item 17)', () => {
  afterEach(() => {
    resetKeyCache()
  })

  it.each(CHANGED)('%s: /healthz 503 naming every key id it cannot open, and no secret', async (_, other) => {
    // Under the suite's own key first: every required key exists, sealed under it (a cold ring
    // under the other key must not find one missing and create it).
    const healthy = await fresh({ MASTER_KEY: OWN_KEY }, '/healthz')
    expect(healthy.status, await describeResponse(healthy)).toBe(200)
    const before = await publishedKids()
    expect(before.length).toBeGreaterThan(0)

    const res = await fresh({ MASTER_KEY: other }, '/healthz')
    const text = await res.text()
    expect(res.status, text).toBe(503)
    expect(res.headers.get('retry-after')).not.toBeNull()
    const report = JSON.parse(text) as {
      status: string
      reasons: string[]
      signing_keys: { undecryptable: string[] } | null
    }
    expect(report.status).toBe('degraded')
    expect(report.reasons).toEqual(['signing_key_undecryptable'])
    const named = report.signing_keys?.undecryptable ?? []
    // Every key that could sign before is named; nothing named is not a published key id.
    expect(named).toEqual(expect.arrayContaining(before))
    const after = await publishedKids()
    for (const kid of named) {
      expect(after).toContain(kid)
    }
    // Key ids only: neither master key, nor a private JWK's members.
    for (const secret of [OWN_KEY, other, OWN_KEY.split(':')[1] ?? '', other.split(':')[1] ?? '']) {
      expect(text).not.toContain(secret)
    }
    expect(text).not.toMatch(/"(d|p|q|dp|dq|qi)"\s*:|private/i)
  })

  it('a token request under the changed key is 503 temporarily_unavailable, and 200 under the right one', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:write' })
    const refused = await fresh({ MASTER_KEY: CHANGED[0][1] }, '/oauth/token', clientCredentials(client))
    expect(refused.status, await describeResponse(refused)).toBe(503)
    expect(await refused.json()).toMatchObject({ error: 'temporarily_unavailable' })
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
    const issued = await fresh({ MASTER_KEY: OWN_KEY }, '/oauth/token', clientCredentials(client))
    expect(issued.status, await describeResponse(issued)).toBe(200)
  })
})
