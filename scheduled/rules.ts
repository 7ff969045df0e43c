import { type SQL, sql } from 'drizzle-orm'

export interface PurgeWindow {
  now: Date
  /** Hourly usage counters (API keys, agent clients). */
  usageRetentionDays: number
  /** Raw usage rows; 0 keeps none (the verify writes none then either). */
  usageDetailRetentionDays: number
  auditRetentionDays: number
}

export interface PurgeRule {
  table: string
  /** Rows matching this are expired and may go. Uses an index on the column it filters. */
  expired(window: PurgeWindow): SQL
}

const DAY_MS = 86_400_000

/** Revoked refresh tokens stay this long so reuse of a family member is still recognised. */
export const REFRESH_TOKEN_PURGE_GRACE_DAYS = 1
/** Delivered mail rows (bodies already cleared) stay this long for support questions. */
export const DELIVERED_EMAIL_RETENTION_DAYS = 7

function daysBefore(now: Date, days: number): Date {
  return new Date(now.getTime() - days * DAY_MS)
}

/**
 * What the purge deletes, table by table. Consumed authorization codes stay until they expire
 * so a replay within their lifetime is still detected (RFC 6749 §4.1.2); rotated refresh
 * tokens stay until they expire or their family is revoked, for the same reason (RFC 9700 §4.14.2).
 */
export const PURGE_RULES: readonly PurgeRule[] = [
  { table: 'authorization_codes', expired: ({ now }) => sql`expires_at < ${now}` },
  { table: 'sessions', expired: ({ now }) => sql`expires_at < ${now}` },
  {
    table: 'refresh_tokens',
    expired: ({ now }) => {
      const cutoff = daysBefore(now, REFRESH_TOKEN_PURGE_GRACE_DAYS)
      return sql`(expires_at < ${cutoff} or revoked_at < ${cutoff})`
    },
  },
  { table: 'device_codes', expired: ({ now }) => sql`expires_at < ${now}` },
  { table: 'email_verifications', expired: ({ now }) => sql`expires_at < ${now}` },
  { table: 'password_resets', expired: ({ now }) => sql`expires_at < ${now}` },
  // Pending email changes (issue 14): the address moved or not, the row is done once expired.
  { table: 'email_changes', expired: ({ now }) => sql`expires_at < ${now}` },
  { table: 'revoked_access_tokens', expired: ({ now }) => sql`expires_at < ${now}` },
  { table: 'login_throttles', expired: ({ now }) => sql`expires_at < ${now}` },
  // Spent DPoP proof ids: once past expires_at the proof's iat is out of the window anyway.
  { table: 'used_proof_jtis', expired: ({ now }) => sql`expires_at < ${now}` },
  // Pushed authorization requests live a minute; used or not, they go once expired.
  { table: 'pushed_authorization_requests', expired: ({ now }) => sql`expires_at < ${now}` },
  // Federated sign-ins never finished (the callback deletes the ones that are).
  { table: 'federated_login_states', expired: ({ now }) => sql`expires_at < ${now}` },
  // Sign-ins waiting for a second factor live five minutes; finished ones are deleted at once.
  { table: 'mfa_challenges', expired: ({ now }) => sql`expires_at < ${now}` },
  // Answered WebAuthn challenges: kept only while the challenge itself could still be answered.
  { table: 'webauthn_challenges', expired: ({ now }) => sql`expires_at < ${now}` },
  // Accepted invitations go too once expired: membership is the lasting record, audit the history.
  { table: 'tenant_invitations', expired: ({ now }) => sql`expires_at < ${now}` },
  // Raw usage rows, optional detail beside the counters with their own retention.
  {
    table: 'api_key_usage',
    expired: ({ now, usageDetailRetentionDays }) =>
      sql`created_at < ${daysBefore(now, usageDetailRetentionDays)}`,
  },
  // The hourly counters /api-keys/{id}/usage reads.
  {
    table: 'api_key_usage_counters',
    expired: ({ now, usageRetentionDays }) => sql`hour_start < ${daysBefore(now, usageRetentionDays)}`,
  },
  // Agent clients' hourly grant counters (issue 15): the same retention as API-key usage.
  {
    table: 'oauth_client_usage_counters',
    expired: ({ now, usageRetentionDays }) => sql`hour_start < ${daysBefore(now, usageRetentionDays)}`,
  },
  {
    table: 'audit_events',
    expired: ({ now, auditRetentionDays }) => sql`created_at < ${daysBefore(now, auditRetentionDays)}`,
  },
  {
    table: 'email_outbox',
    expired: ({ now }) => sql`sent_at < ${daysBefore(now, DELIVERED_EMAIL_RETENTION_DAYS)}`,
  },
]
