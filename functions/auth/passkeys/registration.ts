import type { HttpDb } from '../../../db/client'
import { sqlState, UNIQUE_VIOLATION } from '../../../db/errors'
import {
  insertPasskeyStatement,
  listPasskeysStatement,
  type PasskeyRow,
  spendChallengeStatement,
} from '../../../db/queries/passkeys'
import type { UserRow } from '../../../db/queries/users'
import { auditStatement } from '../../audit/record'
import type { Config } from '../../config'
import { sha256Hex } from '../../crypto/hash'
import {
  type CreationOptions,
  type RegistrationResponseJSON,
  registrationOptions,
  signedChallenge,
  verifyRegistration,
} from '../../crypto/webauthn'
import { mintChallenge, openChallenge } from './challenge'
import { relyingParty } from './config'

/** More passkeys than anyone needs; a cap keeps the account page and allow lists small. */
export const MAX_PASSKEYS_PER_USER = 20
/** Adding a passkey needs a sign-in this recent (a stolen session cookie alone cannot plant one). */
export const RECENT_SIGN_IN_SECONDS = 900
export const PASSKEY_NAME_MAX_LENGTH = 100

/** The WebAuthn user handle: the user's UUID as its 16 bytes (no email or name in it). */
export function userHandle(userId: string): Uint8Array {
  const hex = userId.replace(/-/g, '')
  return Uint8Array.from({ length: 16 }, (_, i) => Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16))
}

/** True when the session was started recently enough to add a passkey. */
export function signedInRecently(session: { createdAt: Date }, now: Date): boolean {
  return now.getTime() - session.createdAt.getTime() <= RECENT_SIGN_IN_SECONDS * 1000
}

export type StartRegistrationOutcome =
  | { kind: 'ok'; options: CreationOptions }
  | { kind: 'unavailable' }
  | { kind: 'too_many' }

/**
 * Options for `navigator.credentials.create()`: a challenge bound to this user, a discoverable
 * credential, and the user's passkeys excluded (one authenticator is registered once). Writes
 * nothing. One round trip (the user's passkeys).
 */
export async function startRegistration(
  db: HttpDb,
  config: Config,
  user: UserRow,
  now: Date,
): Promise<StartRegistrationOutcome> {
  const party = relyingParty(config)
  if (party === undefined) {
    return { kind: 'unavailable' }
  }
  const existing = await listPasskeysStatement(db, user.id)
  if (existing.length >= MAX_PASSKEYS_PER_USER) {
    return { kind: 'too_many' }
  }
  const challenge = await mintChallenge(config, { purpose: 'register', subject: user.id }, now)
  const options = await registrationOptions({
    party,
    challenge: challenge.bytes,
    user: { id: userHandle(user.id), name: user.email, displayName: user.displayName ?? user.email },
    exclude: existing.map((p) => ({ id: p.credentialId, transports: p.transports })),
  })
  return { kind: 'ok', options }
}

export type FinishRegistrationOutcome =
  | { kind: 'ok'; passkey: PasskeyRow }
  | { kind: 'unavailable' }
  /** Not our challenge for this user, expired, already answered, or the attestation does not verify. */
  | { kind: 'invalid_response'; reason: string }
  | { kind: 'already_registered' }
  | { kind: 'too_many' }

/**
 * Verifies a registration response and stores the passkey: the challenge must be ours, for this
 * user and unexpired, the attestation must name our origin and RP ID, and then the challenge is
 * spent (a second answer to it is refused). The passkey and `passkey_added` commit in one batch.
 * Round trips: none for a bad response, else 3 (spend, the cap, insert with audit).
 */
export async function finishRegistration(
  db: HttpDb,
  config: Config,
  input: { user: UserRow; response: RegistrationResponseJSON; name: string; ip: string | null },
  now: Date,
): Promise<FinishRegistrationOutcome> {
  const party = relyingParty(config)
  if (party === undefined) {
    return { kind: 'unavailable' }
  }
  const { user } = input
  const signed = signedChallenge(input.response.response.clientDataJSON)
  const opened =
    signed === undefined
      ? undefined
      : await openChallenge(config, { purpose: 'register', subject: user.id }, signed, now)
  if (signed === undefined || opened === undefined) {
    return { kind: 'invalid_response', reason: 'challenge_not_ours' }
  }
  const verified = await verifyRegistration({ party, response: input.response, challenge: signed })
  if (!verified.ok) {
    return { kind: 'invalid_response', reason: verified.reason }
  }
  const spent = await spendChallengeStatement(db, {
    challengeHash: await sha256Hex(signed),
    purpose: 'register',
    userId: user.id,
    expiresAt: opened.expiresAt,
    now,
  })
  if (spent.length !== 1) {
    return { kind: 'invalid_response', reason: 'challenge_replayed' }
  }
  if ((await listPasskeysStatement(db, user.id)).length >= MAX_PASSKEYS_PER_USER) {
    return { kind: 'too_many' }
  }
  const credential = verified.credential
  try {
    const [inserted] = await db.batch([
      insertPasskeyStatement(db, {
        userId: user.id,
        credentialId: credential.id,
        publicKey: credential.publicKey,
        signCount: credential.counter,
        transports: credential.transports,
        backedUp: credential.backedUp,
        name: input.name,
        createdAt: now,
      }),
      auditStatement(db, input.ip, {
        type: 'passkey_added',
        actor: `user:${user.id}`,
        userId: user.id,
        tenantId: user.tenantId,
        metadata: { credential_backed_up: credential.backedUp },
      }),
    ])
    const passkey = inserted[0]
    if (passkey === undefined) {
      throw new Error('passkey insert returned no row')
    }
    return { kind: 'ok', passkey }
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) {
      return { kind: 'already_registered' }
    }
    throw error
  }
}
