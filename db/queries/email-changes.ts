import { and, eq, gt, isNull, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { emailChanges, users } from '../schema'
import { emailKey } from './users'

/** Whether another account of the tenant already uses this address (case-insensitively). */
export async function emailTakenInTenant(
  x: Executor,
  tenantId: string,
  email: string,
  exceptUserId: string,
): Promise<boolean> {
  const rows = await x
    .select({ id: users.id })
    .from(users)
    .where(
      sql`${users.tenantId} = ${tenantId} and ${emailKey(sql`${users.email}`)} = ${emailKey(email)} and ${users.id} <> ${exceptUserId}`,
    )
    .limit(1)
  return rows.length > 0
}

/** Whether the user asked for a change since `since` (the per-user cooldown on change mails). */
export async function changeRequestedSince(x: Executor, userId: string, since: Date): Promise<boolean> {
  const rows = await x
    .select({ id: emailChanges.id })
    .from(emailChanges)
    .where(and(eq(emailChanges.userId, userId), gt(emailChanges.createdAt, since)))
    .limit(1)
  return rows.length > 0
}

/** Voids the user's earlier pending changes: only the newest link can change the address. */
export function voidPendingChangesStatement(x: Executor, userId: string, now: Date) {
  return x
    .update(emailChanges)
    .set({ consumedAt: now })
    .where(and(eq(emailChanges.userId, userId), isNull(emailChanges.consumedAt)))
}

export function insertEmailChangeStatement(x: Executor, row: typeof emailChanges.$inferInsert) {
  return x.insert(emailChanges).values(row).returning({ id: emailChanges.id })
}

/** The live (unused, unexpired) change a token names, with the user it belongs to. */
export async function findLiveEmailChange(x: Executor, tokenHash: string, now: Date) {
  const [row] = await x
    .select({ userId: emailChanges.userId, newEmail: emailChanges.newEmail, oldEmail: users.email })
    .from(emailChanges)
    .innerJoin(users, eq(users.id, emailChanges.userId))
    .where(
      and(
        eq(emailChanges.tokenHash, tokenHash),
        isNull(emailChanges.consumedAt),
        gt(emailChanges.expiresAt, now),
      ),
    )
    .limit(1)
  return row
}

export interface ApplyEmailChangeInput {
  tokenHash: string
  /** The address the change was read with: the statement applies only if it is still the user's. */
  oldEmail: string
  now: Date
  ip: string | null
  /** The notice to the old address (rendered by the caller). */
  notice: { template: string; subject: string; text: string; html: string }
}

/**
 * Confirms a change in ONE statement: consumes the token (single use, unexpired), moves the
 * user (not suspended, address unchanged since it was read) to the new address, marked verified
 * (following the link proved it), queues the notice to the old address and writes
 * `email_changed`. Another account taking the address meanwhile fails the whole statement on the
 * unique index (nothing consumed). Returns the user id, the outbox id and the new address, or
 * undefined when nothing changed.
 */
export async function applyEmailChange(x: Executor, input: ApplyEmailChangeInput) {
  const at = input.now.toISOString()
  const result = (await x.execute(sql`
    with ch as (
      update email_changes set consumed_at = ${at}::timestamptz
      where token_hash = ${input.tokenHash} and consumed_at is null and expires_at > ${at}::timestamptz
        and exists (select 1 from users u where u.id = email_changes.user_id and u.status <> 'suspended'
                    and u.email = ${input.oldEmail})
      returning user_id, new_email
    ), moved as (
      update users set email = ch.new_email, email_verified_at = ${at}::timestamptz, updated_at = ${at}::timestamptz
      from ch where users.id = ch.user_id
      returning users.id, users.tenant_id, users.email
    ), notice as (
      insert into email_outbox (to_address, template, subject, body_text, body_html, created_at, next_attempt_at)
      select ${input.oldEmail}, ${input.notice.template}, ${input.notice.subject}, ${input.notice.text},
             ${input.notice.html}, ${at}::timestamptz, ${at}::timestamptz from moved
      returning id
    ), audited as (
      insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
      select 'email_changed', 'user:' || m.id::text, m.id, m.tenant_id, ${input.ip}, jsonb_build_object('via', 'account')
      from moved m
      returning id
    )
    select m.id::text as user_id, m.email, (select id::text from notice) as outbox_id from moved m`)) as unknown as {
    rows: { user_id: string; email: string; outbox_id: string | null }[]
  }
  return result.rows[0]
}
