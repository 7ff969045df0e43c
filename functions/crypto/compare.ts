import { sha256Bytes } from './hash'

/**
 * Compares two secrets in constant time. Both sides are hashed first, so neither the content
 * nor the length of the expected value leaks through timing.
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256Bytes(presented), sha256Bytes(expected)])
  return bytesEqual(a, b)
}

// Digests of configured secrets (the admin token), per isolate: a deployment has one or two, and
// a change of configuration is a new deployment, so the bound is only a guard.
const configuredDigests = new Map<string, Promise<Uint8Array>>()
const MAX_CONFIGURED_DIGESTS = 8

/**
 * secretsEqual against a secret of the deployment's configuration: the same constant-time
 * comparison of digests, with the configured side's digest computed once per isolate rather than
 * on every request that presents a bearer token.
 */
export async function equalsConfiguredSecret(presented: string, configured: string): Promise<boolean> {
  let expected = configuredDigests.get(configured)
  if (expected === undefined) {
    if (configuredDigests.size >= MAX_CONFIGURED_DIGESTS) {
      configuredDigests.clear()
    }
    expected = sha256Bytes(configured)
    configuredDigests.set(configured, expected)
  }
  const [a, b] = await Promise.all([sha256Bytes(presented), expected])
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
