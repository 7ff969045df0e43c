import type { Argon2Params } from '../config'
import { argon2idRaw } from './argon2'
import { bcryptVerify, isBcryptHash } from './bcrypt'
import { bytesEqual } from './compare'
import { fromBase64Url, toBase64Url, utf8 } from './encoding'
import { randomBytes } from './random'

const SALT_BYTES = 16
const HASH_BYTES = 32
// Bounds for parameters read back from a stored hash, so a corrupt row cannot pin the CPU or
// take the isolate past its 128 MB (64 MiB covers every common library default).
const MAX_MEMORY_KIB = 65_536
const MAX_ITERATIONS = 64
const MAX_PARALLELISM = 16

const PHC_ARGON2ID =
  /^\$argon2id\$v=19\$m=(\d{1,8}),t=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{6,})$/

export type PasswordCheck =
  | { ok: false }
  /** `rehash`: the stored hash is bcrypt or uses other argon2 parameters; store a new one. */
  | { ok: true; rehash: boolean }

/** PHC strings use standard base64 without padding. */
function toPhcBase64(bytes: Uint8Array): string {
  return toBase64Url(bytes).replace(/-/g, '+').replace(/_/g, '/')
}

/** An argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) with a fresh 16-byte salt. */
export function hashPassword(password: string, params: Argon2Params): string {
  const salt = randomBytes(SALT_BYTES)
  const hash = argon2idRaw({
    password: utf8(password),
    salt,
    memoryKib: params.memoryKib,
    iterations: params.iterations,
    parallelism: params.parallelism,
    hashLength: HASH_BYTES,
  })
  return `$argon2id$v=19$m=${params.memoryKib},t=${params.iterations},p=${params.parallelism}$${toPhcBase64(salt)}$${toPhcBase64(hash)}`
}

/**
 * Checks a password against a stored argon2id PHC string or an imported bcrypt hash
 * ($2a$/$2b$/$2y$). The expected bytes are compared in constant time. An unparseable stored
 * value never matches.
 */
export function verifyPassword(password: string, stored: string, params: Argon2Params): PasswordCheck {
  if (isBcryptHash(stored)) {
    return bcryptVerify(password, stored) ? { ok: true, rehash: true } : { ok: false }
  }
  const match = PHC_ARGON2ID.exec(stored)
  const [, m, t, p, saltText, hashText] = match ?? []
  const memoryKib = Number(m)
  const iterations = Number(t)
  const parallelism = Number(p)
  const salt = saltText === undefined ? undefined : fromBase64Url(saltText)
  const expected = hashText === undefined ? undefined : fromBase64Url(hashText)
  if (
    salt === undefined ||
    expected === undefined ||
    !(memoryKib >= 8 * parallelism && memoryKib <= MAX_MEMORY_KIB) ||
    !(iterations >= 1 && iterations <= MAX_ITERATIONS) ||
    !(parallelism >= 1 && parallelism <= MAX_PARALLELISM) ||
    expected.length < 4
  ) {
    return { ok: false }
  }
  const actual = argon2idRaw({
    password: utf8(password),
    salt,
    memoryKib,
    iterations,
    parallelism,
    hashLength: expected.length,
  })
  if (!bytesEqual(actual, expected)) {
    return { ok: false }
  }
  const rehash =
    memoryKib !== params.memoryKib ||
    iterations !== params.iterations ||
    parallelism !== params.parallelism ||
    expected.length !== HASH_BYTES
  return { ok: true, rehash }
}

const DUMMY_SALT = new Uint8Array(SALT_BYTES)

/**
 * Spends the same CPU as checking a real password at the current parameters, for sign-ins to
 * unknown accounts: unknown email and wrong password must take the same time.
 */
export function burnPasswordCheck(password: string, params: Argon2Params): void {
  argon2idRaw({
    password: utf8(password),
    salt: DUMMY_SALT,
    memoryKib: params.memoryKib,
    iterations: params.iterations,
    parallelism: params.parallelism,
    hashLength: HASH_BYTES,
  })
}
