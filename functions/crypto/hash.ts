import { toHex, utf8 } from './encoding'

/** SHA-256 of a UTF-8 string as lowercase hex: how every high-entropy secret is stored. */
export async function sha256Hex(text: string): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text))))
}

export async function sha256Bytes(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text)))
}

/** HMAC-SHA256 of a UTF-8 message under a UTF-8 key, as lowercase hex (webhook signatures). */
export async function hmacSha256Hex(key: string, message: string): Promise<string> {
  const imported = await crypto.subtle.importKey('raw', utf8(key), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ])
  return toHex(new Uint8Array(await crypto.subtle.sign('HMAC', imported, utf8(message))))
}
