import {
  type AuthenticationResponseJSON,
  generateAuthenticationOptions,
  generateRegistrationOptions,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server'
import { fromBase64Url, toBase64Url } from './encoding'

// WebAuthn ceremonies through @simplewebauthn/server (WebCrypto, so it runs in workerd), with the
// policy pinned here as jose's is for JWTs: attestation `none` (we trust no authenticator model,
// so a statement would prove nothing we check), Ed25519, P-256 and RSA keys, client data for
// exactly our origin and RP ID.

export type { AuthenticationResponseJSON, RegistrationResponseJSON }
export type CreationOptions = PublicKeyCredentialCreationOptionsJSON
export type RequestOptions = PublicKeyCredentialRequestOptionsJSON

/** COSE algorithms accepted (RFC 9053): EdDSA, ES256, RS256. */
const ALGORITHMS = [-8, -7, -257]
/** How long the browser waits for the person (the challenge itself lives longer). */
export const CEREMONY_TIMEOUT_MS = 120_000

export interface Party {
  id: string
  origin: string
  name: string
}

export interface CredentialRef {
  /** base64url credential id. */
  id: string
  transports: readonly string[]
}

export function registrationOptions(input: {
  party: Party
  challenge: Uint8Array
  user: { id: Uint8Array; name: string; displayName: string }
  exclude: readonly CredentialRef[]
}): Promise<CreationOptions> {
  return generateRegistrationOptions({
    rpName: input.party.name,
    rpID: input.party.id,
    userID: input.user.id as Uint8Array<ArrayBuffer>,
    userName: input.user.name,
    userDisplayName: input.user.displayName,
    challenge: input.challenge as Uint8Array<ArrayBuffer>,
    timeout: CEREMONY_TIMEOUT_MS,
    attestationType: 'none',
    excludeCredentials: input.exclude.map((c) => ({ id: c.id, transports: [...c.transports] })),
    // A discoverable credential, so it can sign in without an email first (usernameless).
    authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
    supportedAlgorithmIDs: ALGORITHMS,
  })
}

export function requestOptions(input: {
  party: Party
  challenge: Uint8Array
  allow: readonly CredentialRef[]
  userVerification: 'required' | 'preferred' | 'discouraged'
}): Promise<RequestOptions> {
  return generateAuthenticationOptions({
    rpID: input.party.id,
    challenge: input.challenge as Uint8Array<ArrayBuffer>,
    timeout: CEREMONY_TIMEOUT_MS,
    userVerification: input.userVerification,
    allowCredentials: input.allow.map((c) => ({ id: c.id, transports: [...c.transports] })),
  })
}

/** The `challenge` the client data of a response signs (base64url), without verifying anything. */
export function signedChallenge(clientDataJSON: string): string | undefined {
  const bytes = fromBase64Url(clientDataJSON)
  if (bytes === undefined) {
    return undefined
  }
  try {
    const data: unknown = JSON.parse(new TextDecoder().decode(bytes))
    const challenge =
      typeof data === 'object' && data !== null ? (data as { challenge?: unknown }).challenge : undefined
    return typeof challenge === 'string' ? challenge : undefined
  } catch {
    return undefined
  }
}

export interface NewCredential {
  id: string
  /** base64url COSE_Key. */
  publicKey: string
  counter: number
  transports: string[]
  backedUp: boolean
  userVerified: boolean
}

/**
 * Verifies an attestation (registration) response: type `webauthn.create`, our challenge, origin
 * and RP ID hash, user presence, a supported key. Undefined for any failure (the reason is for
 * the log only, returned as `reason`).
 */
export async function verifyRegistration(input: {
  party: Party
  response: RegistrationResponseJSON
  challenge: string
}): Promise<{ ok: true; credential: NewCredential } | { ok: false; reason: string }> {
  try {
    const verified = await verifyRegistrationResponse({
      response: input.response,
      expectedChallenge: input.challenge,
      expectedOrigin: input.party.origin,
      expectedRPID: input.party.id,
      requireUserVerification: false,
      supportedAlgorithmIDs: ALGORITHMS,
    })
    if (!verified.verified) {
      return { ok: false, reason: 'not_verified' }
    }
    const info = verified.registrationInfo
    return {
      ok: true,
      credential: {
        id: info.credential.id,
        publicKey: toBase64Url(info.credential.publicKey),
        counter: info.credential.counter,
        transports: input.response.response.transports ?? [],
        backedUp: info.credentialBackedUp,
        userVerified: info.userVerified,
      },
    }
  } catch (error) {
    return { ok: false, reason: reasonOf(error) }
  }
}

/**
 * Verifies an assertion (authentication) response against a stored credential: type
 * `webauthn.get`, our challenge, origin and RP ID hash, user presence (and verification when
 * required), the signature. The signature counter is returned, not judged: the caller compares it
 * with the stored one (and again atomically in the database).
 */
export async function verifyAssertion(input: {
  party: Party
  response: AuthenticationResponseJSON
  challenge: string
  credential: { id: string; publicKey: string; transports: readonly string[] }
  requireUserVerification: boolean
}): Promise<{ ok: true; counter: number; userVerified: boolean } | { ok: false; reason: string }> {
  const publicKey = fromBase64Url(input.credential.publicKey)
  if (publicKey === undefined) {
    return { ok: false, reason: 'stored_key_unreadable' }
  }
  try {
    const verified = await verifyAuthenticationResponse({
      response: input.response,
      expectedChallenge: input.challenge,
      expectedOrigin: input.party.origin,
      expectedRPID: input.party.id,
      // Counter 0 turns the library's own counter check off: ours runs on the result.
      credential: {
        id: input.credential.id,
        publicKey: publicKey as Uint8Array<ArrayBuffer>,
        counter: 0,
        transports: [...input.credential.transports],
      },
      requireUserVerification: input.requireUserVerification,
    })
    if (!verified.verified) {
      return { ok: false, reason: 'not_verified' }
    }
    return {
      ok: true,
      counter: verified.authenticationInfo.newCounter,
      userVerified: verified.authenticationInfo.userVerified,
    }
  } catch (error) {
    return { ok: false, reason: reasonOf(error) }
  }
}

/**
 * A short code for why the library refused a response (for the audit trail and the log): its
 * messages quote client-supplied text (an origin, a challenge), which stays out.
 */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : ''
  const codes: readonly [RegExp, string][] = [
    [/origin/i, 'wrong_origin'],
    [/RP ID/i, 'wrong_rp_id'],
    [/challenge/i, 'wrong_challenge'],
    [/type/i, 'wrong_type'],
    [/user verification|could not be verified/i, 'user_not_verified'],
    [/user not present/i, 'user_not_present'],
    [/signature/i, 'bad_signature'],
  ]
  return codes.find(([pattern]) => pattern.test(message))?.[1] ?? 'invalid_response'
}
