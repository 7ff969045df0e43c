import { describe, expect, it } from 'vitest'
import { fromBase64Url, toBase64Url, toHex } from '../../functions/crypto/encoding'

const EVERY_BYTE = Uint8Array.from({ length: 256 }, (_, i) => i)

describe('encoding', () => {
  it('writes every byte value as two lowercase hex digits', () => {
    const hex = toHex(EVERY_BYTE)
    expect(hex).toHaveLength(512)
    expect(hex.slice(0, 8)).toBe('00010203')
    expect(hex.slice(-4)).toBe('feff')
    expect(hex).toMatch(/^[0-9a-f]+$/)
    for (let i = 0; i < 256; i++) {
      expect(Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16)).toBe(i)
    }
    expect(toHex(new Uint8Array())).toBe('')
  })

  it('reads base64url and standard base64, padded or not, back to the same bytes', () => {
    const url = toBase64Url(EVERY_BYTE)
    expect(url).not.toMatch(/[+/=]/)
    expect(fromBase64Url(url)).toEqual(EVERY_BYTE)
    expect(fromBase64Url(btoa(String.fromCharCode(...EVERY_BYTE)))).toEqual(EVERY_BYTE)
    expect(fromBase64Url('YWI=')).toEqual(new TextEncoder().encode('ab'))
    expect(fromBase64Url('YWI')).toEqual(new TextEncoder().encode('ab'))
    expect(fromBase64Url('')).toEqual(new Uint8Array())
  })

  it('refuses what is not base64', () => {
    for (const bad of ['a b', 'YW*I', 'Y', 'YWI===', '%41']) {
      expect(fromBase64Url(bad), bad).toBeUndefined()
    }
  })
})
