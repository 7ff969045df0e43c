import { parseApiKey } from '../apikeys/key-format'
import { sha256Hex } from '../crypto/hash'

/** What every service key starts with (`psk_live_…`, `psk_test_…`). */
export const SERVICE_KEY_MARK = 'psk_'

/**
 * A presented bearer credential as a service key: `undefined` when it is not one (it does not
 * start with `psk_`), `malformed` for a bad shape or checksum (refused with no database work),
 * else its SHA-256. Zero I/O: whether the key is live is decided by the statement that uses it.
 */
export async function serviceKeyCredential(
  token: string,
): Promise<{ hash: string } | 'malformed' | undefined> {
  if (!token.startsWith(SERVICE_KEY_MARK)) {
    return undefined
  }
  if (parseApiKey(token, 'psk').kind === 'malformed') {
    return 'malformed'
  }
  return { hash: await sha256Hex(token) }
}
