import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose'
import { type Db, withRequestScope } from '../../db/client'
import { isDatabaseUnavailable } from '../../db/errors'
import {
  insertFirstSigningKey,
  insertSigningKeyStatement,
  loadPublishedKeys,
  retireExpiredKeys,
  retireExpiredKeysStatement,
  retireOtherKeysStatement,
  type SigningKeyRow,
  signingKeyRotatedAuditStatement,
} from '../../db/queries/oauth-keys'
import type { SigningAlgorithm } from '../../db/schema'
import type { Config } from '../config'
import { seal, unseal } from '../crypto/aes-gcm'
import { errorForLog, log } from '../log'

/** How long an isolate trusts its copy of the key set before reading it again. */
export const KEY_CACHE_TTL_SECONDS = 60
/**
 * From this age a request that finds the key set still fresh starts re-reading it in the
 * background (waitUntil), so a busy isolate replaces its copy before the TTL and no request waits
 * for the read. An isolate idle past the TTL reads it on the request path, unless a token grant's
 * statement confirmed it by the key set's epoch first (confirmKeyRing).
 */
export const KEY_REFRESH_AHEAD_SECONDS = KEY_CACHE_TTL_SECONDS / 2

/**
 * The request scope of that background read: it is the isolate's upkeep (one read per isolate
 * per KEY_REFRESH_AHEAD_SECONDS at most), not part of the request that happened to start it, so
 * the local gateway counts it under this id rather than that request's.
 */
export const KEY_RING_REFRESH_SCOPE = 'key-ring-refresh'
/** `Cache-Control: max-age` of the JWKS. */
export const JWKS_MAX_AGE_SECONDS = 300
/**
 * A rotated key is published this long before it signs, so every cache of the JWKS (edge,
 * resource servers, our own isolates) has seen it before the first token it signs arrives.
 */
export const KEY_PUBLISH_LEAD_SECONDS = JWKS_MAX_AGE_SECONDS + KEY_CACHE_TTL_SECONDS
/** Scheduled rotation: the cron replaces a key older than this (rotateDueSigningKeys). */
export const KEY_ROTATION_INTERVAL_SECONDS = 90 * 86_400
/** Clock skew tolerated by verifiers, added before a retiring key leaves the JWKS. */
export const CLOCK_SKEW_SECONDS = 60
/** An unknown `kid` triggers at most one re-read of the key set per this interval. */
const UNKNOWN_KID_REFRESH_SECONDS = 5
/**
 * While the database is unreachable an isolate keeps serving (JWKS), signing and verifying with
 * the last key set it read, for at most this long after that read: keys only change through
 * rotation, which publishes a new key KEY_PUBLISH_LEAD_SECONDS before it signs and keeps the old
 * one published until its tokens expire, so a day-old copy is still the truth unless a rotation
 * ran during the outage (then verifiers refetch on the unknown kid once the database is back).
 * Keys past their retireAfter are dropped from the JWKS as usual. Past this bound: 503.
 */
export const MAX_STALE_KEY_RING_SECONDS = 86_400
/** After a failed re-read, the stale set is served without retrying for this long. */
const STALE_RETRY_SECONDS = 5

/**
 * A signing key whose private half cannot be decrypted with the configured MASTER_KEY (it was
 * changed, or a key id is missing). Names the key id only; the edge answers 503.
 */
export class SigningKeyUnavailableError extends Error {
  override name = 'SigningKeyUnavailableError'
  readonly code = 'signing_key_unavailable'
  constructor(
    readonly kid: string,
    options: { cause?: unknown } = {},
  ) {
    super(`signing key ${kid} cannot be decrypted with the configured MASTER_KEY`, options)
  }
}

/**
 * Algorithms kept signing at all times: the access-token algorithm (ES256 unless configured),
 * and ES256 and RS256 for id_tokens (RS256 is the OIDC default). Any other algorithm a client
 * registers for its id_tokens gets its key on first use.
 */
function requiredAlgorithms(config: Config): SigningAlgorithm[] {
  return [...new Set<SigningAlgorithm>([config.accessTokenAlg, 'ES256', 'RS256'])]
}

/**
 * A deployment's first key for `alg`, created at most once (guarded in the database), and only
 * when no active key of `alg` exists. It may sign at once: nothing can have been signed by it.
 */
