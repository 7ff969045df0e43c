import type { Config } from '../config'
import { signWithMasterKey, verifyWithMasterKeys } from '../crypto/hmac'

/** A server nonce (RFC 9449 §8) is good for the window it was made in and the next one. */
export const DPOP_NONCE_WINDOW_SECONDS = 300

function windowOf(now: Date): number {
  return Math.floor(now.getTime() / 1000 / DPOP_NONCE_WINDOW_SECONDS)
}

/** The current nonce: the window number and its HMAC under MASTER_KEY (stateless, no database). */
export async function currentDpopNonce(config: Config, now: Date): Promise<string> {
  const window = windowOf(now)
  return `${window}.${await signWithMasterKey(config.masterKeys, 'dpop-nonce', String(window))}`
}

/** True for a nonce we made in this window or the previous one. */
export async function isValidDpopNonce(config: Config, nonce: unknown, now: Date): Promise<boolean> {
  if (typeof nonce !== 'string' || nonce.length > 200) {
    return false
  }
  const [window, signature, ...rest] = nonce.split('.')
  const current = windowOf(now)
  if (rest.length > 0 || window === undefined || signature === undefined || !/^\d{1,12}$/.test(window)) {
    return false
  }
  const n = Number(window)
  return (
    (n === current || n === current - 1) &&
    verifyWithMasterKeys(config.masterKeys, 'dpop-nonce', window, signature)
  )
}
