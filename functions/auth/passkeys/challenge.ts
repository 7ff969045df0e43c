import type { Config } from '../../config'
import { fromBase64Url, toBase64Url, utf8 } from '../../crypto/encoding'
import { signWithMasterKey, verifyWithMasterKeys } from '../../crypto/hmac'
import { randomToken } from '../../crypto/random'

/** How long a ceremony's challenge can be answered. */
export const CHALLENGE_TTL_SECONDS = 300

export type ChallengePurpose = 'register' | 'sign_in' | 'second_factor'

/**
 * What a challenge is bound to: its purpose and, except for a usernameless sign-in, the user
 * (registration) or the pending sign-in (second factor) it was issued for.
 */
export interface ChallengeBinding {
  purpose: ChallengePurpose
  subject: string
}

function macInput(binding: ChallengeBinding, nonce: string, expiresAt: number): string {
  return `webauthn\n${binding.purpose}\n${binding.subject}\n${nonce}\n${expiresAt}`
}

/**
 * A fresh challenge: 128 random bits, its expiry and an HMAC (under MASTER_KEY) of both with its
 * binding, as the bytes `nonce.expiry.mac`. Issuing writes nothing (an anonymous sign-in button
 * costs no row); answering one records it as spent (`spendChallengeStatement`), so it works once.
 */
export async function mintChallenge(
  config: Config,
  binding: ChallengeBinding,
  now: Date,
): Promise<{ bytes: Uint8Array; expiresAt: Date }> {
  const nonce = randomToken(16)
  const expiresAt = Math.floor(now.getTime() / 1000) + CHALLENGE_TTL_SECONDS
  const mac = await signWithMasterKey(config.masterKeys, 'webauthn', macInput(binding, nonce, expiresAt))
  return { bytes: utf8(`${nonce}.${expiresAt}.${mac}`), expiresAt: new Date(expiresAt * 1000) }
}

/**
 * Opens the challenge a response signed (base64url, from its client data): undefined unless we
 * issued it for this binding and it has not expired. Whether it was already answered is the
 * spend statement's question.
 */
export async function openChallenge(
  config: Config,
  binding: ChallengeBinding,
  signed: string,
  now: Date,
): Promise<{ expiresAt: Date } | undefined> {
  const bytes = signed.length > 512 ? undefined : fromBase64Url(signed)
  if (bytes === undefined) {
    return undefined
  }
  const match = /^([A-Za-z0-9_-]{22})\.(\d{10})\.([A-Za-z0-9_-]{43})$/.exec(new TextDecoder().decode(bytes))
  if (match === null) {
    return undefined
  }
  const [, nonce = '', expiry = '', mac = ''] = match
  const expiresAt = Number(expiry)
  if (expiresAt * 1000 <= now.getTime() || toBase64Url(bytes) !== signed.replace(/=+$/, '')) {
    return undefined
  }
  const valid = await verifyWithMasterKeys(
    config.masterKeys,
    'webauthn',
    macInput(binding, nonce, expiresAt),
    mac,
  )
  return valid ? { expiresAt: new Date(expiresAt * 1000) } : undefined
}