async function createFirstKey(db: Db, config: Config, alg: SigningAlgorithm, now: Date): Promise<void> {
  // Activation is backdated by the clock skew: an isolate that started its request a moment
  // earlier (workerd's clock only moves on I/O) must still find it activated, not fail to sign.
  const sealed = await newSealedKey(config, alg)
  const inserted = await insertFirstSigningKey(db.http, {
    ...sealed,
    status: 'active',
    activatesAt: new Date(now.getTime() - CLOCK_SKEW_SECONDS * 1000),
  })
  if (inserted) {
    log('info', 'signing_key_created', { kid: sealed.kid, alg, reason: 'first_key' })
  }
}

export interface SigningKey {
  kid: string
  alg: SigningAlgorithm
  status: SigningKeyRow['status']
  activatesAt: Date
  retireAfter: Date | null
  publicJwk: JWK
  publicKey: Promise<CryptoKey | Uint8Array>
  privateKey(): Promise<CryptoKey | Uint8Array>
}

interface KeyRing {
  /** When the ring was last known to be the database's key set: read, or confirmed by epoch. */
  loadedAt: number
  /** The key set's epoch read with it (`KEY_EPOCH`, migration 0023); null when it was read empty. */
  epoch: string | null
  /** A grant statement saw another epoch: the ring is out of date whatever its age. */
  superseded: boolean
  keys: SigningKey[]
}

let ring: KeyRing | undefined
/** When a request began re-reading a stale key set; meanwhile the others keep the stale one. */
let refreshStartedAt: number | undefined
/** When the last re-read failed because the database was away (the stale set is served). */
let refreshFailedAt: number | undefined
/** A refresh still running after this long is presumed lost (its request was cancelled). */
const REFRESH_GIVE_UP_MS = 10_000

/** Forgets the isolate's key set (after a rotation made here). */
export function resetKeyCache(): void {
  ring = undefined
  refreshStartedAt = undefined
  refreshFailedAt = undefined
}

/** The AES-GCM context a private key is sealed under: its ciphertext opens only for its kid. */
export function signingKeyContext(kid: string): string {
  return `signing_key:${kid}`
}

function toSigningKey(row: SigningKeyRow, config: Config): SigningKey {
  let privateKey: Promise<CryptoKey | Uint8Array> | undefined
  const publicJwk = { ...row.publicJwk } as JWK
  return {
    kid: row.kid,
    alg: row.alg,
    status: row.status,
    activatesAt: row.activatesAt,
    retireAfter: row.retireAfter,
    publicJwk,
    publicKey: importJWK(publicJwk, row.alg),
    privateKey() {
      privateKey ??= unseal(
        config.masterKeys,
        { masterKeyId: row.masterKeyId, ciphertext: row.privateJwkEncrypted },
        signingKeyContext(row.kid),
      ).then(
        (json) => importJWK(JSON.parse(json) as JWK, row.alg),
        (cause: unknown) => {
          throw new SigningKeyUnavailableError(row.kid, { cause })
        },
      )
      return privateKey
    },
  }
}

async function newSealedKey(
  config: Config,
  alg: SigningAlgorithm,
): Promise<{
  kid: string
  alg: SigningAlgorithm
  publicJwk: Record<string, unknown>
  privateJwkEncrypted: string
  masterKeyId: string
}> {
  const pair = await generateKeyPair(alg, {
    extractable: true,
    ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}),
    ...(alg === 'RS256' ? { modulusLength: 2048 } : {}),
  })
  const publicJwk = await exportJWK(pair.publicKey)
  const privateJwk = await exportJWK(pair.privateKey)
  const kid = await calculateJwkThumbprint(publicJwk)
  const sealed = await seal(config.masterKeys, JSON.stringify(privateJwk), signingKeyContext(kid))
  return {
    kid,
    alg,
    publicJwk: { ...publicJwk, kid, alg, use: 'sig' },
    privateJwkEncrypted: sealed.ciphertext,
    masterKeyId: sealed.masterKeyId,
  }
}

// The request path only reads: rotation is the cron's (rotateDueSigningKeys). The one write
// left here is a deployment's very first key per algorithm, created once, guarded in the database.
async function loadRing(db: Db, config: Config, now: Date): Promise<KeyRing> {
  let loaded = await loadPublishedKeys(db.http, now)
  const missing = requiredAlgorithms(config).filter(
    (alg) => !loaded.rows.some((r) => r.alg === alg && r.status === 'active'),
  )
  if (missing.length > 0) {
    for (const alg of missing) {
      await createFirstKey(db, config, alg, now)
    }
    loaded = await loadPublishedKeys(db.http, now)
  }
  return {
    loadedAt: now.getTime(),
    epoch: loaded.epoch,
    superseded: false,
    keys: loaded.rows.map((row) => toSigningKey(row, config)),
  }
}

