import type { MasterKey } from '../config'
import { fromBase64Url, toBase64Url, utf8 } from './encoding'
import { randomBytes } from './random'

const IV_BYTES = 12

export interface Sealed {
  /** Which master key sealed it (`MasterKey.id`), so older keys can still open it after rotation. */
  masterKeyId: string
  /** `base64url(iv).base64url(ciphertext+tag)`. */
  ciphertext: string
}

const imported = new WeakMap<MasterKey, Promise<CryptoKey>>()

function importMasterKey(key: MasterKey): Promise<CryptoKey> {
  let cryptoKey = imported.get(key)
  if (cryptoKey === undefined) {
    cryptoKey = crypto.subtle.importKey('raw', key.bytes, 'AES-GCM', false, ['encrypt', 'decrypt'])
    imported.set(key, cryptoKey)
  }
  return cryptoKey
}

/**
 * AES-256-GCM under the newest master key (the first listed). `context` is bound as additional
 * authenticated data, so a ciphertext moved to another row does not decrypt.
 */
export async function seal(
  masterKeys: readonly [MasterKey, ...MasterKey[]],
  plaintext: string,
  context: string,
): Promise<Sealed> {
  const [key] = masterKeys
  const iv = randomBytes(IV_BYTES)
  const ciphertext = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv, additionalData: utf8(context) },
    await importMasterKey(key),
    utf8(plaintext),
  )
  return { masterKeyId: key.id, ciphertext: `${toBase64Url(iv)}.${toBase64Url(new Uint8Array(ciphertext))}` }
}

/** Opens what `seal` produced with the master key it names; throws when it is unknown or tampered. */
export async function unseal(
  masterKeys: readonly MasterKey[],
  sealed: Sealed,
  context: string,
): Promise<string> {
  const key = masterKeys.find((k) => k.id === sealed.masterKeyId)
  if (key === undefined) {
    throw new Error(`master key ${sealed.masterKeyId} is not configured`)
  }
  const [ivPart, bodyPart] = sealed.ciphertext.split('.')
  const iv = ivPart === undefined ? undefined : fromBase64Url(ivPart)
  const body = bodyPart === undefined ? undefined : fromBase64Url(bodyPart)
  if (iv?.length !== IV_BYTES || body === undefined) {
    throw new Error('sealed value is malformed')
  }
  const plaintext = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv, additionalData: utf8(context) },
    await importMasterKey(key),
    body,
  )
  return new TextDecoder().decode(plaintext)
}
