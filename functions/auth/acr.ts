import type { Config } from '../config'

// OIDC `acr` (Core §2): which assurance level a sign-in reached, derived from its `amr` (RFC 8176).
// Two levels: any single factor (password, one provider sign-in), and two factors.

/** A sign-in with one factor. */
export const ACR_BASIC = 'urn:portcullis:acr:basic'
/** A sign-in with a second factor (TOTP or a recovery code; any method whose `amr` has `mfa`). */
export const ACR_MFA = 'urn:portcullis:acr:mfa'

/** What discovery advertises as `acr_values_supported`, weakest first. */
export const ACR_VALUES_SUPPORTED = [ACR_BASIC, ACR_MFA] as const

/** The `acr` a sign-in with these methods reached. */
export function acrForAmr(amr: readonly string[]): string {
  return amr.includes('mfa') ? ACR_MFA : ACR_BASIC
}

/**
 * Whether an `acr_values` request (space-separated, preference order) asks for two factors: only
 * when MFA is the one value, or every value requested is MFA. A request that also accepts the
 * basic level is satisfied by a single factor (OIDC Core §3.1.2.1: acr_values is voluntary).
 */
export function acrValuesRequireMfa(acrValues: string | undefined): boolean {
  const values = (acrValues ?? '').split(' ').filter((value) => value !== '')
  return values.length > 0 && values.every((value) => value === ACR_MFA)
}

/**
 * REQUIRE_TWO_FACTOR: whether a session with these methods may act (authorize, consent, approve a
 * device, use /account). A one-factor session from before the policy is treated as signed out.
 */
export function meetsTwoFactorPolicy(config: Config, amr: readonly string[]): boolean {
  return !config.requireTwoFactor || amr.includes('mfa')
}
