import { bytesEqual } from '../crypto/compare'
import { toBase64Url, utf8 } from '../crypto/encoding'
import { sha256Bytes } from '../crypto/hash'

/** RFC 7636 §4.1: 43-128 unreserved characters. */
export function isValidCodeVerifier(verifier: string): boolean {
  return /^[A-Za-z0-9._~-]{43,128}$/.test(verifier)
}

/** RFC 7636 §4.2: a base64url SHA-256 is exactly 43 characters. */
export function isValidCodeChallenge(challenge: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(challenge)
}

/** `BASE64URL(SHA256(verifier))`, the S256 challenge. */
export async function s256Challenge(verifier: string): Promise<string> {
  return toBase64Url(await sha256Bytes(verifier))
}

/** Checks a verifier against the stored S256 challenge in constant time. */
export async function verifyPkceS256(verifier: string, challenge: string): Promise<boolean> {
  if (!isValidCodeVerifier(verifier)) {
    return false
  }
  return bytesEqual(utf8(await s256Challenge(verifier)), utf8(challenge))
}
