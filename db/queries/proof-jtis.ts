import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'

/**
 * Spends a single-use proof identifier (a DPoP proof's `jti` at a resource, RFC 9449 §11.1):
 * true for the one caller whose insert wins, false for every replay, concurrent ones included
 * (they serialise on the primary key). One round trip.
 */
export async function spendProofJti(x: Executor, jtiHash: string, expiresAt: Date): Promise<boolean> {
  const rows = await queryRows<{ spent: number }>(
    x,
    sql`insert into used_proof_jtis (jti_hash, expires_at) values (${jtiHash}, ${expiresAt}::timestamptz)
        on conflict (jti_hash) do nothing
        returning 1 as spent`,
  )
  return rows.length === 1
}

/** `spendProofJti` as a statement for the caller's batch: one row when this spend won. */
export function spendProofJtiStatement(x: Executor, jtiHash: string, expiresAt: Date) {
  return x.execute(
    sql`insert into used_proof_jtis (jti_hash, expires_at) values (${jtiHash}, ${expiresAt}::timestamptz)
        on conflict (jti_hash) do nothing
        returning 1 as spent`,
  )
}
