import { toBase64Url } from './encoding'

export function randomBytes(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length))
}

/** A URL-safe random token with `bytes` bytes of entropy (32 → 256 bits). */
export function randomToken(bytes = 32): string {
  return toBase64Url(randomBytes(bytes))
}
