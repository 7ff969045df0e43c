import type { Context } from 'hono'
import type { Executor } from '../../db/client'
import { insertAuditEvents, insertAuditEventsStatement, type NewAuditEvent } from '../../db/queries/audit'
import type { AppEnv } from '../env'
import { errorForLog, log } from '../log'
import { clientIp } from '../middleware/client-ip'

export const AUDIT_EVENT_TYPES = [
  'user_registered',
  'user_login',
  'user_login_failed',
  'user_logout',
  'user_approved',
  'user_suspended',
  'user_reinstated',
  'user_updated',
  'password_changed',
  'password_reset_requested',
  'password_reset_completed',
  'email_verified',
  'client_registered',
  'client_updated',
  'client_deleted',
  'client_disabled',
  'consent_granted',
  'token_issued',
  'token_revoked',
  'refresh_token_reuse_detected',
  'code_replay_detected',
  'device_code_approved',
  'device_code_denied',
  'api_key_created',
  'api_key_revoked',
  'api_key_rotated',
  'service_key_created',
  'service_key_revoked',
  'signing_key_rotated',
  'tenant_created',
  'tenant_updated',
  'member_role_changed',
  'member_removed',
  'invitation_created',
  'invitation_accepted',
  'invitation_revoked',
  'user_promoted',
  'user_demoted',
  'identity_linked',
  'identity_unlinked',
  'allowlist_entry_added',
  'allowlist_entry_removed',
  'identity_provider_created',
  'identity_provider_updated',
  'identity_provider_disabled',
  'resource_server_created',
  'resource_server_updated',
  'resource_server_deleted',
  'admin_action',
  'purge_completed',
  'mfa_enabled',
  'mfa_disabled',
  'recovery_code_used',
  'passkey_added',
  'passkey_renamed',
  'passkey_removed',
  'recovery_codes_regenerated',
  'mfa_reset',
  'email_change_requested',
  'email_changed',
] as const

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number]

export interface AuditEvent {
  type: AuditEventType
  /** `user:<id>`, `client:<client_id>`, `admin`, `system`. */
  actor: string
  userId?: string | null
  tenantId?: string | null
  clientId?: string | null
  /** Identifiers and outcomes only: never a token, password, key or secret. */
  metadata?: Record<string, unknown>
}

function toRow(event: AuditEvent, ip: string | null): NewAuditEvent {
  return {
    type: event.type,
    actor: event.actor,
    userId: event.userId ?? null,
    tenantId: event.tenantId ?? null,
    clientId: event.clientId ?? null,
    ip,
    metadata: event.metadata ?? {},
  }
}

/** The row an event becomes, for a query that writes it inside a larger statement. */
export function auditRow(event: AuditEvent, ip: string | null): NewAuditEvent {
  return toRow(event, ip)
}

/**
 * Records audit events without delaying the response (`waitUntil`); a failed write is logged,
 * never surfaced to the caller.
 */
export function recordAudit(c: Context<AppEnv>, ...events: AuditEvent[]): void {
  const ip = clientIp(c)
  const write = insertAuditEvents(
    c.var.db.http,
    events.map((e) => toRow(e, ip)),
  ).catch((error: unknown) => {
    log('error', 'audit_write_failed', {
      requestId: c.var.requestId,
      types: events.map((e) => e.type),
      error: errorForLog(error),
    })
  })
  c.executionCtx.waitUntil(write)
}

/**
 * The audit insert as a statement for the caller's `db.batch([...])` (or transaction), for an
 * event that must exist whenever the change it records does: same round trip, same commit.
 */
export function auditStatement(x: Executor, ip: string | null, event: AuditEvent, ...more: AuditEvent[]) {
  return insertAuditEventsStatement(x, [toRow(event, ip), ...more.map((e) => toRow(e, ip))])
}
