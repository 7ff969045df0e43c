import type { Config } from '../config'
import { seal, unseal } from '../crypto/aes-gcm'
import type { UpstreamTokens } from './upstream'

/** The columns of external_identities that hold a provider's tokens. */
export interface SealedTokenColumns {
  accessTokenSealed: string
  refreshTokenSealed: string | null
  tokenExpiresAt: Date | null
  tokenScope: string | null
  brokenAt: null
  refreshLeaseUntil: null
}

/** Associated data: a sealed token opens only in the row (and slot) it was sealed for. */
function context(identityId: string, slot: 'access' | 'refresh'): string {
  return `external_identity:${identityId}:${slot}`
}

async function sealText(config: Config, text: string, aad: string): Promise<string> {
  const sealed = await seal(config.masterKeys, text, aad)
  return `${sealed.masterKeyId}:${sealed.ciphertext}`
}

/** Opens `<key id>:<iv>.<ciphertext>` with the master key it names (so MASTER_KEY can rotate). */
export async function openSealed(
  config: Config,
  stored: string,
  identityId: string,
  slot: 'access' | 'refresh',
) {
  const colon = stored.indexOf(':')
  return unseal(
    config.masterKeys,
    { masterKeyId: stored.slice(0, colon), ciphertext: stored.slice(colon + 1) },
    context(identityId, slot),
  )
}

/**
 * The token columns for `tokens`, sealed under the newest MASTER_KEY. A refresh that returns no
 * new refresh token keeps the previous one (`keepRefresh`).
 */
export async function sealTokens(
  config: Config,
  identityId: string,
  tokens: UpstreamTokens,
  now: Date,
  keepRefresh: string | null = null,
): Promise<SealedTokenColumns> {
  return {
    accessTokenSealed: await sealText(config, tokens.accessToken, context(identityId, 'access')),
    refreshTokenSealed:
      tokens.refreshToken === undefined
        ? keepRefresh
        : await sealText(config, tokens.refreshToken, context(identityId, 'refresh')),
    tokenExpiresAt: tokens.expiresIn === undefined ? null : new Date(now.getTime() + tokens.expiresIn * 1000),
    tokenScope: tokens.scope ?? null,
    brokenAt: null,
    refreshLeaseUntil: null,
  }
}
