import { and, eq, getTableColumns, lt, ne, sql } from 'drizzle-orm'
import type { Executor, HttpDb } from '../client'
import type { SigningAlgorithm } from '../schema'
import { signingKeys } from '../schema'

export type SigningKeyRow = typeof signingKeys.$inferSelect
export type NewSigningKey = typeof signingKeys.$inferInsert

/**
 * The key set's epoch as a column of another statement: the largest row version and the row count
 * of `signing_keys` (migration 0023), which change with every insert, update and delete. The grants
 * select it beside their own result so an isolate can confirm its cached ring without reading it
 * (`confirmKeyRing`). Null when the table is empty.
 */
export const KEY_EPOCH = sql<
  string | null
>`(select max(k.version) || '.' || count(*) from ${signingKeys} k)`.mapWith((value: unknown) =>
  value === null || value === undefined ? null : String(value),
)

/**
 * Keys that may belong in the JWKS: active, and retiring ones whose tokens may not all have
 * expired yet, with the key set's epoch (migration 0023) read in the same statement, so the
 * epoch names exactly this set. `epoch` is null when no key exists. One round trip.
 */
export async function loadPublishedKeys(
  x: Executor,
  now: Date,
): Promise<{ rows: SigningKeyRow[]; epoch: string | null }> {
  const found = await x
    .select({ ...getTableColumns(signingKeys), epoch: KEY_EPOCH })
    .from(signingKeys)
    .where(
      sql`${signingKeys.status} = 'active' or (${signingKeys.status} = 'retiring' and ${signingKeys.retireAfter} > ${now})`,
    )
  const rows = found.map(({ epoch: _epoch, ...row }) => row)
  return { rows, epoch: found[0]?.epoch ?? null }
}

/** Marks retiring keys past `retireAfter` retired (they leave the JWKS). */
export function retireExpiredKeysStatement(x: Executor, now: Date) {
  return x
    .update(signingKeys)
    .set({ status: 'retired' })
    .where(and(eq(signingKeys.status, 'retiring'), lt(signingKeys.retireAfter, now)))
    .returning({ kid: signingKeys.kid })
}

export async function retireExpiredKeys(x: Executor, now: Date): Promise<string[]> {
  const rows = await retireExpiredKeysStatement(x, now)
  return rows.map((r) => r.kid)
}

export function insertSigningKeyStatement(x: Executor, key: NewSigningKey) {
  return x.insert(signingKeys).values(key).returning()
}

/**
 * Moves every other active key of `alg` to `retiring`: it keeps signing until the new key
 * activates and stays published until `retireAfter` (when every token it signed has expired).
 */
export function retireOtherKeysStatement(
  x: Executor,
  alg: SigningAlgorithm,
  keepKid: string,
  retireAfter: Date,
) {
  return x
    .update(signingKeys)
    .set({ status: 'retiring', retireAfter })
    .where(and(eq(signingKeys.alg, alg), eq(signingKeys.status, 'active'), ne(signingKeys.kid, keepKid)))
    .returning({ kid: signingKeys.kid })
}

/**
 * The `signing_key_rotated` row for the rotation batch, naming the keys the batch's retire
 * statement moved to retiring (read back from their shared `retire_after`).
 */
export function signingKeyRotatedAuditStatement(
  x: Executor,
  event: { actor: string; ip: string | null; kid: string; alg: SigningAlgorithm; activatesAt: Date },
  retireAfter: Date,
) {
  return x.execute(sql`insert into audit_events (type, actor, ip, metadata)
    select 'signing_key_rotated', ${event.actor}, ${event.ip},
      jsonb_build_object('kid', ${event.kid}::text, 'alg', ${event.alg}::text,
        'activates_at', ${event.activatesAt.toISOString()}::text,
        'retiring', coalesce((select jsonb_agg(kid order by kid) from ${signingKeys}
          where alg = ${event.alg} and status = 'retiring' and kid <> ${event.kid}
            and retire_after = ${retireAfter.toISOString()}::timestamptz), '[]'::jsonb))`)
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
