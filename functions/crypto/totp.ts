import { randomBytes } from './random'

/** RFC 6238 with the parameters: HMAC-SHA1, 6 digits, 30-second steps. */
export const TOTP_PERIOD_SECONDS = 30
const DIGITS = 6
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** RFC 4648 base32 without padding (what authenticator apps read). */
export function base32Encode(bytes: Uint8Array): string {
  let out = ''
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) {
    out += BASE32[(buffer << (5 - bits)) & 31]
  }
  return out
}

export function base32Decode(text: string): Uint8Array {
  const clean = text.replace(/=+$/, '').toUpperCase()
  const out: number[] = []
  let buffer = 0
  let bits = 0
  for (const ch of clean) {
    const value = BASE32.indexOf(ch)
    if (value < 0) {
      throw new Error('not base32')
    }
    buffer = (buffer << 5) | value
    bits += 5
    if (bits >= 8) {
      out.push((buffer >>> (bits - 8)) & 255)
      bits -= 8
    }
  }
  return new Uint8Array(out)
}

/** A new 160-bit secret, base32. */
export function newTotpSecret(): string {
  return base32Encode(randomBytes(20))
}

export function timeStep(now: Date): number {
  return Math.floor(now.getTime() / 1000 / TOTP_PERIOD_SECONDS)
}

/** The code for one time step (RFC 4226 §5.3 dynamic truncation). */
export async function totpCode(secretBase32: string, step: number): Promise<string> {
  const key = await crypto.subtle.importKey(
    'raw',
    base32Decode(secretBase32),
    { name: 'HMAC', hash: 'SHA-1' },
    false,
    ['sign'],
  )
  const counter = new Uint8Array(8)
  new DataView(counter.buffer).setBigUint64(0, BigInt(step))
  const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, counter))
  const offset = (mac[19] ?? 0) & 0x0f
  const binary =
    (((mac[offset] ?? 0) & 0x7f) << 24) |
    ((mac[offset + 1] ?? 0) << 16) |
    ((mac[offset + 2] ?? 0) << 8) |
    (mac[offset + 3] ?? 0)
  return String(binary % 10 ** DIGITS).padStart(DIGITS, '0')
}

/**
 * The time step (current ±1) whose code this is, or undefined. Every candidate is computed and
 * compared, so the answer's timing does not say which step matched.
 */
export async function matchTotpStep(
  secretBase32: string,
  code: string,
  now: Date,
): Promise<number | undefined> {
  if (!/^\d{6}$/.test(code)) {
    return undefined
  }
  const current = timeStep(now)
  let found: number | undefined
  for (const step of [current - 1, current, current + 1]) {
    const expected = await totpCode(secretBase32, step)
    let diff = 0
    for (let i = 0; i < DIGITS; i++) {
      diff |= expected.charCodeAt(i) ^ code.charCodeAt(i)
    }
    if (diff === 0 && found === undefined) {
      found = step
    }
  }
  return found
}

/** The otpauth:// URI authenticator apps take (Key Uri Format). */
export function otpauthUri(issuer: string, account: string, secretBase32: string): string {
  const label = `${encodeURIComponent(issuer)}:${encodeURIComponent(account)}`
  const params = new URLSearchParams({
    secret: secretBase32,
    issuer,
    algorithm: 'SHA1',
    digits: String(DIGITS),
    period: String(TOTP_PERIOD_SECONDS),
  })
  return `otpauth://totp/${label}?${params.toString()}`
}
