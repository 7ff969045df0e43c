import { sql } from 'drizzle-orm'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { createDb, queryRows } from '../../db/client'
import { KEY_EPOCH, loadPublishedKeys, retireExpiredKeys } from '../../db/queries/oauth-keys'
import { parseConfig } from '../../functions/config'
import {
  confirmKeyRing,
  KEY_CACHE_TTL_SECONDS,
  KEY_PUBLISH_LEAD_SECONDS,
  keyRing,
  publicJwks,
  resetKeyCache,
  rotateSigningKey,
  signingKeyFor,
  verificationKey,
} from '../../functions/tokens/keys'
import { testDb } from '../helpers/db'
import { dpopKey, dpopProof } from '../helpers/dpop'
import {
  adminClient,
  basicAuth,
  clientCredentialsToken,
  exchangeCode,
  ISSUER,
  obtainCode,
  postForm,
  seedUser,
  TOKEN_EXCHANGE_GRANT,
  type TokenSet,
  tokenExchange,
  webClient,
} from '../helpers/oauth'
import { expectRoundTrips, roundTripsOnceAtLeast } from '../helpers/round-trips'
import {
  adminHeaders,
  call,
  describeResponse,
  fileEnv,
  postJson,
  useIsolatedDatabase,
} from '../helpers/worker'

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

/** This file's database handle and config, as a request of the Worker under test has them. */
function isolateDb() {
  const config = parseConfig(fileEnv())
  const db = createDb({
    databaseUrl: config.databaseUrl,
    gatewayUrl: config.dbGatewayUrl,
    waitUntil: () => {},
  })
  return { config, db }
}

/** Audit rows of this type for this client, read the moment the response is in. */
async function auditRows(type: string, clientId: string): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    testDb(),
    sql`select count(*)::int as n from audit_events where type = ${type} and client_id = ${clientId}`,
  )
  return Number(row?.n ?? 0)
}

/**
 * The isolate's ring sat idle past its TTL holding the key `kid`, and then the key was deleted
 * elsewhere (a compromise); a successor signs meanwhile, so the key set stays complete.
 */
async function deleteKeyBehindIdleRing(kid: string): Promise<ReturnType<typeof isolateDb>> {
  const isolate = isolateDb()
  await rotateSigningKey(isolate.db, isolate.config, 'ES256', 0)
  resetKeyCache()
  const idle = await keyRing(
    isolate.db,
    isolate.config,
    new Date(Date.now() - 5 * KEY_CACHE_TTL_SECONDS * 1000),
  )
  expect(idle.map((k) => k.kid)).toContain(kid)
  await queryRows(testDb(), sql`delete from signing_keys where kid = ${kid}`)
  return isolate
}

async function keyEpoch(): Promise<string | null> {
  const [row] = await queryRows<{ epoch: string | null }>(testDb(), sql`select ${KEY_EPOCH} as epoch`)
  return row?.epoch ?? null
}

