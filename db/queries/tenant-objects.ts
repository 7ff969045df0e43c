import { type SQL, sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import type { NewAuditEvent } from './audit'

// Every query here names the tenant in its WHERE clause: another tenant's row is never read,
// so it answers exactly like a row that does not exist (404, not 403).

type Row = Record<string, unknown>
type After = { createdAt: string; id: string } | undefined

const CURSOR_AT = (column: string) =>
  sql.raw(`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at`)

/**
 * The keyset tail of a newest-first list over alias `t`: rows after the cursor, ordered by
 * `(created_at, id)` descending, `limit + 1` of them (the extra one says there is a next page).
 */
function newestFirst(t: string, after: After, limit: number): SQL {
  const createdAt = sql.raw(`${t}.created_at`)
  const id = sql.raw(`${t}.id`)
  const cursor =
    after === undefined
      ? sql``
      : sql`and (${createdAt}, ${id}) < (${after.createdAt}::timestamptz, ${after.id}::uuid)`
  return sql`${cursor} order by ${createdAt} desc, ${id} desc limit ${limit + 1}`
}

const CLIENT_COLUMNS = sql`c.id::text as id, c.client_id, c.client_name, c.grant_types, c.scope,
  c.token_endpoint_auth_method, c.redirect_uris, c.disabled_at, c.created_at, ${CURSOR_AT('c.created_at')}`

/** The tenant's OAuth clients, newest first, `limit + 1` rows. */
export function listTenantClients(
  x: Executor,
  tenantId: string,
  limit: number,
  after: After,
): Promise<Row[]> {
  return queryRows(
    x,
    sql`select ${CLIENT_COLUMNS} from oauth_clients c
        where c.tenant_id = ${tenantId}::uuid ${newestFirst('c', after, limit)}`,
  )
}

/** One of the tenant's clients by its `client_id` (undefined: none in this tenant). */
export async function findTenantClient(
  x: Executor,
  tenantId: string,
  clientId: string,
): Promise<Row | undefined> {
  const [row] = await queryRows(
    x,
    sql`select ${CLIENT_COLUMNS} from oauth_clients c
        where c.tenant_id = ${tenantId}::uuid and c.client_id = ${clientId}`,
  )
  return row
}

/**
 * Disables one of the tenant's clients (idempotent: the first `disabled_at` stays) and writes
 * `client_disabled` when it changed, in one statement. Undefined: no such client in this tenant.
 */
export async function disableTenantClient(
  x: Executor,
  tenantId: string,
  clientId: string,
  now: Date,
  audit: NewAuditEvent,
): Promise<Row | undefined> {
  const [row] = await queryRows(
    x,
    sql`with prev as (select id, disabled_at from oauth_clients
                      where tenant_id = ${tenantId}::uuid and client_id = ${clientId}),
        u as (update oauth_clients c set disabled_at = coalesce(c.disabled_at, ${now}), updated_at = ${now}
              from prev where c.id = prev.id returning c.*, prev.disabled_at is null as changed),
        a as (insert into audit_events (type, actor, tenant_id, client_id, ip, metadata)
              select 'client_disabled', ${audit.actor}, tenant_id, client_id, ${audit.ip ?? null}, '{}'::jsonb
              from u where changed)
      select ${CLIENT_COLUMNS} from u c`,
  )
  return row
}

const KEY_COLUMNS = sql`k.id::text as id, k.prefix, k.last4, k.name, k.owner_user_id::text as owner_id, k.tier,
  k.scopes, k.expires_at, k.revoked_at, k.created_at, k.last_used_at, ${CURSOR_AT('k.created_at')}`

/** The tenant's API keys (never a secret), newest first, `limit + 1` rows. */
export function listTenantApiKeys(
  x: Executor,
  tenantId: string,
  limit: number,
  after: After,
): Promise<Row[]> {
  return queryRows(
    x,
    sql`select ${KEY_COLUMNS} from api_keys k
        where k.tenant_id = ${tenantId}::uuid ${newestFirst('k', after, limit)}`,
  )
}

/**
 * Revokes one of the tenant's keys (idempotent) with `api_key_revoked` in the same statement.
 * Undefined: no such key in this tenant.
 */
export async function revokeTenantApiKey(
  x: Executor,
  tenantId: string,
  keyId: string,
  now: Date,
  audit: NewAuditEvent,
): Promise<Row | undefined> {
  const [row] = await queryRows(
    x,
    sql`with prev as (select id, revoked_at from api_keys where tenant_id = ${tenantId}::uuid and id = ${keyId}::uuid),
        u as (update api_keys k set revoked_at = coalesce(k.revoked_at, ${now})
              from prev where k.id = prev.id returning k.*, prev.revoked_at is null as changed),
        a as (insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
              select 'api_key_revoked', ${audit.actor}, owner_user_id, tenant_id, ${audit.ip ?? null},
                     jsonb_build_object('key_id', id, 'by', 'tenant_admin')
              from u where changed)
      select ${KEY_COLUMNS} from u k`,
  )
  return row
}

/** The tenant's audit events, newest first, `limit + 1` rows. */
export function listTenantAudit(
  x: Executor,
  tenantId: string,
  filter: { type?: string | undefined; limit: number; after: After },
): Promise<Row[]> {
  const type = filter.type === undefined ? sql`` : sql`and e.type = ${filter.type}`
  return queryRows(
    x,
    sql`select e.id::text as id, e.type, e.actor, e.user_id::text as user_id, e.client_id, e.ip, e.metadata,
          e.created_at, ${CURSOR_AT('e.created_at')}
        from audit_events e
        where e.tenant_id = ${tenantId}::uuid ${type} ${newestFirst('e', filter.after, filter.limit)}`,
  )
}

export interface TenantQuotaUsage {
  plan: string
  /** The tenant's own quota (null: the plan's). */
  monthlyQuota: number | null
  /** This UTC month's counter (0 before the first counted verify). */
  used: number
  /** Start of this UTC month and of the next, as the database computes them. */
  periodStart: Date
  resetAt: Date
}

/** The tenant's plan, own quota and this UTC month's shared-quota counter. One round trip. */
export async function findTenantQuotaUsage(
  x: Executor,
  tenantId: string,
  now: Date,
): Promise<TenantQuotaUsage | undefined> {
  const [row] = await queryRows(
    x,
    sql`with p as (select date_trunc('month', ${now.toISOString()}::timestamptz, 'UTC') as start)
        select t.plan, t.monthly_quota, p.start as period_start, p.start + interval '1 month' as reset_at,
          coalesce((select c.used from tenant_quota_counters c
                    where c.tenant_id = t.id and c.period_start = p.start), 0) as used
        from tenants t, p where t.id = ${tenantId}::uuid`,
  )
  if (row === undefined) {
    return undefined
  }
  return {
    plan: String(row.plan),
    monthlyQuota: row.monthly_quota === null ? null : Number(row.monthly_quota),
    used: Number(row.used),
    periodStart: new Date(String(row.period_start)),
    resetAt: new Date(String(row.reset_at)),
  }
}