/**
 * A token grant's statement read the key set's epoch (`KEY_EPOCH`) at `at`, before the request
 * signs anything. The same epoch as the ring's means no key was created, rotated, retired or
 * deleted since the ring was read, so the ring is the database's key set as of `at` and counts
 * as read then: an isolate that sat idle past KEY_CACHE_TTL_SECONDS signs without a second
 * round trip. Another epoch means the ring is out of date (a rotation, an emergency one
 * included, reached the database): the next keyRing re-reads it, on this request's path, before
 * anything is signed with it. `at` must not be later than the statement that read the epoch.
 */
export function confirmKeyRing(epoch: string | null, at: Date): boolean {
  const current = ring
  if (current === undefined || epoch === null) {
    return false
  }
  if (current.epoch !== epoch) {
    ring = { ...current, superseded: true }
    return false
  }
  if (!current.superseded && at.getTime() > current.loadedAt) {
    ring = { ...current, loadedAt: at.getTime() }
  }
  return !current.superseded
}

/**
 * The scheduled job's half of key management: replaces every required algorithm's key older
 * than KEY_ROTATION_INTERVAL_SECONDS (published KEY_PUBLISH_LEAD_SECONDS before it signs) and
 * retires keys whose tokens have all expired. Round trips: one, plus three per rotation.
 */
export async function rotateDueSigningKeys(
  db: Db,
  config: Config,
  now = new Date(),
): Promise<RotationReport[]> {
  const { rows } = await loadPublishedKeys(db.http, now)
  const reports: RotationReport[] = []
  for (const alg of requiredAlgorithms(config)) {
    const newest = rows
      .filter((r) => r.alg === alg && r.status === 'active')
      .reduce<SigningKeyRow | undefined>(
        (a, b) => (a === undefined || b.activatesAt > a.activatesAt ? b : a),
        undefined,
      )
    if (
      newest !== undefined &&
      now.getTime() - newest.activatesAt.getTime() > KEY_ROTATION_INTERVAL_SECONDS * 1000
    ) {
      reports.push(await rotateSigningKey(db, config, alg, KEY_PUBLISH_LEAD_SECONDS, now))
    }
  }
  if (reports.length === 0) {
    await retireExpiredKeys(db.http, now)
  }
  return reports
}

/**
 * The published key set, cached per isolate for KEY_CACHE_TTL_SECONDS from when it was read or
 * last confirmed by epoch: no database access on a warm isolate; one round trip (more only on
 * first use) when cold or superseded.
 *
 * No request ever awaits a load another request started: workerd cancels such continuations
 * when the starting request ends ("the script will never generate a response", a 500 for every
 * waiter, seen in the bench at the moment the cache expired under load). A stale set is instead
 * served while one request refreshes it; an empty isolate has each request load its own.
 */
export async function keyRing(db: Db, config: Config, now = new Date()): Promise<SigningKey[]> {
  const current = ring
  const servableStale =
    current !== undefined && now.getTime() - current.loadedAt < MAX_STALE_KEY_RING_SECONDS * 1000
  if (current !== undefined) {
    const age = now.getTime() - current.loadedAt
    // A superseded ring is re-read by the request that would sign with it, not served meanwhile.
    if (age < KEY_CACHE_TTL_SECONDS * 1000 && !current.superseded) {
      if (age >= KEY_REFRESH_AHEAD_SECONDS * 1000 && !refreshRunning(now) && !refreshRecentlyFailed(now)) {
        db.defer(withRequestScope(KEY_RING_REFRESH_SCOPE, () => refreshInBackground(db, config, now)))
      }
      return current.keys
    }
    if (refreshRunning(now) && !current.superseded) {
      return current.keys
    }
    if (servableStale && refreshRecentlyFailed(now)) {
      return current.keys
    }
  }
  refreshStartedAt = now.getTime()
  try {
    const loaded = await loadRing(db, config, now)
    ring = loaded
    refreshFailedAt = undefined
    return loaded.keys
  } catch (error) {
    if (current === undefined || !servableStale || !isDatabaseUnavailable(error)) {
      throw error
    }
    if (refreshFailedAt === undefined) {
      log('warn', 'key_ring_served_stale', {
        ageSeconds: Math.round((now.getTime() - current.loadedAt) / 1000),
      })
    }
    refreshFailedAt = now.getTime()
    return current.keys
  } finally {
    refreshStartedAt = undefined
  }
}

