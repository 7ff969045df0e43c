import type { MasterKey } from '../config'
import { bytesEqual } from './compare'
import { fromBase64Url, toBase64Url, utf8 } from './encoding'

/** What a key derived from MASTER_KEY is for; each purpose gets an independent key (HKDF info). */
export type HmacPurpose = 'csrf' | 'federation' | 'dpop-nonce' | 'webauthn'

const derived = new WeakMap<MasterKey, Map<HmacPurpose, Promise<CryptoKey>>>()

/**
 * An HMAC-SHA256 key for `purpose`, derived from a master key with HKDF-SHA256 (RFC 5869), so
 * the master key itself never signs anything. Cached per master key object.
 */
function derivedKey(master: MasterKey, purpose: HmacPurpose): Promise<CryptoKey> {
  let byPurpose = derived.get(master)
  if (byPurpose === undefined) {
    byPurpose = new Map()
    derived.set(master, byPurpose)
  }
  let key = byPurpose.get(purpose)
  if (key === undefined) {
    key = crypto.subtle
      .importKey('raw', master.bytes, 'HKDF', false, ['deriveKey'])
      .then((ikm) =>
        crypto.subtle.deriveKey(
          { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(`portcullis:${purpose}:v1`) },
          ikm,
          { name: 'HMAC', hash: 'SHA-256', length: 256 },
          false,
          ['sign'],
        ),
      )
    byPurpose.set(purpose, key)
  }
  return key
}

/** base64url HMAC-SHA256 of `message` under the newest master key's `purpose` key. */
export async function signWithMasterKey(
  masterKeys: readonly [MasterKey, ...MasterKey[]],
  purpose: HmacPurpose,
  message: string,
): Promise<string> {
  const key = await derivedKey(masterKeys[0], purpose)
  return toBase64Url(new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(message))))
}

/**
 * True when `signature` is the HMAC of `message` under any listed master key (so a rotation
 * does not void what the previous key signed). Compared in constant time.
 */
export async function verifyWithMasterKeys(
  masterKeys: readonly MasterKey[],
  purpose: HmacPurpose,
  message: string,
  signature: string,
): Promise<boolean> {
  const presented = fromBase64Url(signature)
  if (presented === undefined) {
    return false
  }
  let matched = false
  for (const master of masterKeys) {
    const key = await derivedKey(master, purpose)
    const expected = new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(message)))
    matched = bytesEqual(presented, expected) || matched
  }
  return matched
}
