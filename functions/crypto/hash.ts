import { toHex, utf8 } from './encoding'

/** SHA-256 of a UTF-8 string as lowercase hex: how every high-entropy secret is stored. */
export async function sha256Hex(text: string): Promise<string> {
  return toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text))))
}

export async function sha256Bytes(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text)))
}