function refreshRunning(now: Date): boolean {
  return refreshStartedAt !== undefined && now.getTime() - refreshStartedAt < REFRESH_GIVE_UP_MS
}

function refreshRecentlyFailed(now: Date): boolean {
  return refreshFailedAt !== undefined && now.getTime() - refreshFailedAt < STALE_RETRY_SECONDS * 1000
}

/**
 * Re-reads the key set for the isolate while requests keep using the fresh-enough copy. Never
 * rejects: a failure leaves the copy in place (the request path re-reads it past the TTL, and
 * serves it stale through an outage as keyRing says).
 */
async function refreshInBackground(db: Db, config: Config, now: Date): Promise<void> {
  refreshStartedAt = now.getTime()
  try {
    ring = await loadRing(db, config, now)
    refreshFailedAt = undefined
  } catch (error) {
    refreshFailedAt = now.getTime()
    if (isDatabaseUnavailable(error)) {
      log('warn', 'key_ring_refresh_failed', { reason: 'database_unavailable' })
    } else {
      log('error', 'key_ring_refresh_failed', { error: errorForLog(error) })
    }
  } finally {
    refreshStartedAt = undefined
  }
}

/**
 * The kids among the keys that may still sign (not retired) whose private half the configured
 * MASTER_KEY cannot decrypt. Round trips: as keyRing (0 on a warm isolate).
 */
export async function undecryptableSigningKeys(db: Db, config: Config, now = new Date()): Promise<string[]> {
  const keys = (await keyRing(db, config, now)).filter((k) => k.status !== 'retired')
  const failed: string[] = []
  for (const key of keys) {
    try {
      await key.privateKey()
    } catch (error) {
      if (!(error instanceof SigningKeyUnavailableError)) {
        throw error
      }
      failed.push(key.kid)
    }
  }
  return failed
}

/**
 * Whether `key` is still published at `now`. A ring keeps a retiring key past its `retireAfter`
 * until it is read again, and a ring confirmed by epoch (or served stale through an outage) can
 * outlive that moment by far: nothing may sign or verify with such a key, as the JWKS no longer
 * lists it and every token it legitimately signed has expired.
 */
function publishedAt(key: SigningKey, now: Date): boolean {
  return key.retireAfter === null || key.retireAfter.getTime() > now.getTime()
}

/** The key that signs `alg` now: the newest one already activated. */
export async function signingKeyFor(
  db: Db,
  config: Config,
  alg: SigningAlgorithm,
  now = new Date(),
): Promise<SigningKey> {
  const usable = (k: SigningKey) => k.alg === alg && k.status !== 'retired' && publishedAt(k, now)
  let keys = (await keyRing(db, config, now)).filter(usable)
  if (keys.length === 0) {
    // An algorithm outside the required set (a client registered EdDSA id_tokens): its first key.
    await createFirstKey(db, config, alg, now)
    resetKeyCache()
    keys = (await keyRing(db, config, now)).filter(usable)
  }
  const newestOf = (list: SigningKey[]) =>
    list.reduce<SigningKey | undefined>(
      (a, b) => (a === undefined || b.activatesAt > a.activatesAt ? b : a),
      undefined,
    )
  const activated = newestOf(keys.filter((k) => k.activatesAt.getTime() <= now.getTime()))
  if (activated !== undefined) {
    return activated
  }
  // Only keys still waiting to activate (a rotation ran while no key of this alg could sign):
  // they are already published, so signing with the newest beats failing every token request.
  const pending = newestOf(keys)
  if (pending === undefined) {
    throw new Error(`no ${alg} signing key is published`)
  }
  log('warn', 'signing_key_used_before_activation', { kid: pending.kid, alg })
  return pending
}

/**
 * The published key with this `kid`, re-reading the key set at most once per
 * UNKNOWN_KID_REFRESH_SECONDS so a key rotated in another isolate is found, while a flood of
 * made-up kids cannot turn into a flood of queries.
 */
