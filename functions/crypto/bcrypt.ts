import bcryptModule from './wasm/bcrypt.wasm'

// hash-wasm's bcrypt core (MIT, v4.13.0) as a precompiled module; see argon2.ts for why.

interface BcryptCoreExports {
  memory: WebAssembly.Memory
  Hash_GetBuffer(): number
  bcrypt_verify(passwordLength: number): number
}

const BCRYPT_HASH = /^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/
/** bcrypt reads at most 72 bytes of the password. */
export const BCRYPT_MAX_PASSWORD_BYTES = 72

export function isBcryptHash(hash: string): boolean {
  return BCRYPT_HASH.test(hash)
}

/**
 * Checks an imported bcrypt hash (`$2a$`, `$2b$`, `$2y$`) in constant time inside the core.
 * Passwords longer than 72 bytes are truncated, as every bcrypt implementation does.
 */
export function bcryptVerify(password: string, hash: string): boolean {
  if (!isBcryptHash(hash)) {
    return false
  }
  const bytes = new TextEncoder().encode(password).subarray(0, BCRYPT_MAX_PASSWORD_BYTES)
  if (bytes.length === 0) {
    return false
  }
  const core = new WebAssembly.Instance(bcryptModule, {}).exports as unknown as BcryptCoreExports
  const window = new Uint8Array(core.memory.buffer, core.Hash_GetBuffer(), 60 + bytes.length + 1)
  // The core's blowfish setting parser knows $2a$/$2b$/$2x$/$2y$; $2y$ is PHP's name for $2b$.
  window.set(new TextEncoder().encode(hash), 0)
  window.set(bytes, 60)
  const matches = core.bcrypt_verify(bytes.length) === 1
  window.fill(0)
  return matches
}
