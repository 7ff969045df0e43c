import { sql } from 'drizzle-orm'
import type { HttpDb } from '../../../db/client'
import { deleteMfaChallengeStatement } from '../../../db/queries/mfa'
import {
  advanceCounterStatement,
  type PasskeyRow,
  selectPasskeyByCredentialStatement,
  selectPasskeysForMfaStatement,
  spendChallengeStatement,
} from '../../../db/queries/passkeys'
import {
  type AttemptClaim,
  claimAttemptsStatement,
  retryAfterSeconds,
  toClaims,
} from '../../../db/queries/throttle'
import type { UserRow } from '../../../db/queries/users'
import { mfaChallenges, passkeys, users } from '../../../db/schema'
import { auditStatement } from '../../audit/record'
import type { Config } from '../../config'
import { toBase64Url } from '../../crypto/encoding'
import { sha256Hex } from '../../crypto/hash'
import {
  type AuthenticationResponseJSON,
  type RequestOptions,
  requestOptions,
  signedChallenge,
  verifyAssertion,
} from '../../crypto/webauthn'
import { ipThrottleSubject, type NewSession, overLimit, startSession } from '../login'
import { type ChallengeBinding, mintChallenge, openChallenge } from './challenge'
import { relyingParty } from './config'
import { userHandle } from './registration'

/**
 * RFC 8176 methods: `hwk` (proof of possession of a hardware-secured key) and `user` (the
 * authenticator tested the user's presence). A passwordless sign-in demands user verification
 * (PIN or biometric on the authenticator), which makes the passkey alone multi-factor: `mfa`.
 */
export const PASSWORDLESS_AMR = ['hwk', 'user', 'mfa']
/** After the password, a passkey in place of a TOTP code. */
export const SECOND_FACTOR_AMR = ['pwd', 'hwk', 'user', 'mfa']

export interface PasskeySignInInput {
  response: AuthenticationResponseJSON
  remember: boolean
  ip: string | null
  userAgent: string | null
  via: 'api' | 'form'
}

export type PasskeySignInOutcome =
  | { kind: 'ok'; user: UserRow; session: NewSession; amr: string[] }
  /** Unknown passkey, not our challenge, a replay, a bad signature, wrong origin or RP ID. */
  | { kind: 'invalid_passkey' }
  /** The signature counter did not move forward: possibly a cloned authenticator. */
  | { kind: 'counter_regressed' }
  | { kind: 'throttled'; retryAfterSeconds: number }
  | { kind: 'account_pending' | 'account_suspended' | 'email_unverified' }
  | { kind: 'unavailable' }
  /** Second factor only: the pending sign-in expired or was finished. */
  | { kind: 'invalid_mfa_token' }

/** Options for a usernameless sign-in (`navigator.credentials.get()` with no allow list). Writes nothing. */
export async function startPasswordlessSignIn(
  config: Config,
  now: Date,
): Promise<RequestOptions | undefined> {
  const party = relyingParty(config)
  if (party === undefined) {
    return undefined
  }
  const challenge = await mintChallenge(config, { purpose: 'sign_in', subject: '' }, now)
  return requestOptions({ party, challenge: challenge.bytes, allow: [], userVerification: 'required' })
}

/**
 * Options for the second step of a two-step sign-in: the pending sign-in's user's passkeys, a
 * challenge bound to that pending sign-in. Undefined when the mfa_token is not live or its user
 * has no passkey. One round trip.
 */
export async function startSecondFactor(
  db: HttpDb,
  config: Config,
  mfaToken: string,
  now: Date,
): Promise<RequestOptions | undefined> {
  const party = relyingParty(config)
  if (party === undefined || mfaToken === '' || mfaToken.length > 128) {
    return undefined
  }
  const rows = await selectPasskeysForMfaStatement(db, await sha256Hex(mfaToken), now)
  const first = rows[0]
  if (first === undefined) {
    return undefined
  }
  const challenge = await mintChallenge(config, { purpose: 'second_factor', subject: first.challengeId }, now)
  return requestOptions({
    party,
    challenge: challenge.bytes,
    allow: rows.map((r) => ({ id: r.passkey.credentialId, transports: r.passkey.transports })),
    // The password was the first factor; the passkey proves possession.
    userVerification: 'discouraged',
  })
}

