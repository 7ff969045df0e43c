import type { Config } from '../config'
import { seal, unseal } from '../crypto/aes-gcm'

/**
 * The one-column form of a value sealed under MASTER_KEY: `<key id>:<iv>.<ciphertext>`, so the
 * key that opens it travels with it and a rotation can find what the newest key did not seal.
 * Upstream tokens and identity-provider client secrets are stored this way.
 */
export async function sealText(config: Config, text: string, context: string): Promise<string> {
  const sealed = await seal(config.masterKeys, text, context)
  return `${sealed.masterKeyId}:${sealed.ciphertext}`
}

/** Opens what `sealText` stored, with the master key it names (an older key after a rotation). */
export function openText(config: Config, stored: string, context: string): Promise<string> {
  const colon = stored.indexOf(':')
  return unseal(
    config.masterKeys,
    { masterKeyId: stored.slice(0, colon), ciphertext: stored.slice(colon + 1) },
    context,
  )
}

/** The key id a stored value names (what the re-seal pass compares with the newest key). */
export function sealedKeyId(stored: string): string {
  return stored.slice(0, stored.indexOf(':'))
}
