import type { Config } from '../config'
import { openText, sealText } from './sealed-text'
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
export function tokenContext(identityId: string, slot: 'access' | 'refresh'): string {
  return `external_identity:${identityId}:${slot}`
}

/** Opens a stored token with the master key it names (so MASTER_KEY can rotate). */
export function openSealed(config: Config, stored: string, identityId: string, slot: 'access' | 'refresh') {
  return openText(config, stored, tokenContext(identityId, slot))
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
    accessTokenSealed: await sealText(config, tokens.accessToken, tokenContext(identityId, 'access')),
    refreshTokenSealed:
      tokens.refreshToken === undefined
        ? keepRefresh
        : await sealText(config, tokens.refreshToken, tokenContext(identityId, 'refresh')),
    tokenExpiresAt: tokens.expiresIn === undefined ? null : new Date(now.getTime() + tokens.expiresIn * 1000),
    tokenScope: tokens.scope ?? null,
    brokenAt: null,
    refreshLeaseUntil: null,
  }
}
