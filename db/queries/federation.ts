import { and, eq, gt, isNull, lt, or, sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import {
  type AllowlistKind,
  externalIdentities,
  federatedLoginStates,
  identityAllowlist,
  passkeys,
  tenantMembers,
  users,
} from '../schema'

export type FederatedLoginStateRow = typeof federatedLoginStates.$inferSelect
export type ExternalIdentityRow = typeof externalIdentities.$inferSelect
export type NewExternalIdentity = typeof externalIdentities.$inferInsert

export function insertLoginStateStatement(x: Executor, row: typeof federatedLoginStates.$inferInsert) {
  return x.insert(federatedLoginStates).values(row)
}

/**
 * Consumes the unexpired flow with this state hash: deleted and returned in one statement, so of
 * two callbacks carrying the same state only one gets the row (single use).
 */
export function consumeLoginStateStatement(x: Executor, stateHash: string, now: Date) {
  return x
    .delete(federatedLoginStates)
    .where(and(eq(federatedLoginStates.stateHash, stateHash), gt(federatedLoginStates.expiresAt, now)))
    .returning()
}

/** A new account made through a tenant's identity provider joins that tenant as a member. */
export function insertMembershipStatement(x: Executor, tenantId: string, userId: string, now: Date) {
  return x
    .insert(tenantMembers)
    .values({ tenantId, userId, role: 'member', createdAt: now })
    .onConflictDoNothing()
}

/** The identity (provider, subject) with its account, if linked. */
export function selectIdentityWithUser(x: Executor, provider: string, subject: string) {
  return x
    .select({ identity: externalIdentities, user: users })
    .from(externalIdentities)
    .innerJoin(users, eq(users.id, externalIdentities.userId))
    .where(and(eq(externalIdentities.provider, provider), eq(externalIdentities.subject, subject)))
    .limit(1)
}

export function insertIdentityStatement(x: Executor, row: NewExternalIdentity) {
  return x.insert(externalIdentities).values(row).returning({ id: externalIdentities.id })
}

/** A sign-in through the identity: its login stamp and the provider's new (sealed) tokens. */
export function updateIdentityTokensStatement(
  x: Executor,
  id: string,
  tokens: Partial<NewExternalIdentity>,
  now: Date,
) {
  return x
    .update(externalIdentities)
    .set({ ...tokens, lastLoginAt: now })
    .where(eq(externalIdentities.id, id))
}

/** The user's identity at this provider (one per provider and user is what the token API serves). */
export async function findUserIdentity(x: Executor, userId: string, provider: string) {
  const [row] = await x
    .select()
    .from(externalIdentities)
    .where(and(eq(externalIdentities.userId, userId), eq(externalIdentities.provider, provider)))
    .orderBy(externalIdentities.createdAt)
    .limit(1)
  return row
}

/**
 * Claims the right to refresh this identity's tokens until `until`: only when no other request
 * holds an unexpired lease and the token is still the one seen (`seenExpiresAt`). Single flight
 * in the database: of any number of concurrent callers, one gets the row.
 */
export async function claimRefreshLease(
  x: Executor,
  id: string,
  seenExpiresAt: Date,
  now: Date,
  until: Date,
) {
  const [row] = await x
    .update(externalIdentities)
    .set({ refreshLeaseUntil: until })
    .where(
      and(
        eq(externalIdentities.id, id),
        eq(externalIdentities.tokenExpiresAt, seenExpiresAt),
        isNull(externalIdentities.brokenAt),
        or(isNull(externalIdentities.refreshLeaseUntil), lt(externalIdentities.refreshLeaseUntil, now)),
      ),
    )
    .returning({ id: externalIdentities.id })
  return row !== undefined
}

export async function storeRefreshedTokens(x: Executor, id: string, tokens: Partial<NewExternalIdentity>) {
  await x.update(externalIdentities).set(tokens).where(eq(externalIdentities.id, id))
}

/** The provider refused the refresh: tokens deleted, the connection marked broken. */
export async function markIdentityBroken(x: Executor, id: string, now: Date) {
  await x
    .update(externalIdentities)
    .set({
      brokenAt: now,
      accessTokenSealed: null,
      refreshTokenSealed: null,
      tokenExpiresAt: null,
      refreshLeaseUntil: null,
    })
    .where(eq(externalIdentities.id, id))
}

export async function releaseRefreshLease(x: Executor, id: string) {
  await x.update(externalIdentities).set({ refreshLeaseUntil: null }).where(eq(externalIdentities.id, id))
}

export async function listIdentities(x: Executor, userId: string): Promise<ExternalIdentityRow[]> {
  return x
    .select()
    .from(externalIdentities)
    .where(eq(externalIdentities.userId, userId))
    .orderBy(externalIdentities.createdAt)
}

/**
 * Unlinks one identity of this user unless it is their last way to sign in: another identity, a
 * passkey, or a usable password (an argon2id or bcrypt hash, not the federated placeholder; not
 * at all when PASSWORD_LOGIN=off, `passwordCounts` false). One statement,
 * with its `identity_unlinked` audit row: the user's identity rows are locked first, so of two
 * concurrent unlinks of their last two identities the second re-reads the rows after the first
 * commits and finds one left.
 */
export async function unlinkIdentity(
  x: Executor,
  userId: string,
  identityId: string,
  ip: string | null,
  passwordCounts: boolean,
): Promise<'deleted' | 'not_found' | 'last_method'> {
  const rows = await queryRows<{ outcome: string }>(
    x,
    sql`
    with mine as (select id from ${externalIdentities} where user_id = ${userId} for update),
    account as (
      select tenant_id, (${passwordCounts} and password_hash like '$%') as has_password,
        exists (select 1 from ${passkeys} where ${passkeys.userId} = ${userId}) as has_passkey
      from ${users} where id = ${userId}
    ),
    allowed as (
      select id from mine where id = ${identityId}
        and (coalesce((select has_password or has_passkey from account), false) or (select count(*) from mine) > 1)
    ),
    gone as (
      delete from ${externalIdentities} where id in (select id from allowed) returning provider, subject
    ),
    audited as (
      insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
      select 'identity_unlinked', ${`user:${userId}`}, ${userId}, (select tenant_id from account), ${ip},
        jsonb_build_object('provider', g.provider, 'subject', g.subject)
      from gone g
    )
    select case
      when exists (select 1 from gone) then 'deleted'
      when exists (select 1 from mine where id = ${identityId}) then 'last_method'
      else 'not_found' end as outcome`,
  )
  const outcome = rows[0]?.outcome
  return outcome === 'deleted' || outcome === 'last_method' ? outcome : 'not_found'
}

export type AllowlistEntryRow = typeof identityAllowlist.$inferSelect

/** The first allowlist entry among these (kind, folded value) candidates; none → no row. */
export function selectAllowlistMatch(
  x: Executor,
  candidates: readonly { kind: AllowlistKind; value: string }[],
) {
  const pairs =
    candidates.length === 0 ? [sql`(null, null)`] : candidates.map((c) => sql`(${c.kind}, ${c.value})`)
  return x
    .select({ kind: identityAllowlist.kind })
    .from(identityAllowlist)
    .where(sql`(${identityAllowlist.kind}, ${identityAllowlist.value}) in (${sql.join(pairs, sql`, `)})`)
    .limit(1)
}

export function listAllowlist(x: Executor) {
  return x.select().from(identityAllowlist).orderBy(identityAllowlist.createdAt, identityAllowlist.id)
}

interface AllowlistRaw extends Record<string, unknown> {
  id: string
  kind: AllowlistKind
  value: string
  created_at: string | Date
}

function toEntry(row: AllowlistRaw): AllowlistEntryRow {
  return { id: row.id, kind: row.kind, value: row.value, createdAt: new Date(row.created_at) }
}

/**
 * Adds an entry with its `allowlist_entry_added` audit row, in one statement; undefined when the
 * (kind, value) is already listed (nothing written, nothing audited).
 */
export async function addAllowlistEntry(
  x: Executor,
  entry: { kind: AllowlistKind; value: string; now: Date },
  audit: { actor: string; ip: string | null },
): Promise<AllowlistEntryRow | undefined> {
  const [row] = await queryRows<AllowlistRaw>(
    x,
    sql`with ins as (
      insert into ${identityAllowlist} (kind, value, created_at) values (${entry.kind}, ${entry.value}, ${entry.now.toISOString()}::timestamptz)
      on conflict do nothing returning id, kind, value, created_at
    ), audited as (
      insert into audit_events (type, actor, ip, metadata)
      select 'allowlist_entry_added', ${audit.actor}, ${audit.ip}, jsonb_build_object('id', id, 'kind', kind, 'value', value)
      from ins
    ) select * from ins`,
  )
  return row === undefined ? undefined : toEntry(row)
}

/** Removes an entry with its `allowlist_entry_removed` audit row, in one statement. */
export async function removeAllowlistEntry(
  x: Executor,
  id: string,
  audit: { actor: string; ip: string | null },
): Promise<AllowlistEntryRow | undefined> {
  const [row] = await queryRows<AllowlistRaw>(
    x,
    sql`with gone as (
      delete from ${identityAllowlist} where id = ${id} returning id, kind, value, created_at
    ), audited as (
      insert into audit_events (type, actor, ip, metadata)
      select 'allowlist_entry_removed', ${audit.actor}, ${audit.ip}, jsonb_build_object('id', id, 'kind', kind, 'value', value)
      from gone
    ) select * from gone`,
  )
  return row === undefined ? undefined : toEntry(row)
}

/** Suspension: every stored upstream token of the user goes (the links stay, for reinstatement). */
export function clearUpstreamTokensStatement(x: Executor, userId: string) {
  return x
    .update(externalIdentities)
    .set({ accessTokenSealed: null, refreshTokenSealed: null, tokenExpiresAt: null, refreshLeaseUntil: null })
    .where(eq(externalIdentities.userId, userId))
}