/** True when the user of this pending sign-in has a passkey to offer (the second page's button). */
export async function secondFactorHasPasskey(db: HttpDb, mfaToken: string, now: Date): Promise<boolean> {
  if (mfaToken === '' || mfaToken.length > 128) {
    return false
  }
  return (await selectPasskeysForMfaStatement(db, await sha256Hex(mfaToken), now)).length > 0
}

interface Ceremony {
  binding: ChallengeBinding
  user: UserRow
  passkey: PasskeyRow
  claims: AttemptClaim[]
  requireUserVerification: boolean
}

type Checked =
  | { kind: 'ok' }
  | Extract<PasskeySignInOutcome, { kind: 'invalid_passkey' | 'counter_regressed' }>

/**
 * The checks every assertion passes: the challenge is ours for this binding and unexpired, the
 * response verifies against the stored key for our origin and RP ID, then (one batch) the
 * challenge is spent and the counter advanced: a replay finds the challenge spent; a counter that
 * did not grow past the stored one (WebAuthn L3 §6.1.1: perhaps a cloned authenticator) is
 * refused atomically, so of two racing assertions with one counter value only one passes.
 */
async function checkAssertion(
  db: HttpDb,
  config: Config,
  response: AuthenticationResponseJSON,
  ceremony: Ceremony,
  now: Date,
): Promise<Checked & { reason?: string }> {
  const party = relyingParty(config)
  const signed = signedChallenge(response.response.clientDataJSON)
  const opened =
    party === undefined || signed === undefined
      ? undefined
      : await openChallenge(config, ceremony.binding, signed, now)
  if (party === undefined || signed === undefined || opened === undefined) {
    return { kind: 'invalid_passkey', reason: 'challenge_not_ours' }
  }
  const verified = await verifyAssertion({
    party,
    response,
    challenge: signed,
    credential: {
      id: ceremony.passkey.credentialId,
      publicKey: ceremony.passkey.publicKey,
      transports: ceremony.passkey.transports,
    },
    requireUserVerification: ceremony.requireUserVerification,
  })
  if (!verified.ok) {
    return { kind: 'invalid_passkey', reason: verified.reason }
  }
  const [spent, advanced] = await db.batch([
    spendChallengeStatement(db, {
      challengeHash: await sha256Hex(signed),
      purpose: ceremony.binding.purpose,
      userId: ceremony.binding.purpose === 'sign_in' ? null : ceremony.user.id,
      expiresAt: opened.expiresAt,
      now,
    }),
    advanceCounterStatement(db, ceremony.passkey.id, verified.counter, now),
  ])
  if (spent.length !== 1) {
    return { kind: 'invalid_passkey', reason: 'challenge_replayed' }
  }
  if (advanced.length !== 1) {
    return { kind: 'counter_regressed', reason: 'counter_regressed' }
  }
  return { kind: 'ok' }
}

/** `user_login_failed` for a refused passkey, awaited (the event cannot be lost). One round trip. */
async function refuse<T extends PasskeySignInOutcome>(
  db: HttpDb,
  input: PasskeySignInInput,
  user: UserRow | undefined,
  outcome: T,
  reason: string,
): Promise<T> {
  await db.batch([
    auditStatement(db, input.ip, {
      type: 'user_login_failed',
      actor: user === undefined ? 'anonymous' : `user:${user.id}`,
      userId: user?.id ?? null,
      tenantId: user?.tenantId ?? null,
      metadata: { via: input.via, method: 'passkey', reason },
    }),
  ])
  return outcome
}

