/** Enumerations shared by the schema's check constraints and the code that writes them. */

/** The tenant every user belongs to unless placed elsewhere; created by a migration. */
export const DEFAULT_TENANT_ID = '00000000-0000-4000-8000-000000000001'

export const TENANT_PLANS = ['free', 'starter', 'professional', 'enterprise'] as const
export const TENANT_ROLES = ['owner', 'admin', 'member'] as const
export const USER_STATUSES = ['pending', 'active', 'suspended'] as const
export const MFA_CHALLENGE_PURPOSES = ['second_factor', 'enrol'] as const
export const TOKEN_ENDPOINT_AUTH_METHODS = [
  'client_secret_basic',
  'client_secret_post',
  'none',
  'private_key_jwt',
] as const
/** Methods with no client secret: public clients, and clients that sign assertions (RFC 7523). */
export const SECRETLESS_AUTH_METHODS = ['none', 'private_key_jwt'] as const
export const APPLICATION_TYPES = ['web', 'native'] as const
export const DEVICE_CODE_STATUSES = ['pending', 'approved', 'denied', 'consumed'] as const
export const SIGNING_ALGORITHMS = ['ES256', 'RS256', 'EdDSA'] as const
export const SIGNING_KEY_STATUSES = ['active', 'retiring', 'retired'] as const
export const API_KEY_TIERS = ['trial', 'starter', 'professional', 'enterprise'] as const

export type TenantPlan = (typeof TENANT_PLANS)[number]
export type TenantRole = (typeof TENANT_ROLES)[number]
export type UserStatus = (typeof USER_STATUSES)[number]
export type MfaChallengePurpose = (typeof MFA_CHALLENGE_PURPOSES)[number]
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number]
export type ApplicationType = (typeof APPLICATION_TYPES)[number]
export type DeviceCodeStatus = (typeof DEVICE_CODE_STATUSES)[number]
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number]
export type SigningKeyStatus = (typeof SIGNING_KEY_STATUSES)[number]
export type ApiKeyTier = (typeof API_KEY_TIERS)[number]

/** `col in ('a', 'b')` for a check constraint over one of the lists above. */
export function inList(values: readonly string[]): string {
  return values.map((v) => `'${v}'`).join(', ')
}
