import { describe, expect, it } from 'vitest'
import { checksumOf, crc32, generateApiKey, parseApiKey } from '../../functions/apikeys/key-format'

describe('API key format', () => {
  it('generates pk_{env}_ + 43 base62 + 6-digit checksum keys that parse', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const { key, prefix, last4 } = generateApiKey('live')
      expect(key).toMatch(/^pk_live_[0-9A-Za-z]{49}$/)
      expect(key.startsWith(prefix)).toBe(true)
      expect(prefix).toHaveLength('pk_live_'.length + 4)
      expect(key.endsWith(last4)).toBe(true)
      expect(parseApiKey(key)).toEqual({ kind: 'well_formed', key, env: 'live' })
      seen.add(key)
    }
    expect(seen.size).toBe(200)
  })

  it('computes the zlib CRC-32', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926)
    expect(checksumOf('')).toBe('000000')
  })

  it('catches every single-character substitution', () => {
    const { key } = generateApiKey('test')
    const alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
    for (let position = 'pk_test_'.length; position < key.length; position++) {
      const original = key.charAt(position)
      const replacement = alphabet.charAt((alphabet.indexOf(original) + 17) % 62)
      const mistyped = `${key.slice(0, position)}${replacement}${key.slice(position + 1)}`
      expect(parseApiKey(mistyped).kind, mistyped).toBe('malformed')
    }
  })

  it('rejects truncated, padded and foreign strings by shape', () => {
    const { key } = generateApiKey('test')
    for (const candidate of [
      key.slice(0, -1),
      `${key}0`,
      ` ${key}`,
      key.replace('pk_test_', 'pk_prod_'),
      '',
    ]) {
      expect(parseApiKey(candidate)).toEqual({ kind: 'malformed', reason: 'shape' })
    }
  })

  // Pearson's chi-squared over the 62 digits at a fixed significance of 0.001 (df = 61, critical
  // value 100.89). ~103,000 digits: a `byte % 62` generator (digits 0-7 at 5/256 instead of
  // 4/256) scores ~740 on average and is caught with certainty; a uniform one fails 1 run in 1000.
  const CHI2_CRITICAL_DF61_P001 = 100.89
  const KEYS = 2400
  const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

  function chiSquared(digits: Iterable<string>): number {
    const counts = new Map<string, number>(ALPHABET.split('').map((c) => [c, 0]))
    let n = 0
    for (const ch of digits) {
      counts.set(ch, (counts.get(ch) ?? 0) + 1)
      n++
    }
    const expected = n / ALPHABET.length
    let statistic = 0
    for (const count of counts.values()) {
      statistic += (count - expected) ** 2 / expected
    }
    return statistic
  }

  function* secrets(generate: () => string): Generator<string> {
    for (let i = 0; i < KEYS; i++) {
      yield* generate()
    }
  }

  it('draws base62 digits without bias (chi-squared, p = 0.001)', () => {
    const statistic = chiSquared(secrets(() => generateApiKey('test').key.slice(8, 8 + 43)))
    expect(statistic).toBeLessThan(CHI2_CRITICAL_DF61_P001)
  })

  it('the bias test has the power to catch a byte % 62 generator', () => {
    const modulo = () =>
      Array.from(crypto.getRandomValues(new Uint8Array(43)), (b) => ALPHABET.charAt(b % 62)).join('')
    expect(chiSquared(secrets(modulo))).toBeGreaterThan(CHI2_CRITICAL_DF61_P001)
  })
})