/** A claim over its limit refuses the attempt before any signature is checked (audited). */
async function refuseOverLimit(
  db: HttpDb,
  config: Config,
  input: PasskeySignInInput,
  user: UserRow | undefined,
  claims: AttemptClaim[],
  now: Date,
): Promise<PasskeySignInOutcome | undefined> {
  const blocked = overLimit(config, claims)
  if (blocked.length === 0) {
    return undefined
  }
  const outcome = { kind: 'throttled' as const, retryAfterSeconds: retryAfterSeconds(blocked, now) }
  return refuse(db, input, user, outcome, 'throttled')
}

/** The session of a passkey sign-in (one batch: session, login stamp, `user_login`, claims given back). */
async function passkeySession(
  db: HttpDb,
  config: Config,
  input: PasskeySignInInput,
  ceremony: Ceremony,
  amr: string[],
  metadata: Record<string, unknown>,
  now: Date,
): Promise<PasskeySignInOutcome> {
  const { user } = ceremony
  const session = await startSession(
    db,
    config,
    {
      user,
      remember: input.remember,
      ip: input.ip,
      userAgent: input.userAgent,
      amr,
      metadata: { via: input.via, remember: input.remember, passkey_id: ceremony.passkey.id, ...metadata },
      claims: ceremony.claims,
    },
    now,
  )
  return { kind: 'ok', user: { ...user, lastLoginAt: now }, session, amr }
}

/** The throttle subject of the account a credential id belongs to (one shared bucket for unknown ones). */
function credentialAccountSubject(credentialId: string) {
  return sql`coalesce((select 'user:' || ${passkeys.userId}::text from ${passkeys}
    where ${passkeys.credentialId} = ${credentialId} limit 1), 'passkey:unknown')`
}

function throttleSubjects(account: ReturnType<typeof sql>, ip: string | null) {
  const address = ipThrottleSubject(ip)
  return address === null ? [account] : [account, address]
}

/**
 * Usernameless sign-in with a discoverable passkey. The attempt is claimed on the account's and
 * the address's sign-in counters (the password's) in the batch that finds the passkey, before any
 * signature is checked; user verification is required; the user handle must be the passkey's
 * user's. Round trips: 2 for a refusal after the lookup (lookup and claim, audit), 3 on success
 * (lookup and claim, spend and counter, session batch).
 */
export async function completePasswordlessSignIn(
  db: HttpDb,
  config: Config,
  input: PasskeySignInInput,
  now: Date,
): Promise<PasskeySignInOutcome> {
  if (relyingParty(config) === undefined) {
    return { kind: 'unavailable' }
  }
  const credentialId = input.response.id
  const [found, claimed] = await db.batch([
    selectPasskeyByCredentialStatement(db, credentialId),
    claimAttemptsStatement(
      db,
      throttleSubjects(credentialAccountSubject(credentialId), input.ip),
      now,
      config.loginFailureWindowSeconds,
    ),
  ])
  const row = found[0]
  const claims = toClaims(claimed)
  const throttled = await refuseOverLimit(db, config, input, row?.user, claims, now)
  if (throttled !== undefined) {
    return throttled
  }
  if (row === undefined) {
    return refuse(db, input, undefined, { kind: 'invalid_passkey' }, 'unknown_passkey')
  }
  const handle = input.response.response.userHandle
  if (handle !== undefined && handle !== toHandleText(row.user.id)) {
    return refuse(db, input, row.user, { kind: 'invalid_passkey' }, 'user_handle_mismatch')
  }
  const ceremony: Ceremony = {
    binding: { purpose: 'sign_in', subject: '' },
    user: row.user,
    passkey: row.passkey,
    claims,
    requireUserVerification: true,
  }
  const checked = await checkAssertion(db, config, input.response, ceremony, now)
  if (checked.kind !== 'ok') {
    return refuse(db, input, row.user, { kind: checked.kind }, checked.reason ?? checked.kind)
  }
  const status = accountRefusal(config, row.user)
  if (status !== undefined) {
    return refuse(db, input, row.user, { kind: status }, status)
  }
  return passkeySession(db, config, input, ceremony, PASSWORDLESS_AMR, { method: 'passkey' }, now)
}

