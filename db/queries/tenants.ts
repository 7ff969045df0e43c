import { type SQL, sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import type { TenantPlan, TenantRole } from '../schema/constants'
import type { NewAuditEvent } from './audit'
import { emailKey } from './users'

export interface TenantRecord {
  id: string
  slug: string
  name: string
  plan: TenantPlan
  active: boolean
  /** The tenant-wide monthly verify quota; null follows the plan (TENANT_MONTHLY_QUOTAS). */
  monthlyQuota: number | null
  createdAt: Date
  updatedAt: Date
  /** created_at with microseconds, for a page cursor. */
  cursorAt: string
}

const TENANT_COLUMNS = sql`id::text, slug, name, plan, active, monthly_quota, created_at, updated_at,
  to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at`

function toTenant(row: Record<string, unknown>): TenantRecord {
  return {
    id: String(row.id),
    slug: String(row.slug),
    name: String(row.name),
    plan: String(row.plan) as TenantPlan,
    active: row.active === true,
    monthlyQuota:
      row.monthly_quota === null || row.monthly_quota === undefined ? null : Number(row.monthly_quota),
    createdAt: new Date(String(row.created_at)),
    updatedAt: new Date(String(row.updated_at)),
    cursorAt: String(row.cursor_at),
  }
}

/** An audit insert fed by a CTE of the same statement (`source`), one row per source row. */
function auditFrom(
  source: string,
  row: NewAuditEvent,
  userIdColumn: SQL | null,
  metadata: SQL = sql`'{}'::jsonb`,
): SQL {
  const userId = userIdColumn ?? sql`${row.userId ?? null}::uuid`
  return sql`insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
    select ${row.type}, ${row.actor}, ${userId}, src.tenant_id, ${row.ip ?? null},
           ${JSON.stringify(row.metadata ?? {})}::jsonb || ${metadata}
    from ${sql.raw(source)} src`
}

export interface NewTenant {
  id: string
  slug: string
  name: string
  plan: TenantPlan
  now: Date
  /** The user who becomes the owner (self-service creation), if any. */
  ownerUserId?: string
}

/**
 * Inserts a tenant, its owner's membership (if any) and `tenant_created`, in one statement: all or
 * nothing, one round trip. A taken slug raises a unique violation (the caller maps it to 409).
 */
export async function createTenant(
  x: Executor,
  tenant: NewTenant,
  audit: NewAuditEvent,
): Promise<TenantRecord> {
  const owner =
    tenant.ownerUserId === undefined
      ? sql``
      : sql`, m as (insert into tenant_members (tenant_id, user_id, role, created_at)
            select id, ${tenant.ownerUserId}::uuid, 'owner', ${tenant.now} from t returning 1)`
  const rows = await queryRows(
    x,
    sql`with t as (insert into tenants (id, slug, name, plan, active, created_at, updated_at)
          values (${tenant.id}::uuid, ${tenant.slug}, ${tenant.name}, ${tenant.plan}, true, ${tenant.now}, ${tenant.now})
          returning id as tenant_id, *)${owner},
        a as (${auditFrom('t', audit, null, sql`jsonb_build_object('slug', ${tenant.slug}::text)`)})
      select ${TENANT_COLUMNS} from t`,
  )
  const row = rows[0]
  if (row === undefined) {
    throw new Error('tenant insert returned no row')
  }
  return toTenant(row)
}

/** One tenant by id (undefined: none). One round trip. */
export async function findTenant(x: Executor, id: string): Promise<TenantRecord | undefined> {
  const [row] = await queryRows(x, sql`select ${TENANT_COLUMNS} from tenants where id = ${id}::uuid`)
  return row === undefined ? undefined : toTenant(row)
}

/** Newest first, `limit + 1` rows so the caller knows whether there is a next page. */
export async function listTenants(
  x: Executor,
  options: { limit: number; after?: { createdAt: string; id: string }; memberUserId?: string },
): Promise<(TenantRecord & { role: TenantRole | null })[]> {
  const conditions: SQL[] = [sql`true`]
  if (options.after !== undefined) {
    conditions.push(
      sql`(t.created_at, t.id) < (${options.after.createdAt}::timestamptz, ${options.after.id}::uuid)`,
    )
  }
  const join =
    options.memberUserId === undefined
      ? sql`left join tenant_members m on false`
      : sql`join tenant_members m on m.tenant_id = t.id and m.user_id = ${options.memberUserId}::uuid`
  const rows = await queryRows(
    x,
    sql`select t.id::text, t.slug, t.name, t.plan, t.active, t.monthly_quota, t.created_at, t.updated_at, m.role,
          to_char(t.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at
        from tenants t ${join}
        where ${sql.join(conditions, sql` and `)}
        order by t.created_at desc, t.id desc limit ${options.limit + 1}`,
  )
  return rows.map((row) => ({
    ...toTenant(row),
    role: row.role === null ? null : (String(row.role) as TenantRole),
  }))
}

export interface TenantPatch {
  name?: string
  slug?: string
  plan?: TenantPlan
  active?: boolean
  /** A number, or null to follow the plan again. */
  monthlyQuota?: number | null
}

/** A patch as the audit row records it: the API's field names. */
function auditChanges(patch: TenantPatch): Record<string, unknown> {
  const { monthlyQuota, ...rest } = patch
  return monthlyQuota === undefined ? rest : { ...rest, monthly_quota: monthlyQuota }
}

export interface TenantUpdate {
  tenant: TenantRecord
  /** Set when this update deactivated the tenant: what it ended. */
  ended?: { sessions: number; refreshTokens: number }
}

/**
 * Applies a patch and writes `tenant_updated` in one statement. Deactivation (`active: false`)
 * also ends access of every member and every user whose home tenant it is: deletes their sessions,
 * revokes their refresh tokens and those issued to the tenant's clients, and moves their
 * `tokens_valid_after` to `now` (also when repeated, so a retry after a failed first attempt still
 * ends them), and the tenant's own `tokens_valid_after`, so its clients' access tokens issued
 * until now stay dead after a reactivation. API keys and clients need nothing else: verify, the
 * grants and every access-token check read `tenants.active`.
 * Undefined: no such tenant. A taken slug raises a unique violation. One round trip.
 */
export async function updateTenant(
  x: Executor,
  id: string,
  patch: TenantPatch,
  now: Date,
  audit: NewAuditEvent,
): Promise<TenantUpdate | undefined> {
  const sets: SQL[] = [sql`updated_at = ${now}`]
  if (patch.name !== undefined) {
    sets.push(sql`name = ${patch.name}`)
  }
  if (patch.slug !== undefined) {
    sets.push(sql`slug = ${patch.slug}`)
  }
  if (patch.plan !== undefined) {
    sets.push(sql`plan = ${patch.plan}`)
  }
  if (patch.active !== undefined) {
    sets.push(sql`active = ${patch.active}`)
  }
  if (patch.monthlyQuota !== undefined) {
    sets.push(sql`monthly_quota = ${patch.monthlyQuota}`)
  }
  const deactivate = patch.active === false
  const at = now.toISOString()
  if (deactivate) {
    // The clients' access tokens issued up to now stay dead after a reactivation.
    sets.push(sql`tokens_valid_after = ${at}::timestamptz`)
  }
  const ending = deactivate
    ? sql`,
        people as (select user_id from tenant_members where tenant_id = ${id}::uuid
                   union select id from users where tenant_id = ${id}::uuid),
        s as (delete from sessions where user_id in (select user_id from people) returning 1),
        r as (update refresh_tokens set revoked_at = ${at}::timestamptz
              where revoked_at is null
                and (user_id in (select user_id from people)
                     or client_id in (select id from oauth_clients where tenant_id = ${id}::uuid))
              returning 1),
        v as (update users set tokens_valid_after = greatest(tokens_valid_after, ${at}::timestamptz)
              where id in (select user_id from people) returning 1),
        c as (delete from authorization_codes where consumed_at is null
                and (user_id in (select user_id from people)
                     or client_id in (select id from oauth_clients where tenant_id = ${id}::uuid))
              returning 1)`
    : sql`, s as (select 1 where false), r as (select 1 where false)`
  const rows = await queryRows(
    x,
    sql`with u as (update tenants set ${sql.join(sets, sql`, `)} where id = ${id}::uuid
          returning id as tenant_id, *)${ending},
        a as (${auditFrom(
          'u',
          audit,
          null,
          sql`jsonb_build_object('changes', ${JSON.stringify(auditChanges(patch))}::jsonb, 'sessions_ended', (select count(*) from s),
                'refresh_tokens_revoked', (select count(*) from r))`,
        )})
      select ${TENANT_COLUMNS}, (select count(*) from s)::int as sessions, (select count(*) from r)::int as refresh_tokens
      from u`,
  )
  const row = rows[0]
  if (row === undefined) {
    return undefined
  }
  return {
    tenant: toTenant(row),
    ended: deactivate
      ? { sessions: Number(row.sessions), refreshTokens: Number(row.refresh_tokens) }
      : undefined,
  }
}

export interface Membership {
  role: TenantRole
  active: boolean
}

/** The caller's role in a tenant and whether the tenant is active (undefined: no such pair). */
export async function findMembership(
  x: Executor,
  tenantId: string,
  userId: string,
): Promise<Membership | undefined> {
  const [row] = await queryRows(
    x,
    sql`select m.role, t.active from tenant_members m join tenants t on t.id = m.tenant_id
        where m.tenant_id = ${tenantId}::uuid and m.user_id = ${userId}::uuid`,
  )
  return row === undefined ? undefined : { role: String(row.role) as TenantRole, active: row.active === true }
}

export interface MemberRecord {
  userId: string
  email: string
  displayName: string | null
  role: TenantRole
  createdAt: Date
  cursorAt: string
}

function toMember(row: Record<string, unknown>): MemberRecord {
  return {
    userId: String(row.user_id),
    email: String(row.email),
    displayName: row.display_name === null ? null : String(row.display_name),
    role: String(row.role) as TenantRole,
    createdAt: new Date(String(row.created_at)),
    cursorAt: String(row.cursor_at),
  }
}

/** A tenant's members, oldest first, `limit + 1` rows. */
export async function listMembers(
  x: Executor,
  tenantId: string,
  options: { limit: number; after?: { createdAt: string; id: string } },
): Promise<MemberRecord[]> {
  const after =
    options.after === undefined
      ? sql``
      : sql`and (m.created_at, m.user_id) > (${options.after.createdAt}::timestamptz, ${options.after.id}::uuid)`
  const rows = await queryRows(
    x,
    sql`select m.user_id::text, u.email, u.display_name, m.role, m.created_at,
          to_char(m.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at
        from tenant_members m join users u on u.id = m.user_id
        where m.tenant_id = ${tenantId}::uuid ${after}
        order by m.created_at, m.user_id limit ${options.limit + 1}`,
  )
  return rows.map(toMember)
}

/**
 * The tenant's owners, locked (`for update`): a concurrent change of an owner waits, and on
 * resuming re-reads the rows it locks (READ COMMITTED's recheck), so two owners demoting each
 * other at once cannot both succeed and leave the tenant without one.
 */
function lockedOwners(tenantId: string): SQL {
  return sql`owners as (select user_id from tenant_members
                        where tenant_id = ${tenantId}::uuid and role = 'owner' for update)`
}

export type MemberChange =
  | { kind: 'changed'; member: MemberRecord; previousRole: TenantRole }
  | { kind: 'not_found' }
  | { kind: 'last_owner' }
  | { kind: 'owner_protected' }

/**
 * Sets a member's role, refusing in the statement itself to demote the last owner, and, when
 * `actorMayTouchOwners` is false (a tenant admin), to make or change an owner. Writes
 * `member_role_changed` with the change. One round trip (a second only to explain a refusal).
 */
export async function changeMemberRole(
  x: Executor,
  input: {
    tenantId: string
    userId: string
    role: TenantRole
    actorMayTouchOwners: boolean
    audit: NewAuditEvent
  },
): Promise<MemberChange> {
  const { tenantId, userId, role } = input
  const rows = await queryRows(
    x,
    sql`with ${lockedOwners(tenantId)},
        prev as (select role from tenant_members where tenant_id = ${tenantId}::uuid and user_id = ${userId}::uuid),
        u as (update tenant_members m set role = ${role}
              where m.tenant_id = ${tenantId}::uuid and m.user_id = ${userId}::uuid
                and (${input.actorMayTouchOwners} or (m.role <> 'owner' and ${role} <> 'owner'))
                and (m.role <> 'owner' or ${role} = 'owner'
                     or exists (select 1 from owners o where o.user_id <> ${userId}::uuid))
              returning m.*),
        a as (${auditFrom(
          'u',
          input.audit,
          sql`src.user_id`,
          sql`jsonb_build_object('role', ${role}::text, 'previous_role', (select role from prev))`,
        )})
      select u.user_id::text, us.email, us.display_name, u.role, u.created_at, (select role from prev) as previous_role,
        to_char(u.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as cursor_at
      from u join users us on us.id = u.user_id`,
  )
  const row = rows[0]
  if (row !== undefined) {
    return { kind: 'changed', member: toMember(row), previousRole: String(row.previous_role) as TenantRole }
  }
  return explainRefusal(x, tenantId, userId, input.actorMayTouchOwners, role)
}

async function explainRefusal(
  x: Executor,
  tenantId: string,
  userId: string,
  actorMayTouchOwners: boolean,
  role: TenantRole | null,
): Promise<Exclude<MemberChange, { kind: 'changed' }>> {
  const [current] = await queryRows(
    x,
    sql`select role from tenant_members where tenant_id = ${tenantId}::uuid and user_id = ${userId}::uuid`,
  )
  if (current === undefined) {
    return { kind: 'not_found' }
  }
  if (!actorMayTouchOwners && (current.role === 'owner' || role === 'owner')) {
    return { kind: 'owner_protected' }
  }
  return { kind: 'last_owner' }
}

export type MemberRemoval =
  | { kind: 'removed'; role: TenantRole }
  | { kind: 'not_found' }
  | { kind: 'last_owner' }
  | { kind: 'owner_protected' }

/**
 * Removes a member (or lets one leave), refusing in the statement to remove the last owner, and an
 * owner at all when `actorMayTouchOwners` is false. Writes `member_removed` with the change.
 */
export async function removeMember(
  x: Executor,
  input: { tenantId: string; userId: string; actorMayTouchOwners: boolean; audit: NewAuditEvent },
): Promise<MemberRemoval> {
  const { tenantId, userId } = input
  const rows = await queryRows(
    x,
    sql`with ${lockedOwners(tenantId)},
        d as (delete from tenant_members m
              where m.tenant_id = ${tenantId}::uuid and m.user_id = ${userId}::uuid
                and (${input.actorMayTouchOwners} or m.role <> 'owner')
                and (m.role <> 'owner' or exists (select 1 from owners o where o.user_id <> ${userId}::uuid))
              returning m.*),
        a as (${auditFrom('d', input.audit, sql`src.user_id`, sql`jsonb_build_object('role', (select role from d))`)})
      select role from d`,
  )
  const row = rows[0]
  if (row !== undefined) {
    return { kind: 'removed', role: String(row.role) as TenantRole }
  }
  return explainRefusal(x, tenantId, userId, input.actorMayTouchOwners, null)
}

export interface NewInvitation {
  tenantId: string
  email: string
  role: TenantRole
  tokenHash: string
  invitedBy: string
  now: Date
  expiresAt: Date
  message: { template: string; subject: string; text: string; html: string }
}

export interface InvitationRecord {
  id: string
  tenantId: string
  email: string
  role: TenantRole
  invitedBy: string
  expiresAt: Date
  acceptedAt: Date | null
  createdAt: Date
}

function toInvitation(row: Record<string, unknown>): InvitationRecord {
  return {
    id: String(row.id),
    tenantId: String(row.tenant_id),
    email: String(row.email),
    role: String(row.role) as TenantRole,
    invitedBy: String(row.invited_by),
    expiresAt: new Date(String(row.expires_at)),
    acceptedAt: row.accepted_at === null ? null : new Date(String(row.accepted_at)),
    createdAt: new Date(String(row.created_at)),
  }
}

/**
 * Stores an invitation (the token's SHA-256 only), queues its mail in the outbox and writes
 * `invitation_created`: one statement, one round trip. Returns the invitation and the outbox id.
 */
export async function createInvitation(
  x: Executor,
  input: NewInvitation,
  audit: NewAuditEvent,
): Promise<{ invitation: InvitationRecord; outboxId: string }> {
  const rows = await queryRows(
    x,
    sql`with i as (insert into tenant_invitations (tenant_id, email, role, token_hash, invited_by, expires_at, created_at)
          values (${input.tenantId}::uuid, ${input.email}, ${input.role}, ${input.tokenHash}, ${input.invitedBy},
                  ${input.expiresAt}, ${input.now})
          returning *),
        o as (insert into email_outbox (to_address, template, subject, body_text, body_html, created_at, next_attempt_at)
          values (${input.email}, ${input.message.template}, ${input.message.subject}, ${input.message.text},
                  ${input.message.html}, ${input.now}, ${input.now})
          returning id),
        a as (${auditFrom(
          'i',
          audit,
          null,
          sql`jsonb_build_object('invitation_id', (select id from i), 'role', ${input.role}::text)`,
        )})
      select i.*, (select id::text from o) as outbox_id from i`,
  )
  const row = rows[0]
  if (row === undefined) {
    throw new Error('invitation insert returned no row')
  }
  return { invitation: toInvitation(row), outboxId: String(row.outbox_id) }
}

/** A tenant's invitations not yet accepted nor expired, newest first (at most 100). */
export async function listPendingInvitations(
  x: Executor,
  tenantId: string,
  now: Date,
): Promise<InvitationRecord[]> {
  const rows = await queryRows(
    x,
    sql`select * from tenant_invitations
        where tenant_id = ${tenantId}::uuid and accepted_at is null and expires_at > ${now}
        order by created_at desc limit 100`,
  )
  return rows.map(toInvitation)
}

/**
 * Deletes a pending invitation of the tenant (its link stops working) with `invitation_revoked`,
 * in one statement. False: no pending invitation with this id in this tenant.
 */
export async function revokeInvitation(
  x: Executor,
  tenantId: string,
  invitationId: string,
  audit: NewAuditEvent,
): Promise<boolean> {
  const rows = await queryRows(
    x,
    sql`with d as (delete from tenant_invitations
                   where tenant_id = ${tenantId}::uuid and id = ${invitationId}::uuid and accepted_at is null
                   returning *),
        a as (${auditFrom('d', audit, null, sql`jsonb_build_object('invitation_id', (select id from d))`)})
      select 1 from d`,
  )
  return rows.length > 0
}

export type InvitationAcceptance =
  | { kind: 'accepted'; tenantId: string; role: TenantRole; alreadyMember: boolean }
  | { kind: 'invalid' }
  | { kind: 'wrong_account' }

/**
 * Accepts an invitation for the signed-in user: single use (`accepted_at`), unexpired, the
 * invited address equal to the user's (one email fold), the tenant active. Marks it, adds the
 * membership (an existing one keeps its role) and writes `invitation_accepted`: one statement.
 * A refusal changes nothing; a second query tells a wrong account from a dead token.
 */
export async function acceptInvitation(
  x: Executor,
  input: { tokenHash: string; userId: string; now: Date; audit: NewAuditEvent },
): Promise<InvitationAcceptance> {
  const rows = await queryRows(
    x,
    sql`with me as (select id, email from users where id = ${input.userId}::uuid),
        i as (update tenant_invitations inv set accepted_at = ${input.now}, accepted_by = ${input.userId}::uuid
              from me
              where inv.token_hash = ${input.tokenHash} and inv.accepted_at is null and inv.expires_at > ${input.now}
                and ${emailKey(sql`inv.email`)} = ${emailKey(sql`me.email`)}
                and exists (select 1 from tenants t where t.id = inv.tenant_id and t.active)
              returning inv.*),
        m as (insert into tenant_members (tenant_id, user_id, role, created_at)
              select tenant_id, ${input.userId}::uuid, role, ${input.now} from i
              on conflict (tenant_id, user_id) do nothing returning 1),
        a as (${auditFrom(
          'i',
          input.audit,
          null,
          sql`jsonb_build_object('invitation_id', (select id from i), 'role', (select role from i))`,
        )})
      select tenant_id::text, role, (select count(*) from m)::int as added from i`,
  )
  const row = rows[0]
  if (row !== undefined) {
    return {
      kind: 'accepted',
      tenantId: String(row.tenant_id),
      role: String(row.role) as TenantRole,
      alreadyMember: Number(row.added) === 0,
    }
  }
  const [live] = await queryRows(
    x,
    sql`select 1 from tenant_invitations inv join tenants t on t.id = inv.tenant_id
        where inv.token_hash = ${input.tokenHash} and inv.accepted_at is null and inv.expires_at > ${input.now}
          and t.active`,
  )
  return live === undefined ? { kind: 'invalid' } : { kind: 'wrong_account' }
}

export interface InvitationView {
  tenantName: string
  email: string
  role: TenantRole
  /** `pending` may be accepted; the others say why not. */
  state: 'pending' | 'expired' | 'used' | 'tenant_inactive'
  /** Whether `userId`'s address is the invited one (one email fold); false without a user. */
  forUser: boolean
  /** Whether `userId` accepted it. */
  acceptedByUser: boolean
}

/**
 * An invitation by its token's hash, for the page a person reaches from the mail: the tenant's
 * name, the invited address and role, its state, and whether `userId` (the signed-in person, if
 * any) is the invited address. Undefined: no such token (never sent, or revoked). One round trip.
 */
export async function findInvitationByToken(
  x: Executor,
  tokenHash: string,
  userId: string | undefined,
  now: Date,
): Promise<InvitationView | undefined> {
  const [row] = await queryRows(
    x,
    sql`select t.name as tenant_name, inv.email, inv.role,
          case when inv.accepted_at is not null then 'used'
               when inv.expires_at <= ${now} then 'expired'
               when not t.active then 'tenant_inactive'
               else 'pending' end as state,
          coalesce((select ${emailKey(sql`u.email`)} = ${emailKey(sql`inv.email`)}
                    from users u where u.id = ${userId ?? null}::uuid), false) as for_user,
          coalesce(inv.accepted_by = ${userId ?? null}::uuid, false) as accepted_by_user
        from tenant_invitations inv join tenants t on t.id = inv.tenant_id
        where inv.token_hash = ${tokenHash}`,
  )
  if (row === undefined) {
    return undefined
  }
  return {
    tenantName: String(row.tenant_name),
    email: String(row.email),
    role: String(row.role) as TenantRole,
    state: String(row.state) as InvitationView['state'],
    forUser: row.for_user === true,
    acceptedByUser: row.accepted_by_user === true,
  }
}

/** Sets `users.is_admin` and writes the audit row in one statement; undefined: no such user. */
export async function setPlatformAdmin(
  x: Executor,
  userId: string,
  isAdmin: boolean,
  now: Date,
  audit: NewAuditEvent,
): Promise<{ changed: boolean } | undefined> {
  const rows = await queryRows(
    x,
    sql`with prev as (select is_admin from users where id = ${userId}::uuid),
        u as (update users set is_admin = ${isAdmin}, updated_at = ${now}
              where id = ${userId}::uuid and is_admin <> ${isAdmin} returning id, tenant_id),
        a as (${auditFrom('u', audit, sql`src.id`)})
      select (select count(*) from u)::int as changed from prev`,
  )
  const row = rows[0]
  return row === undefined ? undefined : { changed: Number(row.changed) > 0 }
}