// The grants read the key set's epoch in their own statement (migration 0023): an isolate's ring
// is confirmed without a read however long it sat idle, and a change made anywhere else reaches
// the isolate on its next grant, before it signs.
describe('the key ring and the key set epoch', () => {
  it('an isolate idle past the ring TTL signs its next token in one round trip in all', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    await clientCredentialsToken(client)
    // The ring as an isolate left it five TTLs ago (keyRing records `now` as its read time).
    const { config, db } = isolateDb()
    resetKeyCache()
    const idle = new Date(Date.now() - 5 * KEY_CACHE_TTL_SECONDS * 1000)
    const old = await keyRing(db, config, idle)
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    expect(cc.status, await describeResponse(cc)).toBe(200)
    await expectRoundTrips(cc, { httpRequests: 1 })
    // Confirmed, not re-read: the same ring, now current.
    expect(await keyRing(db, config)).toBe(old)
    const { access_token } = (await cc.json()) as { access_token: string }
    const es256 = old.filter((k) => k.alg === 'ES256' && k.activatesAt.getTime() <= Date.now())
    expect(es256.map((k) => k.kid)).toContain(decodeProtectedHeader(access_token).kid)
  })

  it('a change to the key set made elsewhere reaches a fresh ring on the next grant, before it signs', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const { config, db } = isolateDb()
    // A key published now that signs in an hour; the ring read after it still signs with the old.
    const pending = await rotateSigningKey(db, config, 'ES256', 3600)
    const signing = decodeProtectedHeader(await clientCredentialsToken(client)).kid
    expect(signing).not.toBe(pending.kid)
    const ring = await keyRing(db, config)
    expect(ring.map((k) => k.kid)).toContain(pending.kid)
    // Another writer (another isolate, an operator) brings the activation forward: the epoch moves.
    const before = await keyEpoch()
    await queryRows(testDb(), sql`update signing_keys set activates_at = now() where kid = ${pending.kid}`)
    expect(await keyEpoch()).not.toBe(before)
    // The ring is seconds old, well inside its TTL, yet the next grant re-reads it and signs with
    // the new key: its statement and the re-read.
    const cc = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    expect(cc.status, await describeResponse(cc)).toBe(200)
    await expectRoundTrips(cc, { httpRequests: 2 })
    const { access_token } = (await cc.json()) as { access_token: string }
    expect(decodeProtectedHeader(access_token).kid).toBe(pending.kid)
    expect(await keyRing(db, config)).not.toBe(ring)
    // Current again: the grant after it is one round trip.
    const next = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    expect(next.status).toBe(200)
    await expectRoundTrips(next, { httpRequests: 1 })
  })

  it('a retiring key neither verifies nor signs past its retireAfter, though a confirmed ring still holds it', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const oldKid = decodeProtectedHeader(await clientCredentialsToken(client)).kid ?? ''
    const { config, db } = isolateDb()
    // An emergency rotation: the old key retires at once, published until its tokens expire.
    const rotation = await rotateSigningKey(db, config, 'ES256', 0)
    const ring = await keyRing(db, config)
    const retireAfter = ring.find((k) => k.kid === oldKid)?.retireAfter
    expect(retireAfter).toBeInstanceOf(Date)
    // Grants keep confirming the ring (nothing changed in the database) past that moment.
    const past = new Date((retireAfter?.getTime() ?? 0) + 1000)
    confirmKeyRing((await loadPublishedKeys(db.http, new Date())).epoch, past)
    expect(await keyRing(db, config, past)).toBe(ring)
    expect(ring.map((k) => k.kid)).toContain(oldKid)
    // Yet the old key is gone for every use: a token forged with it would not verify.
    expect(await verificationKey(db, config, oldKid, past)).toBeUndefined()
    expect((await verificationKey(db, config, rotation.kid, past))?.kid).toBe(rotation.kid)
    expect((await signingKeyFor(db, config, 'ES256', past)).kid).toBe(rotation.kid)
    expect((await publicJwks(db, config, past)).keys.map((k) => k.kid)).not.toContain(oldKid)
    resetKeyCache()
  })

  it('userinfo, introspection and bearer-authenticated APIs on an isolate idle past the ring TTL: no extra round trip', async () => {
    const client = await webClient()
    const user = await seedUser()
    const tokens = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const { config, db } = isolateDb()
    const idle = () => new Date(Date.now() - 5 * KEY_CACHE_TTL_SECONDS * 1000)
    resetKeyCache()
    let old = await keyRing(db, config, idle())
    const info = await call('/oauth/userinfo', {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    })
    expect(info.status, await describeResponse(info)).toBe(200)
    expect(await info.json()).toMatchObject({ sub: user.id })
    await expectRoundTrips(info, { httpRequests: 1 })
    // The statement's epoch confirmed the ring: current again, not re-read.
    expect(await keyRing(db, config)).toBe(old)

    resetKeyCache()
    old = await keyRing(db, config, idle())
    const intro = await postForm('/oauth/introspect', { token: tokens.access_token }, basicAuth(client))
    expect(await intro.json()).toMatchObject({ active: true, sub: user.id })
    await expectRoundTrips(intro, { httpRequests: 1 })
    expect(await keyRing(db, config)).toBe(old)

    // Any API a bearer token opens settles an idle ring the same way: no more round trips than warm.
    const manager = await webClient({ first_party: true, scope: 'openid apikeys:write' })
    const managing = (await (
      await exchangeCode(manager, await obtainCode(manager, user, { scope: 'openid apikeys:write' }))
    ).json()) as TokenSet
    const bearer = { headers: { authorization: `Bearer ${managing.access_token}` } }
    const warm = await call('/api-keys', bearer)
    expect(warm.status, await describeResponse(warm)).toBe(200)
    const warmTrips = await roundTripsOnceAtLeast(warm, 1)
    resetKeyCache()
    old = await keyRing(db, config, idle())
    const listed = await call('/api-keys', bearer)
    expect(listed.status).toBe(200)
    await expectRoundTrips(listed, { httpRequests: warmTrips.httpRequests })
    expect(await keyRing(db, config)).toBe(old)

    // A current ring and a change made elsewhere: the answer stands (within the TTL, as always),
    // and the epoch it read makes the isolate re-read its ring on the next use.
    await queryRows(
      testDb(),
      sql`update signing_keys set created_at = created_at where kid = ${old[0]?.kid ?? ''}`,
    )
    const again = await postForm('/oauth/introspect', { token: tokens.access_token }, basicAuth(client))
    expect(await again.json()).toMatchObject({ active: true })
    await expectRoundTrips(again, { httpRequests: 1 })
    expect(await keyRing(db, config)).not.toBe(old)
  })

  it('token exchange on an isolate idle past the ring TTL: one round trip; a key set changed meanwhile is re-read first', async () => {
    const app = await webClient()
    const user = await seedUser()
    const tokens = (await (await exchangeCode(app, await obtainCode(app, user))).json()) as TokenSet
    const exchanger = await adminClient({ grant_types: [TOKEN_EXCHANGE_GRANT], scope: 'openid' })
    const form = { subject_token: tokens.access_token }
    const { config, db } = isolateDb()
    const idle = () => new Date(Date.now() - 5 * KEY_CACHE_TTL_SECONDS * 1000)
    resetKeyCache()
    const old = await keyRing(db, config, idle())
    const exchanged = await tokenExchange(exchanger, form)
    expect(exchanged.status, await describeResponse(exchanged)).toBe(200)
    await expectRoundTrips(exchanged, { httpRequests: 1 })
    // The statement's epoch confirmed the ring the subject token was checked with.
    expect(await keyRing(db, config)).toBe(old)
    expect(await auditRows('token_issued', exchanger.client_id)).toBe(1)

    // Idle again, and the key set changes elsewhere meanwhile: the statement sees another epoch and
    // writes nothing; the subject token is checked against a fresh ring, then the exchange is
    // recorded without authenticating the client twice (its DPoP proof is already spent).
    resetKeyCache()
    const stale = await keyRing(db, config, idle())
    await queryRows(
      testDb(),
      sql`update signing_keys set created_at = created_at where kid = ${stale[0]?.kid ?? ''}`,
    )
    const proof = await dpopProof(await dpopKey(), { htu: `${ISSUER}/oauth/token` })
    const again = await tokenExchange(exchanger, form, { dpop: proof })
    expect(again.status, await describeResponse(again)).toBe(200)
    expect(await again.json()).toMatchObject({ token_type: 'DPoP' })
    await expectRoundTrips(again, { httpRequests: 3 })
    expect(await keyRing(db, config)).not.toBe(stale)
    expect(await auditRows('token_issued', exchanger.client_id)).toBe(2)
  })

  it('moves with every insert, update and delete, and not for a statement that changes nothing', async () => {
    const { config, db } = isolateDb()
    const start = await keyEpoch()
    expect(start).toMatch(/^\d+\.\d+$/)
    await retireExpiredKeys(db.http, new Date(0))
    expect(await keyEpoch()).toBe(start)
    const rotation = await rotateSigningKey(db, config, 'RS256', KEY_PUBLISH_LEAD_SECONDS)
    const rotated = await keyEpoch()
    expect(rotated).not.toBe(start)
    // What the ring is read with is the epoch of the same snapshot.
    expect((await loadPublishedKeys(db.http, new Date())).epoch).toBe(rotated)
    await queryRows(testDb(), sql`delete from signing_keys where kid = ${rotation.kid}`)
    const deleted = await keyEpoch()
    expect(deleted).not.toBe(rotated)
    expect(deleted).not.toBe(start)
    resetKeyCache()
  })
  it('a key removed elsewhere while the ring sat idle: the check is not confirmed, the token refused', async () => {
    const machine = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const token = await clientCredentialsToken(machine)
    const kid = decodeProtectedHeader(token).kid ?? ''
    // An operator deletes the key (a compromise): the isolate's ring still holds it.
    const { config, db } = await deleteKeyBehindIdleRing(kid)
    const intro = await postForm('/oauth/introspect', { token }, basicAuth(machine))
    expect(await intro.json()).toEqual({ active: false })
    // The state statement, then the ring read again because its epoch moved.
    await expectRoundTrips(intro, { httpRequests: 2 })
    expect((await keyRing(db, config)).map((k) => k.kid)).not.toContain(kid)
    resetKeyCache()
  })

  it('a key removed elsewhere while the ring sat idle: token exchange refuses its subject token and records nothing', async () => {
    const app = await webClient()
    const tokens = (await (
      await exchangeCode(app, await obtainCode(app, await seedUser()))
    ).json()) as TokenSet
    const kid = decodeProtectedHeader(tokens.access_token).kid ?? ''
    const exchanger = await adminClient({ grant_types: [TOKEN_EXCHANGE_GRANT], scope: 'openid' })
    const { config, db } = await deleteKeyBehindIdleRing(kid)
    const refused = await tokenExchange(exchanger, { subject_token: tokens.access_token })
    expect(refused.status).toBe(400)
    expect(await refused.json()).toMatchObject({ error: 'invalid_grant' })
    // The statement saw another epoch and wrote nothing; the ring read again no longer holds the key.
    await expectRoundTrips(refused, { httpRequests: 2 })
    expect(await auditRows('token_issued', exchanger.client_id)).toBe(0)
    expect((await keyRing(db, config)).map((k) => k.kid)).not.toContain(kid)
    resetKeyCache()
  })
})
