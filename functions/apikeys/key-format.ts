import { randomBytes } from '../crypto/random'

/**
 * API key format: `pk_{env}_{secret}{checksum}`.
 * - `secret`: 43 base62 characters drawn uniformly (43 · log2 62 ≈ 256.03 bits of entropy);
 * - `checksum`: CRC-32 of everything before it, as 6 base62 digits (62^6 > 2^32).
 * The checksum is what lets verify refuse a mistyped or truncated key without a database
 * round trip, and what lets secret scanners recognise our keys with few false positives.
 */
export const API_KEY_ENVS = ['live', 'test'] as const
export type ApiKeyEnv = (typeof API_KEY_ENVS)[number]

export const SECRET_LENGTH = 43
export const CHECKSUM_LENGTH = 6
const PREFIX_SECRET_CHARS = 4
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
// 248 = 4 · 62: bytes at or above it are rejected so every base62 digit is equally likely.
const UNBIASED_BYTE_LIMIT = 248
/** API keys are `pk_…`; service keys (issue 10), which authenticate resource servers, `psk_…`. */
export type KeyFamily = 'pk' | 'psk'
const keyPattern = (family: KeyFamily) =>
  new RegExp(`^(${family}_(live|test)_([0-9A-Za-z]{${SECRET_LENGTH}}))([0-9A-Za-z]{${CHECKSUM_LENGTH}})$`)
const KEY_PATTERNS: Record<KeyFamily, RegExp> = { pk: keyPattern('pk'), psk: keyPattern('psk') }

export interface GeneratedApiKey {
  /** The full key: shown once, never stored. */
  key: string
  /** `pk_{env}_` plus the first characters of the secret, for telling keys apart in lists. */
  prefix: string
  last4: string
}

export type ParsedApiKey =
  | { kind: 'well_formed'; key: string; env: ApiKeyEnv }
  | { kind: 'malformed'; reason: 'shape' | 'checksum' }

/** A fresh key for `env`. Pure CPU, no I/O. */
export function generateApiKey(env: ApiKeyEnv, family: KeyFamily = 'pk'): GeneratedApiKey {
  const secret = randomBase62(SECRET_LENGTH)
  const body = `${family}_${env}_${secret}`
  const key = `${body}${checksumOf(body)}`
  return { key, prefix: `${family}_${env}_${secret.slice(0, PREFIX_SECRET_CHARS)}`, last4: key.slice(-4) }
}

/** Checks shape and checksum; zero I/O, so a malformed key costs nothing downstream. */
export function parseApiKey(candidate: string, family: KeyFamily = 'pk'): ParsedApiKey {
  const match = KEY_PATTERNS[family].exec(candidate)
  const body = match?.[1]
  const env = match?.[2]
  const checksum = match?.[4]
  if (body === undefined || checksum === undefined || (env !== 'live' && env !== 'test')) {
    return { kind: 'malformed', reason: 'shape' }
  }
  if (checksumOf(body) !== checksum) {
    return { kind: 'malformed', reason: 'checksum' }
  }
  return { kind: 'well_formed', key: candidate, env }
}

/** CRC-32 (IEEE 802.3, as zlib computes it) of the UTF-8 bytes of `text`, as 6 base62 digits. */
export function checksumOf(text: string): string {
  let value = crc32(new TextEncoder().encode(text))
  let digits = ''
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    digits = BASE62.charAt(value % 62) + digits
    value = Math.floor(value / 62)
  }
  return digits
}

const CRC_TABLE = buildCrcTable()

function buildCrcTable(): Uint32Array {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    }
    table[n] = c >>> 0
  }
  return table
}

export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff
  for (const byte of bytes) {
    crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8)
  }
  return (crc ^ 0xffffffff) >>> 0
}

function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < UNBIASED_BYTE_LIMIT && out.length < length) {
        out += BASE62.charAt(byte % 62)
      }
    }
  }
  return out
}
