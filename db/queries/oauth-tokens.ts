import { eq, getTableColumns, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { oauthClients, revokedAccessTokens } from '../schema'
import { isUuid } from '../uuid'
import { KEY_EPOCH } from './oauth-keys'

export type OAuthClientRow = typeof oauthClients.$inferSelect

export interface AccessTokenState {
  /** The client row named by `clientId` (the caller for introspection, else the token's own). */
  client: OAuthClientRow
  revoked: boolean
  userStatus: string | null
  userTenantId: string | null
  userIsAdmin: boolean | null
  /**
   * The user's `tokens_valid_after` as whole epoch seconds (floored): access tokens with `iat` at
   * or before it are dead. Null when no credential event ended the user's tokens.
   */
  userTokensValidAfter: number | null
  /** The token's client (may differ from `client` during introspection). */
  tokenClientDisabled: boolean | null
  tokenClientTenantId: string | null
  /** Whether the token's client's tenant is active (issue 10: a deactivated tenant's tokens stop). */
  tokenTenantActive: boolean | null
  /**
   * The tenant's last deactivation as whole epoch seconds (floored): its clients' access tokens
   * with `iat` at or before it stay dead after a reactivation. Null when never deactivated.
   */
  tokenTenantValidAfter: number | null
}

/**
 * Everything an access-token check needs, as one statement for the caller's batch (its first
 * row is the state): a client row, whether the jti is revoked, the user's status (a suspended
 * user's tokens stop working) and the token's client. The state is
 * `portcullis_access_token_state` (migration 0024), whose plans each backend prepares once; no
 * row when `clientId` names no client. With the signing-key set's epoch, which introspection
 * confirms its key ring with (`confirmedClaims`).
 */
export function accessTokenStateStatement(
  x: Executor,
  input: { clientId: string; jti: string; userId: string | null; tokenClientId: string },
) {
  const userId = input.userId !== null && isUuid(input.userId) ? input.userId : null
  return x
    .select({
      client: getTableColumns(oauthClients),
      revoked: sql<boolean>`s.revoked`,
      userStatus: sql<string | null>`s.user_status`,
      userTenantId: sql<string | null>`s.user_tenant_id`,
      userIsAdmin: sql<boolean | null>`s.user_is_admin`,
      userTokensValidAfter: sql<number | null>`s.user_tokens_valid_after`,
      tokenClientDisabled: sql<boolean | null>`s.token_client_disabled`,
      tokenClientTenantId: sql<string | null>`s.token_client_tenant_id`,
      tokenTenantActive: sql<boolean | null>`s.token_tenant_active`,
      tokenTenantValidAfter: sql<number | null>`s.token_tenant_valid_after`,
      keyEpoch: KEY_EPOCH,
    })
    .from(oauthClients)
    .crossJoin(
      sql`portcullis_access_token_state(${input.jti}::text, ${userId}::uuid, ${input.tokenClientId}::text) s`,
    )
    .where(eq(oauthClients.clientId, input.clientId))
    .limit(1)
}

/**
 * The database half of an access-token check as one SQL predicate, for folding into a hot-path
 * statement: `portcullis_access_token_live` (migration 0022, planned once per backend): the jti
 * is not revoked, the token's client is enabled and its tenant active (and not deactivated since
 * the token's `iat` second), and (user tokens) the user is active and the token was issued after
 * the user's last credential event (`iat` strictly after the second of `tokens_valid_after`).
 * Same rules as `accessTokenStateStatement` + `principalFromState`.
 */
export function accessTokenStillValid(input: {
  jti: string
  tokenClientId: string
  userId: string | null
  /** The token's `iat`, epoch seconds. */
  issuedAt: number
}): SQL {
  // A user's token whose subject is no user id of ours speaks for nobody.
  if (input.userId !== null && !isUuid(input.userId)) {
    return sql`false`
  }
  return sql`portcullis_access_token_live(${input.jti}::text, ${input.tokenClientId}::text,
    ${input.userId}::uuid, ${issuedAtSeconds(input.issuedAt)}::bigint)`
}

/**
 * A token's `iat` as the liveness check takes it: whole epoch seconds. jose only checks that it
 * is a number; anything else counts as issued at 0, older than any credential event.
 */
export function issuedAtSeconds(iat: number): number {
  return Number.isSafeInteger(iat) ? iat : 0
}

/** The same insert as a statement for the caller's batch (with its audit row). */
export function revokeAccessTokenStatement(x: Executor, jti: string, expiresAt: Date) {
  return x.insert(revokedAccessTokens).values({ jti, expiresAt }).onConflictDoNothing()
}

/** Remembers a revoked access token until it would have expired anyway. One round trip. */
export async function revokeAccessToken(x: Executor, jti: string, expiresAt: Date): Promise<void> {
  await x.insert(revokedAccessTokens).values({ jti, expiresAt }).onConflictDoNothing()
}
