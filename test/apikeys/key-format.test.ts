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

  it('draws base62 digits without bias', () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 400; i++) {
      const secret = generateApiKey('test').key.slice(8, 8 + 43)
      for (const ch of secret) {
        counts.set(ch, (counts.get(ch) ?? 0) + 1)
      }
    }
    expect(counts.size).toBe(62)
    // 17,200 draws over 62 digits: ~277 each; a biased generator skews the low digits.
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(180)
      expect(count).toBeLessThan(380)
    }
  })
})