/** The same refusals as the password sign-in, once the passkey has proved who this is. */
function accountRefusal(
  config: Config,
  user: UserRow,
): 'account_pending' | 'account_suspended' | 'email_unverified' | undefined {
  if (user.status === 'suspended') {
    return 'account_suspended'
  }
  if (user.status === 'pending') {
    return 'account_pending'
  }
  if (config.requireEmailVerification && user.emailVerifiedAt === null) {
    return 'email_unverified'
  }
  return undefined
}

/** The user handle as the browser sends it back: base64url of the 16 UUID bytes. */
function toHandleText(userId: string): string {
  return toBase64Url(userHandle(userId))
}

/**
 * The second step of a two-step sign-in with a passkey instead of a TOTP code. The attempt is
 * claimed on the counters the password used before the signature is checked; the passkey must be
 * the pending sign-in's user's; the pending sign-in is consumed (only one second step finishes
 * it). Round trips: 4 on success (lookup and claim, spend and counter, consume, session batch).
 */
export async function completeSecondFactor(
  db: HttpDb,
  config: Config,
  input: PasskeySignInInput & { mfaToken: string },
  now: Date,
): Promise<PasskeySignInOutcome> {
  if (relyingParty(config) === undefined) {
    return { kind: 'unavailable' }
  }
  if (input.mfaToken === '' || input.mfaToken.length > 128) {
    return { kind: 'invalid_mfa_token' }
  }
  const tokenHash = await sha256Hex(input.mfaToken)
  const account = sql`coalesce((select 'user:' || ${mfaChallenges.userId}::text from ${mfaChallenges}
    where ${mfaChallenges.tokenHash} = ${tokenHash} limit 1), 'passkey:unknown')`
  const [pending, found, claimed] = await db.batch([
    db
      .select({
        challengeId: mfaChallenges.id,
        via: mfaChallenges.via,
        remember: mfaChallenges.remember,
        user: users,
      })
      .from(mfaChallenges)
      .innerJoin(users, sql`${users.id} = ${mfaChallenges.userId}`)
      .where(
        sql`${mfaChallenges.tokenHash} = ${tokenHash} and ${mfaChallenges.expiresAt} > ${now.toISOString()}::timestamptz`,
      )
      .limit(1),
    selectPasskeyByCredentialStatement(db, input.response.id),
    claimAttemptsStatement(db, throttleSubjects(account, input.ip), now, config.loginFailureWindowSeconds),
  ])
  const challenge = pending[0]
  if (challenge === undefined || challenge.user.status !== 'active') {
    return { kind: 'invalid_mfa_token' }
  }
  const user = challenge.user
  const claims = toClaims(claimed)
  const throttled = await refuseOverLimit(db, config, input, user, claims, now)
  if (throttled !== undefined) {
    return throttled
  }
  const row = found[0]
  if (row === undefined || row.passkey.userId !== user.id) {
    return refuse(db, input, user, { kind: 'invalid_passkey' }, 'not_this_users_passkey')
  }
  const ceremony: Ceremony = {
    binding: { purpose: 'second_factor', subject: challenge.challengeId },
    user,
    passkey: row.passkey,
    claims,
    requireUserVerification: false,
  }
  const checked = await checkAssertion(db, config, input.response, ceremony, now)
  if (checked.kind !== 'ok') {
    return refuse(db, input, user, { kind: checked.kind }, checked.reason ?? checked.kind)
  }
  const consumed = await deleteMfaChallengeStatement(db, challenge.challengeId)
  if (consumed.length !== 1) {
    return { kind: 'invalid_mfa_token' }
  }
  return passkeySession(
    db,
    config,
    { ...input, remember: challenge.remember },
    ceremony,
    SECOND_FACTOR_AMR,
    { via: challenge.via, second_factor: 'passkey' },
    now,
  )
}
