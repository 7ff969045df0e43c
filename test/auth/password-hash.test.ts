import { describe, expect, it } from 'vitest'
import { argon2idRaw } from '../../functions/crypto/argon2'
import { bcryptVerify } from '../../functions/crypto/bcrypt'
import { toHex, utf8 } from '../../functions/crypto/encoding'
import { hashPassword, verifyPassword } from '../../functions/crypto/password'

const DEFAULTS = { memoryKib: 19_456, iterations: 2, parallelism: 1 }

describe('argon2id in workerd', () => {
  it('matches the RFC 9106 §5.3 test vector', () => {
    const tag = argon2idRaw({
      password: new Uint8Array(32).fill(1),
      salt: new Uint8Array(16).fill(2),
      secret: new Uint8Array(8).fill(3),
      associatedData: new Uint8Array(12).fill(4),
      memoryKib: 32,
      iterations: 3,
      parallelism: 4,
      hashLength: 32,
    })
    expect(toHex(tag)).toBe('0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659')
  })

  it('matches the reference implementation (phc-winner-argon2 test.c)', () => {
    const tag = argon2idRaw({
      password: utf8('password'),
      salt: utf8('somesalt'),
      memoryKib: 65_536,
      iterations: 2,
      parallelism: 1,
      hashLength: 32,
    })
    expect(toHex(tag)).toBe('09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7')
    expect(
      verifyPassword(
        'password',
        '$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc',
        DEFAULTS,
      ),
    ).toEqual({ ok: true, rehash: true })
  })

  it('hashes at the default parameters', () => {
    const started = performance.now()
    const phc = hashPassword('correct horse battery staple', DEFAULTS)
    console.log(`argon2id m=19456 t=2 p=1: ${performance.now() - started} ms`)
    expect(phc).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    expect(verifyPassword('correct horse battery staple', phc, DEFAULTS)).toEqual({ ok: true, rehash: false })
    expect(verifyPassword('wrong', phc, DEFAULTS)).toEqual({ ok: false })
  })

  // crypt_blowfish's own test vectors (wrapper.c), and the 72-byte truncation every bcrypt applies.
  it.each([
    ['$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW', 'U*U'],
    ['$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK', 'U*U*'],
    ['$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a', 'U*U*U'],
    [
      '$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui',
      '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored',
    ],
    ['$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW', 'U*U'],
    ['$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW', 'U*U'],
  ])('verifies bcrypt %s', (hash, password) => {
    expect(bcryptVerify(password, hash)).toBe(true)
    expect(bcryptVerify(`x${password}`, hash)).toBe(false)
    expect(verifyPassword(password, hash, DEFAULTS)).toEqual({ ok: true, rehash: true })
  })

  it.each([
    '',
    'plaintext',
    '$argon2id$v=19$m=1,t=1,p=1$AAAAAAAAAAA$AAAAAA',
    '$2a$99$xx',
    '$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc',
  ])('never matches a malformed stored hash %s', (stored) => {
    expect(verifyPassword('password', stored, DEFAULTS)).toEqual({ ok: false })
  })
})