export async function verificationKey(
  db: Db,
  config: Config,
  kid: string,
  now = new Date(),
): Promise<SigningKey | undefined> {
  const keys = await keyRing(db, config, now)
  const known = keys.find((k) => k.kid === kid)
  if (known !== undefined || ring === undefined) {
    return known !== undefined && publishedAt(known, now) ? known : undefined
  }
  if (now.getTime() - ring.loadedAt < UNKNOWN_KID_REFRESH_SECONDS * 1000) {
    return undefined
  }
  ring = undefined
  return (await keyRing(db, config, now)).find((k) => k.kid === kid && publishedAt(k, now))
}

/**
 * verificationKey for a request that reads only, and reads the key set's epoch (`KEY_EPOCH`) in
 * its own statement. A ring past its TTL (not superseded, younger than
 * MAX_STALE_KEY_RING_SECONDS) that holds the kid is used as it is, without a read, and its epoch
 * comes back with the key: the request must hand what its statement read to confirmKeyRing and,
 * unless that confirms the ring, verify again (verificationKey then re-reads it). `epoch` is
 * undefined when the key came from a current ring (nothing to confirm).
 */
export async function verificationKeyToConfirm(
  db: Db,
  config: Config,
  kid: string,
  now = new Date(),
): Promise<{ key: SigningKey | undefined; epoch: string | undefined }> {
  const current = ring
  const age = current === undefined ? 0 : now.getTime() - current.loadedAt
  if (
    current !== undefined &&
    current.epoch !== null &&
    !current.superseded &&
    age >= KEY_CACHE_TTL_SECONDS * 1000 &&
    age < MAX_STALE_KEY_RING_SECONDS * 1000
  ) {
    const key = current.keys.find((k) => k.kid === kid && publishedAt(k, now))
    if (key !== undefined) {
      return { key, epoch: current.epoch }
    }
  }
  return { key: await verificationKey(db, config, kid, now), epoch: undefined }
}

/** JWKS of active and retiring keys (RFC 7517), each with kid, alg and use. */
export async function publicJwks(db: Db, config: Config, now = new Date()): Promise<{ keys: JWK[] }> {
  const keys = await keyRing(db, config, now)
  return {
    keys: keys
      .filter((k) => publishedAt(k, now))
      .map((k) => ({ ...k.publicJwk, kid: k.kid, alg: k.alg, use: 'sig' })),
  }
}

export interface RotationReport {
  kid: string
  alg: SigningAlgorithm
  activatesAt: Date
  retiring: string[]
  retired: string[]
}

/** Who rotates: the admin API names its caller; the scheduled job is `system`. */
export interface RotationActor {
  actor: string
  ip: string | null
}

/**
 * Creates a new key for `alg`, published now and signing from `now + activateInSeconds`; the
 * previous keys keep signing until then and stay published until every token they signed has
 * expired (longest token lifetime plus clock skew). One batch: the insert, both retirements and
 * the `signing_key_rotated` audit row commit together or not at all. One round trip.
 */
export async function rotateSigningKey(
  db: Db,
  config: Config,
  alg: SigningAlgorithm,
  activateInSeconds: number,
  now = new Date(),
  by: RotationActor = { actor: 'system', ip: null },
): Promise<RotationReport> {
  const activatesAt = new Date(now.getTime() + activateInSeconds * 1000)
  const retireAfter = new Date(
    activatesAt.getTime() + (config.accessTokenTtlSeconds + CLOCK_SKEW_SECONDS) * 1000,
  )
  const sealed = await newSealedKey(config, alg)
  const [inserted, retiringRows, retiredRows] = await db.http.batch([
    insertSigningKeyStatement(db.http, { ...sealed, status: 'active', activatesAt }),
    retireOtherKeysStatement(db.http, alg, sealed.kid, retireAfter),
    retireExpiredKeysStatement(db.http, now),
    signingKeyRotatedAuditStatement(db.http, { ...by, kid: sealed.kid, alg, activatesAt }, retireAfter),
  ])
  const row = inserted[0]
  if (row === undefined) {
    throw new Error('insert into signing_keys returned nothing')
  }
  resetKeyCache()
  return {
    kid: row.kid,
    alg,
    activatesAt,
    retiring: retiringRows.map((r) => r.kid),
    retired: retiredRows.map((r) => r.kid),
  }
}
