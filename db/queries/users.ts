import { and, desc, eq, gt, ilike, inArray, isNull, or, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { auditEvents, emailVerifications, passwordResets, type UserStatus, users } from '../schema'
import { isUuid } from '../uuid'
import { KEY_EPOCH } from './oauth-keys'

export type UserRow = typeof users.$inferSelect
export type NewUser = typeof users.$inferInsert

/**
 * The one case-fold of an email address: Postgres `lower()`, the expression the per-tenant unique
 * index is built on. Every comparison of addresses goes through it (never JavaScript's
 * `toLowerCase()`, which folds `İ` to `i̇` where Postgres gives `i`), so a lookup, the uniqueness
 * rule and a throttle subject cannot disagree about which spellings are the same address.
 */
export function emailKey(email: SQL | string): SQL {
  return sql`lower(${email})`
}

export function sameEmail(email: string): SQL {
  return sql`${emailKey(sql`${users.email}`)} = ${emailKey(email)}`
}

/**
 * The sign-in throttle subject of an address, computed in the statement that claims it: the
 * account's `user:<id>` when the address belongs to one (every spelling that finds the account
 * shares its counter), else `email:<tenant>:<sha256 of the folded address>`. The second cannot
 * multiply guesses: no password stands behind it, and the instant a spelling finds an account the
 * subject is that account's. It exists so an unknown address is refused with 429 exactly like a
 * known one (no enumeration); hashed so a password typed into the email field is not kept.
 */
export function accountThrottleSubject(tenantId: string, email: string): SQL {
  return sql`coalesce(
    (select 'user:' || ${users.id}::text from ${users} where ${users.tenantId} = ${tenantId} and ${sameEmail(email)} limit 1),
    'email:' || ${tenantId}::text || ':' || encode(sha256(convert_to(${emailKey(email)}, 'UTF8')), 'hex'))`
}

/** The throttle subject of a known account (sign-in and change-password share it). */
export function userThrottleSubject(userId: string): string {
  return `user:${userId}`
}

/** The user with this email in the tenant (case-insensitive). One round trip. */
export function selectUserByEmail(x: Executor, tenantId: string, email: string) {
  return x
    .select()
    .from(users)
    .where(and(eq(users.tenantId, tenantId), sameEmail(email)))
    .limit(1)
}

export async function findUserById(x: Executor, id: string): Promise<UserRow | undefined> {
  const [row] = await x.select().from(users).where(eq(users.id, id)).limit(1)
  return row
}

/** Inserts a user; the statement fails with a unique violation when the email is taken. */
export function insertUserStatement(x: Executor, user: NewUser) {
  return x.insert(users).values(user).returning()
}

/** Sets a new password; every access token issued until `now` dies with the old one. */
export function updatePasswordStatement(x: Executor, id: string, passwordHash: string, now: Date) {
  return x
    .update(users)
    .set({ passwordHash, updatedAt: now, tokensValidAfter: laterOf(users.tokensValidAfter, now) })
    .where(eq(users.id, id))
    .returning()
}

// tokens_valid_after only moves forward (greatest() ignores a null).
function laterOf(column: typeof users.tokensValidAfter, now: Date): SQL {
  return sql`greatest(${column}, ${now.toISOString()}::timestamptz)`
}

/** Stamps a successful sign-in, storing an upgraded password hash when one is given. */
export function recordLoginStatement(x: Executor, id: string, now: Date, upgradedHash: string | undefined) {
  return x
    .update(users)
    .set(upgradedHash === undefined ? { lastLoginAt: now } : { lastLoginAt: now, passwordHash: upgradedHash })
    .where(eq(users.id, id))
}

export function updateDisplayNameStatement(x: Executor, id: string, displayName: string | null, now: Date) {
  return x.update(users).set({ displayName, updatedAt: now }).where(eq(users.id, id)).returning()
}

/**
 * Moves a user to `to` when its status is one of `from`; undefined when the user does not exist
 * or is in another status. One round trip.
 */
export function transitionUserStatusStatement(
  x: Executor,
  id: string,
  from: readonly UserStatus[],
  to: UserStatus,
  now: Date,
) {
  return (
    x
      .update(users)
      // Suspension ends every access token issued so far, for good: reinstating does not revive them.
      .set(
        to === 'suspended'
          ? { status: to, updatedAt: now, tokensValidAfter: laterOf(users.tokensValidAfter, now) }
          : { status: to, updatedAt: now },
      )
      .where(and(eq(users.id, id), inArray(users.status, [...from])))
      .returning()
  )
}

/**
 * Holds in a later statement of the same batch exactly when `transitionUserStatusStatement`
 * moved this user to `to` at `now` (a repeat leaves `updated_at` alone).
 */
export function transitionedNow(id: string, to: UserStatus, now: Date): SQL {
  return sql`exists (select 1 from ${users} where ${users.id} = ${id} and ${users.status} = ${to}
    and ${users.updatedAt} = ${now.toISOString()}::timestamptz)`
}

export interface UserListFilter {
  status?: UserStatus | undefined
  /** Substring of the email or display name, case-insensitive. */
  q?: string | undefined
  limit: number
  after?: { createdAt: string; id: string } | undefined
}

/** `%`, `_` and `\` match literally in the search text. */
export function likeLiteral(text: string): string {
  return `%${text.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`
}

/**
 * Newest first, keyset-paginated on (created_at, id); fetches `limit + 1` rows so the caller
 * knows whether there is a next page. `cursorAt` is created_at with microseconds, for the cursor.
 */
export async function listUsers(x: Executor, filter: UserListFilter) {
  const conditions: SQL[] = []
  if (filter.status !== undefined) {
    conditions.push(eq(users.status, filter.status))
  }
  if (filter.q !== undefined && filter.q !== '') {
    const pattern = likeLiteral(filter.q)
    const match = or(ilike(users.email, pattern), ilike(users.displayName, pattern))
    if (match !== undefined) {
      conditions.push(match)
    }
  }
  if (filter.after !== undefined) {
    conditions.push(
      sql`(${users.createdAt}, ${users.id}) < (${filter.after.createdAt}::timestamptz, ${filter.after.id}::uuid)`,
    )
  }
  return x
    .select({
      user: users,
      cursorAt: sql<string>`to_char(${users.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    })
    .from(users)
    .where(conditions.length > 0 ? and(...conditions) : undefined)
    .orderBy(desc(users.createdAt), desc(users.id))
    .limit(filter.limit + 1)
}

export interface IssueAccountTokenInput {
  tenantId: string
  email: string
  tokenHash: string
  now: Date
  expiresAt: Date
  /** No new token when the user already got one after this instant (resend throttling). */
  cooldownSince: Date
  message: { template: string; subject: string; text: string; html: string }
}

/**
 * For the user with this email (if any, verified addresses excepted, suspended users excepted):
 * stores an email-verification token and queues its message, unless one was issued since
 * `cooldownSince`. One statement, one round trip; the outbox id when a message was queued.
 */
export async function issueEmailVerificationForEmail(
  x: Executor,
  input: IssueAccountTokenInput,
): Promise<string | undefined> {
  const result = (await x.execute(sql`
    with u as (
      select id, email from users
      where tenant_id = ${input.tenantId} and ${sameEmail(input.email)}
        and email_verified_at is null and status <> 'suspended'
        and not exists (select 1 from email_verifications v
                        where v.user_id = users.id and v.created_at > ${input.cooldownSince.toISOString()}::timestamptz)
    ), v as (
      insert into email_verifications (token_hash, user_id, email, expires_at, created_at)
      select ${input.tokenHash}, id, email, ${input.expiresAt.toISOString()}::timestamptz, ${input.now.toISOString()}::timestamptz from u
    ), o as (
      insert into email_outbox (to_address, template, subject, body_text, body_html, created_at, next_attempt_at)
      select email, ${input.message.template}, ${input.message.subject}, ${input.message.text}, ${input.message.html},
             ${input.now.toISOString()}::timestamptz, ${input.now.toISOString()}::timestamptz from u
      returning id
    )
    select id from o`)) as unknown as { rows: { id: string }[] }
  return result.rows[0]?.id
}

/**
 * The same for a password reset: stores the token hash and queues the message when the email
 * belongs to a user who is not suspended and got no reset since `cooldownSince`, and records
 * `password_reset_requested` in the same statement. One round trip.
 */
export async function issuePasswordResetForEmail(
  x: Executor,
  input: IssueAccountTokenInput & { ip: string | null },
): Promise<{ outboxId: string; userId: string } | undefined> {
  const result = (await x.execute(sql`
    with u as (
      select id, email from users
      where tenant_id = ${input.tenantId} and ${sameEmail(input.email)} and status <> 'suspended'
        and not exists (select 1 from password_resets r
                        where r.user_id = users.id and r.created_at > ${input.cooldownSince.toISOString()}::timestamptz)
    ), r as (
      insert into password_resets (token_hash, user_id, expires_at, created_at)
      select ${input.tokenHash}, id, ${input.expiresAt.toISOString()}::timestamptz, ${input.now.toISOString()}::timestamptz from u
    ), a as (
      insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
      select 'password_reset_requested', 'user:' || id::text, id, ${input.tenantId}, ${input.ip}, '{}'::jsonb from u
    ), o as (
      insert into email_outbox (to_address, template, subject, body_text, body_html, created_at, next_attempt_at)
      select email, ${input.message.template}, ${input.message.subject}, ${input.message.text}, ${input.message.html},
             ${input.now.toISOString()}::timestamptz, ${input.now.toISOString()}::timestamptz from u
      returning id
    )
    select o.id as outbox_id, u.id as user_id from o cross join u`)) as unknown as {
    rows: { outbox_id: string; user_id: string }[]
  }
  const row = result.rows[0]
  return row === undefined ? undefined : { outboxId: row.outbox_id, userId: row.user_id }
}

export function insertEmailVerificationStatement(x: Executor, row: typeof emailVerifications.$inferInsert) {
  return x.insert(emailVerifications).values(row)
}

/** Consumes a live verification token: single-use, unexpired. */
export function consumeEmailVerificationStatement(x: Executor, tokenHash: string, now: Date) {
  return x
    .update(emailVerifications)
    .set({ consumedAt: now })
    .where(
      and(
        eq(emailVerifications.tokenHash, tokenHash),
        isNull(emailVerifications.consumedAt),
        gt(emailVerifications.expiresAt, now),
      ),
    )
    .returning({ userId: emailVerifications.userId, email: emailVerifications.email })
}

/**
 * Marks verified the user whose token was consumed at `now` in the same batch, if the address
 * is still the one the token was sent to.
 */
export function markVerifiedByTokenStatement(x: Executor, tokenHash: string, now: Date) {
  return x
    .update(users)
    .set({
      emailVerifiedAt: sql`coalesce(${users.emailVerifiedAt}, ${now.toISOString()}::timestamptz)`,
      updatedAt: now,
    })
    .where(
      sql`(${users.id}, ${emailKey(sql`${users.email}`)}) in (select user_id, ${emailKey(sql`${emailVerifications.email}`)} from ${emailVerifications}
            where ${emailVerifications.tokenHash} = ${tokenHash} and ${emailVerifications.consumedAt} = ${now.toISOString()}::timestamptz)`,
    )
    .returning()
}

/**
 * Records `email_verified` for the user `markVerifiedByTokenStatement` marked earlier in the same
 * batch (same condition, plus the row's `updated_at` being this batch's `now`): the event exists
 * exactly when the address was verified.
 */
export function auditEmailVerifiedStatement(x: Executor, tokenHash: string, now: Date, ip: string | null) {
  const at = now.toISOString()
  return x.execute(sql`
    insert into ${auditEvents} (type, actor, user_id, tenant_id, ip, metadata)
    select 'email_verified', 'user:' || u.id::text, u.id, u.tenant_id, ${ip}, '{}'::jsonb
    from ${users} u
    where u.updated_at = ${at}::timestamptz
      and (u.id, ${emailKey(sql`u.email`)}) in (select v.user_id, ${emailKey(sql`v.email`)} from ${emailVerifications} v
            where v.token_hash = ${tokenHash} and v.consumed_at = ${at}::timestamptz)`)
}

/** Consumes a live reset token; the user id when it was valid. One round trip. */
export async function consumePasswordReset(
  x: Executor,
  tokenHash: string,
  now: Date,
): Promise<string | undefined> {
  const [row] = await x
    .update(passwordResets)
    .set({ consumedAt: now })
    .where(
      and(
        eq(passwordResets.tokenHash, tokenHash),
        isNull(passwordResets.consumedAt),
        gt(passwordResets.expiresAt, now),
      ),
    )
    .returning({ userId: passwordResets.userId })
  return row?.userId
}

/** Voids the user's other outstanding reset links. */
export async function consumeAllPasswordResets(x: Executor, userId: string, now: Date): Promise<void> {
  await x
    .update(passwordResets)
    .set({ consumedAt: now })
    .where(and(eq(passwordResets.userId, userId), isNull(passwordResets.consumedAt)))
}

/**
 * The claims source of a user for /oauth/userinfo, read only while `guard` (the access token's
 * database check: not revoked, client enabled, user active) holds. One round trip.
 */
export async function selectUserClaimsIf(x: Executor, userId: string, guard: SQL) {
  if (!isUuid(userId)) {
    return undefined
  }
  const [row] = await selectUserClaimsIfStatement(x, userId, guard)
  return row
}

/**
 * `selectUserClaimsIf` as a statement for the caller's batch; `userId` must be a uuid. With the
 * signing-key set's epoch, which userinfo confirms its key ring with (`confirmedClaims`).
 */
export function selectUserClaimsIfStatement(x: Executor, userId: string, guard: SQL) {
  return x
    .select({
      email: users.email,
      displayName: users.displayName,
      emailVerifiedAt: users.emailVerifiedAt,
      keyEpoch: KEY_EPOCH,
    })
    .from(users)
    .where(and(eq(users.id, userId), guard))
    .limit(1)
}
