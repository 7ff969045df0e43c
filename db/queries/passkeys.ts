import { and, asc, eq, gt, sql } from 'drizzle-orm'
import type { Executor, HttpDb } from '../client'
import { mfaChallenges, passkeys, users, webauthnChallenges } from '../schema'
import type { WebauthnChallengePurpose } from '../schema/passkeys'
import type { NewAuditEvent } from './audit'
import { sameEmail } from './users'

export type PasskeyRow = typeof passkeys.$inferSelect
export type NewPasskey = typeof passkeys.$inferInsert

/** A user's passkeys, oldest first. One round trip. */
export function listPasskeysStatement(x: Executor, userId: string) {
  return x
    .select()
    .from(passkeys)
    .where(eq(passkeys.userId, userId))
    .orderBy(asc(passkeys.createdAt), asc(passkeys.id))
}

/** The user with this email, if they have a passkey (a row), for the password sign-in's first batch. */
export function selectPasskeyOwnerByEmailStatement(x: Executor, tenantId: string, email: string) {
  return x
    .select({ userId: passkeys.userId })
    .from(passkeys)
    .innerJoin(users, eq(users.id, passkeys.userId))
    .where(and(eq(users.tenantId, tenantId), sameEmail(email)))
    .limit(1)
}

/** The passkey with this credential id and its user, for an assertion. */
export function selectPasskeyByCredentialStatement(x: Executor, credentialId: string) {
  return x
    .select({ passkey: passkeys, user: users })
    .from(passkeys)
    .innerJoin(users, eq(users.id, passkeys.userId))
    .where(eq(passkeys.credentialId, credentialId))
    .limit(1)
}

/** The passkeys of the user a live pending sign-in (mfa_token hash) belongs to, with the pending sign-in. */
export function selectPasskeysForMfaStatement(x: Executor, tokenHash: string, now: Date) {
  return x
    .select({ challengeId: mfaChallenges.id, userId: mfaChallenges.userId, passkey: passkeys })
    .from(mfaChallenges)
    .innerJoin(passkeys, eq(passkeys.userId, mfaChallenges.userId))
    .where(and(eq(mfaChallenges.tokenHash, tokenHash), gt(mfaChallenges.expiresAt, now)))
    .orderBy(asc(passkeys.createdAt))
}

/** Every passkey of a user (an admin's factor reset). */
export function deletePasskeysOfUserStatement(x: Executor, userId: string) {
  return x.delete(passkeys).where(eq(passkeys.userId, userId)).returning({ id: passkeys.id })
}

export function insertPasskeyStatement(x: Executor, row: NewPasskey) {
  return x.insert(passkeys).values(row).returning()
}

/**
 * Records an answered challenge: a row only for the first answer, so a replayed response (or any
 * other answer to the same challenge) finds it spent, however many race. Kept until the
 * challenge would have expired anyway; the purge removes it then.
 */
export function spendChallengeStatement(
  x: Executor,
  input: {
    challengeHash: string
    purpose: WebauthnChallengePurpose
    userId: string | null
    expiresAt: Date
    now: Date
  },
) {
  return x
    .insert(webauthnChallenges)
    .values({
      challengeHash: input.challengeHash,
      purpose: input.purpose,
      userId: input.userId,
      expiresAt: input.expiresAt,
      createdAt: input.now,
    })
    .onConflictDoNothing({ target: webauthnChallenges.challengeHash })
    .returning({ id: webauthnChallenges.id })
}

/**
 * Stores an assertion's signature counter only if it moved forward from the one stored (or both
 * are 0: the authenticator keeps none), so of two racing assertions with the same counter only
 * one is accepted. A row back means the passkey was used.
 */
export function advanceCounterStatement(x: Executor, id: string, counter: number, now: Date) {
  return x
    .update(passkeys)
    .set({ signCount: counter, lastUsedAt: now })
    .where(
      and(
        eq(passkeys.id, id),
        sql`(${passkeys.signCount} < ${counter} or (${counter}::bigint = 0 and ${passkeys.signCount} = 0))`,
      ),
    )
    .returning({ id: passkeys.id })
}

/** Renames one of the user's passkeys and records `passkey_renamed` in the same statement. */
export async function renamePasskeyAudited(
  x: Executor,
  input: { userId: string; id: string; name: string; audit: NewAuditEvent },
): Promise<boolean> {
  const result = (await x.execute(sql`
    with renamed as (
      update passkeys set name = ${input.name} where id = ${input.id} and user_id = ${input.userId} returning id
    ), audited as (
      insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
      select ${input.audit.type}, ${input.audit.actor}, ${input.userId}, ${input.audit.tenantId ?? null}::uuid,
        ${input.audit.ip ?? null}, ${JSON.stringify(input.audit.metadata ?? {})}::jsonb || jsonb_build_object('passkey_id', id)
      from renamed
    )
    select id from renamed`)) as unknown as { rows: { id: string }[] }
  return result.rows.length === 1
}

export type RemovePasskeyResult = 'removed' | 'not_found' | 'last_sign_in_method'

/**
 * Removes one of the user's passkeys unless it is the last way the account can sign in: no
 * usable password (`noPasswordHash`), no other passkey and no linked identity provider. The user
 * row is locked first, so two removals racing for the last two passkeys cannot both pass the
 * check (the second statement of the batch reads after the lock). `passkey_removed` is recorded
 * in the same statement. One round trip.
 */
export async function removePasskeyAudited(
  db: HttpDb,
  input: { userId: string; id: string; noPasswordHash: string; audit: NewAuditEvent },
): Promise<RemovePasskeyResult> {
  const [, result] = await db.batch([
    db.execute(sql`select id from users where id = ${input.userId} for update`),
    db.execute(sql`
      with target as (
        select id from passkeys where id = ${input.id} and user_id = ${input.userId}
      ), removed as (
        delete from passkeys p using target
        where p.id = target.id and (
          exists (select 1 from users u where u.id = ${input.userId} and u.password_hash <> ${input.noPasswordHash})
          or exists (select 1 from passkeys o where o.user_id = ${input.userId} and o.id <> target.id)
          or exists (select 1 from external_identities e where e.user_id = ${input.userId}))
        returning p.id
      ), audited as (
        insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
        select ${input.audit.type}, ${input.audit.actor}, ${input.userId}, ${input.audit.tenantId ?? null}::uuid,
          ${input.audit.ip ?? null}, ${JSON.stringify(input.audit.metadata ?? {})}::jsonb || jsonb_build_object('passkey_id', id)
        from removed
      )
      select (select count(*) from removed)::int as removed, (select count(*) from target)::int as found`),
  ])
  const row = (result as unknown as { rows: { removed: number; found: number }[] }).rows[0]
  if (row === undefined || row.found === 0) {
    return 'not_found'
  }
  return row.removed === 1 ? 'removed' : 'last_sign_in_method'
}
