import { sql } from 'drizzle-orm'
import type { BatchItem } from 'drizzle-orm/batch'
import { type Executor, type HttpDb, queryRows } from '../client'
import { type RegisteredAssertionKey, stillRegistered } from './oauth-grants'

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

/**
 * Spends a verified `private_key_jwt` assertion's `jti` (RFC 7523 §3) only while its client is
 * enabled (in an active tenant), still `private_key_jwt` and still registers the key that
 * verified it: a statement for the caller's batch, one row when this spend authenticated.
 */
export function spendAssertionJtiStatement(
  x: Executor,
  input: { clientId: string; jtiHash: string; expiresAt: Date; key: RegisteredAssertionKey },
) {
  return x.execute(
    sql`insert into used_proof_jtis (jti_hash, expires_at)
        select ${input.jtiHash}, ${input.expiresAt}::timestamptz from oauth_clients
        where client_id = ${input.clientId} and disabled_at is null and token_endpoint_auth_method = 'private_key_jwt'
          and exists (select 1 from tenants t where t.id = oauth_clients.tenant_id and t.active)
          and ${stillRegistered(input.key)}
        on conflict (jti_hash) do nothing
        returning 1 as spent`,
  )
}

/** Whether a spend statement's result (from a batch) says this spend won. */
export function spendWon(result: unknown): boolean {
  return ((result as { rows?: unknown[] } | undefined)?.rows ?? []).length > 0
}

/**
 * Runs `query` and, when there is a proof, spends its `jti` in the same batch (still one round
 * trip): the query's rows, and whether the spend won (true without a proof).
 */
export async function withProofSpent<T>(
  x: HttpDb,
  query: BatchItem<'pg'> & PromiseLike<T>,
  proof: { jtiHash: string; expiresAt: Date } | null,
): Promise<{ result: T; proofSpent: boolean }> {
  if (proof === null) {
    return { result: await query, proofSpent: true }
  }
  const [result, spent] = await x.batch([query, spendProofJtiStatement(x, proof.jtiHash, proof.expiresAt)])
  return { result: result as T, proofSpent: spendWon(spent) }
}
