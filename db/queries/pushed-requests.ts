import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import { type authorizationCodes, pushedAuthorizationRequests } from '../schema'

/**
 * Stores a pushed authorization request (RFC 9126 §2.2). With a DPoP proof (RFC 9449 §10.1) its
 * `jti` is spent in the same statement and nothing is stored when it was already used (false).
 * One round trip.
 */
export async function insertPushedRequest(
  x: Executor,
  row: { requestUriHash: string; clientId: string; params: Record<string, string>; expiresAt: Date },
  proof: { jtiHash: string; expiresAt: Date } | null,
): Promise<boolean> {
  if (proof === null) {
    await x.insert(pushedAuthorizationRequests).values(row)
    return true
  }
  const rows = await queryRows<{ id: string }>(
    x,
    sql`with spent as (
      insert into used_proof_jtis (jti_hash, expires_at) values (${proof.jtiHash}, ${proof.expiresAt}::timestamptz)
      on conflict (jti_hash) do nothing
      returning 1
    )
    insert into pushed_authorization_requests (request_uri_hash, client_id, params, expires_at)
    select ${row.requestUriHash}, ${row.clientId}::uuid, ${JSON.stringify(row.params)}::jsonb, ${row.expiresAt}::timestamptz
    where exists (select 1 from spent)
    returning id::text`,
  )
  return rows.length === 1
}

/**
 * The live, unused pushed request behind a `request_uri` hash, for the client (public
 * `client_id`) that pushed it. Undefined: unknown, expired, used or another client's. One round trip.
 */
export async function findPushedRequest(
  x: Executor,
  requestUriHash: string,
  clientId: string,
  now: Date,
): Promise<{ id: string; params: Record<string, string>; createdAt: Date } | undefined> {
  const [row] = await queryRows<{ id: string; params: Record<string, string>; created_at: string | Date }>(
    x,
    sql`select p.id::text as id, p.params, p.created_at from pushed_authorization_requests p
        join oauth_clients c on c.id = p.client_id
        where p.request_uri_hash = ${requestUriHash} and c.client_id = ${clientId}
          and p.consumed_at is null and p.expires_at > ${now}`,
  )
  return row === undefined
    ? undefined
    : { id: row.id, params: row.params, createdAt: new Date(row.created_at) }
}

/**
 * Issues a code for a pushed request in ONE statement that spends the request (RFC 9126 §4: a
 * `request_uri` is used once): concurrent completions serialise on the row, one code at most.
 * False: the request was already used or has expired, and no code exists.
 */
export async function insertCodeSpendingPushedRequest(
  x: Executor,
  pushedId: string,
  code: typeof authorizationCodes.$inferInsert,
  now: Date,
): Promise<boolean> {
  const rows = await queryRows<{ id: string }>(
    x,
    sql`with spent as (
      update pushed_authorization_requests set consumed_at = ${now}
      where id = ${pushedId}::uuid and consumed_at is null and expires_at > ${now}
      returning id
    )
    insert into authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, resource, nonce,
      code_challenge, code_challenge_method, auth_time, amr, dpop_jkt, expires_at)
    select ${code.codeHash}, ${code.clientId}::uuid, ${code.userId}::uuid, ${code.redirectUri}, ${code.scope ?? ''},
      ${code.resource ?? null}::text, ${code.nonce ?? null}::text, ${code.codeChallenge}, 'S256',
      ${code.authTime}::timestamptz, string_to_array(${(code.amr ?? ['pwd']).join(' ')}::text, ' '), ${code.dpopJkt ?? null}::text,
      ${code.expiresAt}::timestamptz
    from spent
    returning id::text`,
  )
  return rows.length === 1
}
