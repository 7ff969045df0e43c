import { and, desc, eq, isNull, lt, or, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { oauthClients } from '../schema'
import type { OAuthClientRow } from './oauth-tokens'

export type NewOAuthClient = typeof oauthClients.$inferInsert

/** Inserts a client, as a statement for the caller's batch (so its audit event commits with it). */
export function insertClientStatement(x: Executor, client: NewOAuthClient) {
  return x.insert(oauthClients).values(client).returning()
}

/** The client with this public client_id (disabled ones included). One round trip. */
export async function findClient(x: Executor, clientId: string): Promise<OAuthClientRow | undefined> {
  const [row] = await x.select().from(oauthClients).where(eq(oauthClients.clientId, clientId)).limit(1)
  return row
}

/** `findClient` as a statement for the caller's batch (its first row is the client). */
export function findClientStatement(x: Executor, clientId: string) {
  return x.select().from(oauthClients).where(eq(oauthClients.clientId, clientId)).limit(1)
}

/** RFC 7592: the enabled client this registration access token manages. One round trip. */
export async function findClientForManagement(
  x: Executor,
  clientId: string,
  registrationAccessTokenHash: string,
): Promise<OAuthClientRow | undefined> {
  const [row] = await x
    .select()
    .from(oauthClients)
    .where(
      and(
        eq(oauthClients.clientId, clientId),
        eq(oauthClients.registrationAccessTokenHash, registrationAccessTokenHash),
        isNull(oauthClients.disabledAt),
      ),
    )
    .limit(1)
  return row
}

/** Updates a client's columns (and `updated_at`), as a statement for the caller's batch. */
export function updateClientStatement(x: Executor, id: string, fields: Partial<NewOAuthClient>) {
  return x
    .update(oauthClients)
    .set({ ...fields, updatedAt: sql`now()` })
    .where(eq(oauthClients.id, id))
    .returning()
}

/** Deletes a client (its codes, tokens and consents cascade), as a statement for the caller's batch. */
export function deleteClientStatement(x: Executor, id: string) {
  return x.delete(oauthClients).where(eq(oauthClients.id, id)).returning({ id: oauthClients.id })
}

/** Disables a client (its tokens stop verifying, it can no longer authenticate), for a batch. */
export function disableClientStatement(x: Executor, clientId: string, now: Date) {
  return x
    .update(oauthClients)
    .set({ disabledAt: sql`coalesce(${oauthClients.disabledAt}, ${now})`, updatedAt: now })
    .where(eq(oauthClients.clientId, clientId))
    .returning()
}

/**
 * The `client_disabled` audit row for the batch that disables the client: read from the row the
 * disable statement just wrote (its tenant), nothing when no such client exists.
 */
export function clientDisabledAuditStatement(
  x: Executor,
  clientId: string,
  actor: string,
  ip: string | null,
) {
  return x.execute(sql`insert into audit_events (type, actor, tenant_id, client_id, ip, metadata)
    select 'client_disabled', ${actor}, tenant_id, client_id, ${ip}, '{}'::jsonb
    from oauth_clients where client_id = ${clientId}`)
}

export interface ClientCursor {
  createdAt: Date
  id: string
}

/** Newest first, keyset-paginated on (created_at, id). */
export async function listClients(
  x: Executor,
  limit: number,
  cursor: ClientCursor | undefined,
): Promise<OAuthClientRow[]> {
  return x
    .select()
    .from(oauthClients)
    .where(
      cursor === undefined
        ? undefined
        : or(
            lt(oauthClients.createdAt, cursor.createdAt),
            and(eq(oauthClients.createdAt, cursor.createdAt), lt(oauthClients.id, cursor.id)),
          ),
    )
    .orderBy(desc(oauthClients.createdAt), desc(oauthClients.id))
    .limit(limit)
}
