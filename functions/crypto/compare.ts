import { sha256Bytes } from './hash'

/**
 * Compares two secrets in constant time. Both sides are hashed first, so neither the content
 * nor the length of the expected value leaks through timing.
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256Bytes(presented), sha256Bytes(expected)])
  return bytesEqual(a, b)
}

/** Constant-time equality of two byte strings of equal length (false for unequal lengths). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false
  }
  let difference = 0
  for (let i = 0; i < a.length; i++) {
    difference |= (a[i] ?? 0) ^ (b[i] ?? 0)
  }
  return difference === 0
}
