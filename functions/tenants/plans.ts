import type { TierByPlan } from '../../db/queries/apikeys'
import type { Config } from '../config'

/**
 * The tier a tenant's plan gives its new API keys (and so their monthly quota, through
 * TIER_QUOTAS): `free` → DEFAULT_API_KEY_TIER (`trial` unless set), each paid plan the tier of
 * the same name. The default tenant's keys keep DEFAULT_API_KEY_TIER whatever its plan, so a
 * single-tenant deployment sees no change. A platform admin may still set any tier.
 */
export function planKeyTiers(
  config: Pick<Config, 'defaultApiKeyTier'>,
  requested?: TierByPlan['requested'],
): TierByPlan {
  return {
    byPlan: {
      free: config.defaultApiKeyTier,
      starter: 'starter',
      professional: 'professional',
      enterprise: 'enterprise',
    },
    defaultTenant: config.defaultApiKeyTier,
    requested,
  }
}
