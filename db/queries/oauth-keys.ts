import { and, eq, lt, ne, sql } from 'drizzle-orm'
import type { Executor, HttpDb } from '../client'
import type { SigningAlgorithm } from '../schema'
import { signingKeys } from '../schema'

export type SigningKeyRow = typeof signingKeys.$inferSelect
export type NewSigningKey = typeof signingKeys.$inferInsert

/**
 * Keys that may belong in the JWKS: active, and retiring ones whose tokens may not all have
 * expired yet. One round trip.
 */
export async function loadPublishedKeys(x: Executor, now: Date): Promise<SigningKeyRow[]> {
  return x
    .select()
    .from(signingKeys)
    .where(
      sql`${signingKeys.status} = 'active' or (${signingKeys.status} = 'retiring' and ${signingKeys.retireAfter} > ${now})`,
    )
}

/** Marks retiring keys past `retireAfter` retired (they leave the JWKS). */
export async function retireExpiredKeys(x: Executor, now: Date): Promise<string[]> {
  const rows = await x
    .update(signingKeys)
    .set({ status: 'retired' })
    .where(and(eq(signingKeys.status, 'retiring'), lt(signingKeys.retireAfter, now)))
    .returning({ kid: signingKeys.kid })
  return rows.map((r) => r.kid)
}

export async function insertSigningKey(x: Executor, key: NewSigningKey): Promise<SigningKeyRow> {
  const [row] = await x.insert(signingKeys).values(key).returning()
  if (row === undefined) {
    throw new Error('insert into signing_keys returned nothing')
  }
  return row
}

/**
 * Moves every other active key of `alg` to `retiring`: it keeps signing until the new key
 * activates and stays published until `retireAfter` (when every token it signed has expired).
 */
export async function retireOtherKeys(
  x: Executor,
  alg: SigningAlgorithm,
  keepKid: string,
  retireAfter: Date,
): Promise<string[]> {
  const rows = await x
    .update(signingKeys)
    .set({ status: 'retiring', retireAfter })
    .where(and(eq(signingKeys.alg, alg), eq(signingKeys.status, 'active'), ne(signingKeys.kid, keepKid)))
    .returning({ kid: signingKeys.kid })
  return rows.map((r) => r.kid)
}

/**
 * Inserts `key` as the first active key of its algorithm unless one exists: a transaction-scoped
 * advisory lock per algorithm serialises concurrent first starts, so exactly one key is created
 * however many isolates find none at once. One round trip (a batch). True when it inserted.
 */
export async function insertFirstSigningKey(db: HttpDb, key: NewSigningKey): Promise<boolean> {
  const [, inserted] = await db.batch([
    db.execute(sql`select pg_advisory_xact_lock(hashtext(${`signing_keys:first:${key.alg}`}))`),
    db.execute(sql`insert into ${signingKeys} (kid, alg, public_jwk, private_jwk_encrypted, master_key_id,
        status, activates_at)
      select ${key.kid}, ${key.alg}, ${JSON.stringify(key.publicJwk)}::jsonb, ${key.privateJwkEncrypted},
        ${key.masterKeyId}, 'active', ${key.activatesAt ?? new Date()}::timestamptz
      where not exists (select 1 from ${signingKeys} where alg = ${key.alg} and status = 'active')`),
  ])
  return (inserted as { rowCount?: number | null }).rowCount === 1
}
