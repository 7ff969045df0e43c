import { and, eq, inArray, isNull, or, type SQL, type SQLWrapper, sql } from 'drizzle-orm'
import { type Executor, type HttpDb, queryRows } from '../client'
import { externalIdentities, identityProviders, signingKeys, userTotp } from '../schema'

/** The tables holding values sealed under MASTER_KEY. */
export const SEALED_TABLES = [
  'external_identities',
  'identity_providers',
  'user_totp',
  'signing_keys',
] as const
export type SealedTable = (typeof SEALED_TABLES)[number]

/** The key id of a `<key id>:<iv>.<ciphertext>` column. */
function keyIdOf(column: SQLWrapper): SQL {
  return sql`split_part(${column}, ':', 1)`
}

function list(values: readonly string[]): SQL {
  return sql.join(
    values.map((v) => sql`${v}`),
    sql`, `,
  )
}

/**
 * Up to `limit` rows of each table with a value under one of `olderKeys` (configured keys other
 * than the newest), as four statements for one batch. Rows under a key no longer configured are
 * not selected: nothing can open them.
 */
export function selectStaleStatements(db: HttpDb, olderKeys: readonly string[], limit: number) {
  return [
    db
      .select({
        id: externalIdentities.id,
        access: externalIdentities.accessTokenSealed,
        refresh: externalIdentities.refreshTokenSealed,
      })
      .from(externalIdentities)
      .where(
        or(
          inArray(keyIdOf(externalIdentities.accessTokenSealed), [...olderKeys]),
          inArray(keyIdOf(externalIdentities.refreshTokenSealed), [...olderKeys]),
        ),
      )
      .limit(limit),
    db
      .select({ id: identityProviders.id, secret: identityProviders.clientSecretSealed })
      .from(identityProviders)
      .where(inArray(keyIdOf(identityProviders.clientSecretSealed), [...olderKeys]))
      .limit(limit),
    db
      .select({ userId: userTotp.userId, masterKeyId: userTotp.masterKeyId, sealed: userTotp.secretSealed })
      .from(userTotp)
      .where(inArray(userTotp.masterKeyId, [...olderKeys]))
      .limit(limit),
    db
      .select({
        kid: signingKeys.kid,
        masterKeyId: signingKeys.masterKeyId,
        sealed: signingKeys.privateJwkEncrypted,
      })
      .from(signingKeys)
      .where(inArray(signingKeys.masterKeyId, [...olderKeys]))
      .limit(limit),
  ] as const
}

const same = (column: SQLWrapper, value: string | null): SQL =>
  value === null ? isNull(column) : sql`${column} = ${value}`

/**
 * The re-sealed values, each written only if the row still holds what was read (a refresh or a
 * re-enrolment in between wins; the next pass picks the row up again if it still needs it).
 */
export const resealStatements = {
  identity(
    x: Executor,
    id: string,
    before: { access: string | null; refresh: string | null },
    after: typeof before,
  ) {
    return x
      .update(externalIdentities)
      .set({ accessTokenSealed: after.access, refreshTokenSealed: after.refresh })
      .where(
        and(
          eq(externalIdentities.id, id),
          same(externalIdentities.accessTokenSealed, before.access),
          same(externalIdentities.refreshTokenSealed, before.refresh),
        ),
      )
      .returning({ id: externalIdentities.id })
  },
  provider(x: Executor, id: string, before: string, after: string) {
    return x
      .update(identityProviders)
      .set({ clientSecretSealed: after })
      .where(and(eq(identityProviders.id, id), eq(identityProviders.clientSecretSealed, before)))
      .returning({ id: identityProviders.id })
  },
  totp(x: Executor, userId: string, before: string, after: { masterKeyId: string; sealed: string }) {
    return x
      .update(userTotp)
      .set({ masterKeyId: after.masterKeyId, secretSealed: after.sealed })
      .where(and(eq(userTotp.userId, userId), eq(userTotp.secretSealed, before)))
      .returning({ id: userTotp.userId })
  },
  signingKey(x: Executor, kid: string, before: string, after: { masterKeyId: string; sealed: string }) {
    return x
      .update(signingKeys)
      .set({ masterKeyId: after.masterKeyId, privateJwkEncrypted: after.sealed })
      .where(and(eq(signingKeys.kid, kid), eq(signingKeys.privateJwkEncrypted, before)))
      .returning({ id: signingKeys.kid })
  },
}

/**
 * Per table: rows with a value under a configured key other than the newest (`stale`: a later
 * pass re-seals them) and under a key no longer configured (`unreadable`: nothing can open them).
 */
export async function countNotUnderNewest(
  x: Executor,
  newest: string,
  configured: readonly string[],
): Promise<Record<SealedTable, { stale: number; unreadable: number }>> {
  const older = configured.filter((k) => k !== newest)
  const known = list(configured)
  const stale = (column: SQL) => (older.length === 0 ? sql`false` : sql`${column} in (${list(older)})`)
  const lost = (column: SQL) => sql`${column} not in (${known})`
  const access = keyIdOf(externalIdentities.accessTokenSealed)
  const refresh = keyIdOf(externalIdentities.refreshTokenSealed)
  const secret = keyIdOf(identityProviders.clientSecretSealed)
  const rows = await queryRows<{ t: SealedTable; stale: number; unreadable: number }>(
    x,
    sql`select 'external_identities' as t,
        count(*) filter (where ${stale(access)} or ${stale(refresh)})::int as stale,
        count(*) filter (where ${lost(access)} or ${lost(refresh)})::int as unreadable
      from ${externalIdentities}
      union all
      select 'identity_providers', count(*) filter (where ${stale(secret)})::int, count(*) filter (where ${lost(secret)})::int
      from ${identityProviders}
      union all
      select 'user_totp', count(*) filter (where ${stale(sql`${userTotp.masterKeyId}`)})::int,
        count(*) filter (where ${lost(sql`${userTotp.masterKeyId}`)})::int
      from ${userTotp}
      union all
      select 'signing_keys', count(*) filter (where ${stale(sql`${signingKeys.masterKeyId}`)})::int,
        count(*) filter (where ${lost(sql`${signingKeys.masterKeyId}`)})::int
      from ${signingKeys}`,
  )
  const counts = Object.fromEntries(SEALED_TABLES.map((t) => [t, { stale: 0, unreadable: 0 }])) as Record<
    SealedTable,
    { stale: number; unreadable: number }
  >
  for (const row of rows) {
    counts[row.t] = { stale: Number(row.stale), unreadable: Number(row.unreadable) }
  }
  return counts
}
