import { and, eq, type SQL, sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import { authorizationCodes, deviceCodes, oauthConsents } from '../schema'
import { KEY_EPOCH } from './oauth-keys'
import { issuedAtSeconds } from './oauth-tokens'

/**
 * The client as it presented itself at the token endpoint. The grant statement authenticates it
 * (issue 16: one statement per successful grant): enabled, registered for this grant type and
 * this authentication method, and the SHA-256 of the presented secret equal to the stored one
 * (a hash of a 256-bit secret, so comparing it in SQL reveals nothing usable).
 */
export interface PresentedClient {
  clientId: string
  /** `private_key_jwt` only after the request verified the assertion and spent its jti. */
  method: 'client_secret_basic' | 'client_secret_post' | 'none' | 'private_key_jwt'
  /** SHA-256 hex of the presented secret; null for a public client. */
  secretHash: string | null
  grantType: string
  /**
   * A checked DPoP proof (RFC 9449), or null. The grant statement spends its `jti` first and
   * authenticates the client only if that insert won, so a replayed proof issues nothing; without
   * a proof, a client registered with `dpop_bound_access_tokens` does not authenticate either.
   */
  dpop: { jkt: string; jtiHash: string; expiresAt: Date } | null
  /**
   * `private_key_jwt`: the verified assertion (RFC 7523 §3). The statement spends its `jti` only
   * while the client is enabled and still registers the key that verified it, and authenticates
   * the client only if that insert won (a replay, concurrent ones included, issues nothing).
   */
  assertion?: { jtiHash: string; expiresAt: Date; key: RegisteredAssertionKey }
}

/** The registered key a `private_key_jwt` assertion was verified with (client-assertion.ts). */
export type RegisteredAssertionKey = { kind: 'jwk'; jwk: object } | { kind: 'jwks_uri'; uri: string }

/** The authenticated client's columns a grant needs. */
export interface GrantClient {
  id: string
  clientId: string
  tenantId: string
  scope: string
  grantTypes: string[]
  tokenEndpointAuthMethod: string
  idTokenSignedResponseAlg: string
}

/** Where audit rows of a grant statement come from (the request's address). */
export interface GrantAudit {
  ip: string | null
}

/**
 * An `oauth_clients` row still registers this key: the JWK among its `jwks` (containment, so
 * other keys may come and go), or the same `jwks_uri`.
 */
export function stillRegistered(key: RegisteredAssertionKey): SQL {
  return key.kind === 'jwk'
    ? sql`metadata->'jwks'->'keys' @> ${JSON.stringify([key.jwk])}::jsonb`
    : sql`metadata->>'jwks_uri' = ${key.uri}`
}

/**
 * The presented client as `portcullis_authenticate_client` (migration 0020) and the grant
 * functions take it, by name: the helper spends the DPoP proof's jti, checks the client and spends
 * the assertion's jti; the grant functions pass these on to it.
 */
function clientArgs(p: PresentedClient, now: Date): SQL {
  const key = p.assertion?.key
  return sql`p_client_id => ${p.clientId}::text, p_method => ${p.method}::text,
      p_secret_hash => ${p.secretHash}::text,
      p_dpop_jti_hash => ${p.dpop?.jtiHash ?? null}::text,
      p_dpop_expires_at => ${p.dpop?.expiresAt.toISOString() ?? null}::timestamptz,
      p_assertion_jti_hash => ${p.assertion?.jtiHash ?? null}::text,
      p_assertion_expires_at => ${p.assertion?.expiresAt.toISOString() ?? null}::timestamptz,
      p_assertion_jwk => ${key?.kind === 'jwk' ? JSON.stringify(key.jwk) : null}::jsonb,
      p_assertion_jwks_uri => ${key?.kind === 'jwks_uri' ? key.uri : null}::text,
      p_now => ${now.toISOString()}::timestamptz`
}

/** The grant functions' arguments: the presented client and the usage counter's hour. */
function grantArgs(p: PresentedClient, now: Date): SQL {
  return sql`${clientArgs(p, now)}, p_hour_start => ${hourStart(now).toISOString()}::timestamptz`
}

/** The start of `now`'s UTC hour (the usage counters' bucket). */
export function hourStart(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000)
}

/**
 * A refused token request of an agent client counts a failure in its hourly counter (issue 15),
 * as a statement for the failure path's batch; nothing for an unknown client or one of another
 * method.
 */
export function clientFailureStatement(
  x: Executor,
  input: { clientId: string; grantType: string; now: Date },
) {
  return x.execute(
    sql`insert into oauth_client_usage_counters as u (client_id, hour_start, grant_type, success, failure, last_used_at)
        select id, ${hourStart(input.now)}::timestamptz, ${input.grantType}, 0, 1, ${input.now}::timestamptz
        from oauth_clients where client_id = ${input.clientId} and token_endpoint_auth_method = 'private_key_jwt'
        on conflict (client_id, hour_start, grant_type)
        do update set failure = u.failure + 1, last_used_at = greatest(u.last_used_at, excluded.last_used_at)`,
  )
}

function toGrantClient(row: Record<string, unknown>): GrantClient {
  return {
    id: String(row.cl_id),
    clientId: String(row.cl_client_id),
    tenantId: String(row.cl_tenant_id),
    scope: String(row.cl_scope),
    grantTypes: String(row.cl_grant_types).split(' ').filter(Boolean),
    tokenEndpointAuthMethod: String(row.cl_method),
    idTokenSignedResponseAlg: String(row.cl_alg),
  }
}

/**
 * What a grant statement read of the signing-key set's epoch (`KEY_EPOCH`, migration 0023) beside
 * its own result. The handler hands it to `confirmKeyRing` before it signs, so a cached ring of
 * that epoch costs no second round trip.
 */
export interface KeyEpochSeen {
  keyEpoch: string | null
}

function keyEpochOf(row: Record<string, unknown>): string | null {
  return row.key_epoch === null || row.key_epoch === undefined ? null : String(row.key_epoch)
}

/** The user behind a grant, as the token response needs it (id_token claims). */
export interface Grantee {
  userId: string
  status: string
  email: string
  displayName: string | null
  emailVerified: boolean
  /** Seconds since the epoch. */
  authTime: number | null
  /**
   * How the user authenticated (OIDC `amr`), when the grant recorded it: authorization codes do,
   * and their refresh tokens carry it through every rotation (issue 14).
   */
  amr?: string[]
  /**
   * The user's last credential event (`tokens_valid_after`), whole epoch seconds (floored):
   * access tokens must be issued after this second to be accepted. Null: none yet.
   */
  tokensValidAfter: number | null
}

/**
 * One grant identity for every grant type: a grant is named by the row that started it (the
 * authorization code's id, the device code's id). That id is the `family_id` of every refresh
 * token of the grant and the `jti` of its first access token; later access tokens carry the id of
 * the refresh token minted with them. Revoking a family therefore revokes, by jti, the grant id
 * and every member id: every access token the grant ever issued (RFC 7009 §2.1, RFC 9700 §4.14.2).
 */
export interface NewRefreshToken {
  id: string
  tokenHash: string
  expiresAt: Date
}

export type NewAuthorizationCode = typeof authorizationCodes.$inferInsert

export async function insertAuthorizationCode(x: Executor, code: NewAuthorizationCode): Promise<void> {
  await x.insert(authorizationCodes).values(code)
}

export interface ConsumedCode extends Grantee {
  codeId: string
  redirectUri: string
  scope: string
  resource: string | null
  nonce: string | null
  codeChallenge: string
  refreshIssued: boolean
}

/**
 * RFC 6749 §4.1.3 in ONE statement, `portcullis_exchange_authorization_code` (migration 0021, a
 * PL/pgSQL function so its plan is prepared once per backend): authenticates the client, consumes
 * its unexpired, unused code
 * and, when PKCE, redirect URI and user status all hold, starts a refresh-token family (if the
 * client uses refresh tokens) and writes `token_issued`. Concurrent calls serialise on the code
 * row: exactly one sees `consumed_at is null`. No row: the client did not authenticate; a row
 * without `code`: the code was not consumed.
 */
export async function consumeAuthorizationCode(
  x: Executor,
  input: {
    client: PresentedClient
    codeHash: string
    codeChallenge: string
    redirectUri: string | null
    refresh: NewRefreshToken
    audit: GrantAudit
    now: Date
  },
): Promise<({ client: GrantClient; code: ConsumedCode | undefined } & KeyEpochSeen) | undefined> {
  const refresh = input.refresh
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select *, ${KEY_EPOCH} as key_epoch from portcullis_exchange_authorization_code(${grantArgs(input.client, input.now)},
      p_dpop_jkt => ${input.client.dpop?.jkt ?? null}::text,
      p_code_hash => ${input.codeHash}::text, p_code_challenge => ${input.codeChallenge}::text,
      p_redirect_uri => ${input.redirectUri}::text,
      p_refresh_id => ${refresh.id}::uuid, p_refresh_token_hash => ${refresh.tokenHash}::text,
      p_refresh_expires_at => ${refresh.expiresAt.toISOString()}::timestamptz, p_ip => ${input.audit.ip}::text)`,
  )
  if (row === undefined) {
    return undefined
  }
  const client = toGrantClient(row)
  const keyEpoch = keyEpochOf(row)
  if (row.code_id === null || row.code_id === undefined) {
    return { client, code: undefined, keyEpoch }
  }
  return {
    client,
    keyEpoch,
    code: {
      codeId: String(row.code_id),
      userId: String(row.user_id),
      redirectUri: String(row.redirect_uri),
      scope: String(row.scope),
      resource: row.resource === null ? null : String(row.resource),
      nonce: row.nonce === null ? null : String(row.nonce),
      codeChallenge: String(row.code_challenge),
      status: String(row.status),
      email: String(row.email),
      displayName: row.display_name === null ? null : String(row.display_name),
      emailVerified: row.email_verified === true,
      tokensValidAfter: row.tokens_valid_after == null ? null : Number(row.tokens_valid_after),
      authTime: row.auth_time === null ? null : Number(row.auth_time),
      ...(Array.isArray(row.amr) ? { amr: row.amr.map(String) } : {}),
      refreshIssued: Number(row.refresh_issued) > 0,
    },
  }
}

/**
 * RFC 6749 §10.5 / RFC 9700 §4.5: a code presented again revokes what its first exchange
 * issued (the refresh family and every access token of the grant) and records
 * `code_replay_detected`, in one statement; returns whether the code had been used, and whether
 * it is live but bound to a DPoP key (RFC 9449 §10) the request's proof did not match.
 */
export async function revokeReplayedCode(
  x: Executor,
  input: { codeHash: string; client: GrantClient; audit: GrantAudit; now: Date; accessTokensExpireBy: Date },
): Promise<{ replayed: boolean; keyBound: boolean; codeId: string | null; revokedRefreshTokens: number }> {
  const { now, accessTokensExpireBy } = input
  const [row] = await queryRows<{ code_id: string | null; revoked: number; key_bound: boolean }>(
    x,
    sql`with code as (
      select id from authorization_codes where code_hash = ${input.codeHash} and consumed_at is not null
    ), family as (
      update refresh_tokens set revoked_at = ${now}
      where (family_id in (select id from code) or authorization_code_id in (select id from code))
        and revoked_at is null
      returning id
    ), revoked as (
      insert into revoked_access_tokens (jti, expires_at)
      select id::text, ${accessTokensExpireBy}::timestamptz from code
      union all select id::text, ${accessTokensExpireBy}::timestamptz from family
      on conflict (jti) do nothing
      returning jti
    ), audited as (
      insert into audit_events (type, actor, tenant_id, client_id, ip, metadata)
      select 'code_replay_detected', ${`client:${input.client.clientId}`}, ${input.client.tenantId}::uuid,
             ${input.client.clientId}, ${input.audit.ip},
             jsonb_build_object('code_id', code.id, 'revoked_refresh_tokens', (select count(*) from family))
      from code
      returning id
    )
    select (select id::text from code) as code_id, (select count(*) from family)::int as revoked,
           (select count(*) from revoked)::int as revoked_access,
           exists (select 1 from authorization_codes where code_hash = ${input.codeHash} and consumed_at is null
                   and client_id = ${input.client.id}::uuid and expires_at > ${now} and dpop_jkt is not null) as key_bound`,
  )
  return {
    keyBound: row?.key_bound === true,
    replayed: row?.code_id !== null && row?.code_id !== undefined,
    codeId: row?.code_id ?? null,
    revokedRefreshTokens: Number(row?.revoked ?? 0),
  }
}

export interface RotatedRefresh extends Grantee {
  previousId: string
  familyId: string
  scope: string
  resource: string | null
}

/**
 * Refresh rotation in ONE statement, `portcullis_rotate_refresh_token` (migration 0020, a
 * PL/pgSQL function so its plan is prepared once per backend): authenticates the client, marks its
 * live token (active user, scope not widened) replaced, inserts the successor in the same family
 * and writes `token_issued`. Concurrent uses serialise on the row: exactly one finds
 * `replaced_by is null`. No row: the client did not authenticate; `rotated` undefined: the token
 * did not rotate.
 */
export async function rotateRefreshToken(
  x: Executor,
  input: {
    client: PresentedClient
    tokenHash: string
    requestedScope: string
    /** The audience a `resource` parameter named (it must be the grant's), or null. */
    target: AudienceTarget | null
    next: NewRefreshToken
    audit: GrantAudit
    now: Date
  },
): Promise<({ client: GrantClient; rotated: RotatedRefresh | undefined } & KeyEpochSeen) | undefined> {
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select *, ${KEY_EPOCH} as key_epoch from portcullis_rotate_refresh_token(${grantArgs(input.client, input.now)},
      p_dpop_jkt => ${input.client.dpop?.jkt ?? null}::text,
      p_token_hash => ${input.tokenHash}::text, p_requested_scope => ${input.requestedScope}::text,
      p_target_identifier => ${input.target?.identifier ?? null}::text,
      p_target_fallback => ${input.target?.fallback ?? null}::text,
      p_next_id => ${input.next.id}::uuid, p_next_token_hash => ${input.next.tokenHash}::text,
      p_next_expires_at => ${input.next.expiresAt.toISOString()}::timestamptz, p_ip => ${input.audit.ip}::text)`,
  )
  if (row === undefined) {
    return undefined
  }
  const client = toGrantClient(row)
  const keyEpoch = keyEpochOf(row)
  if (row.previous_id === null || row.previous_id === undefined) {
    return { client, rotated: undefined, keyEpoch }
  }
  return {
    client,
    keyEpoch,
    rotated: {
      previousId: String(row.previous_id),
      familyId: String(row.family_id),
      userId: String(row.user_id),
      scope: String(row.scope),
      resource: row.resource === null ? null : String(row.resource),
      status: String(row.status),
      email: String(row.email),
      displayName: row.display_name === null ? null : String(row.display_name),
      emailVerified: row.email_verified === true,
      tokensValidAfter: row.tokens_valid_after == null ? null : Number(row.tokens_valid_after),
      authTime: row.auth_time === null ? null : Number(row.auth_time),
      ...(Array.isArray(row.amr) ? { amr: row.amr.map(String) } : {}),
    },
  }
}

export type RefreshFailure =
  | 'unknown'
  | 'reused'
  | 'revoked'
  | 'expired'
  | 'user_inactive'
  | 'dpop_key_mismatch'
  | 'resource_mismatch'
  | 'scope_widened'

/** A requested audience, and what a grant with no `resource` of its own stands for. */
export interface AudienceTarget {
  /** One identifier, or several joined by spaces (issue 11): each must be among the grant's. */
  identifier: string
  /** DEFAULT_AUDIENCE, else the issuer: the audience of a grant that named no resource. */
  fallback: string
}

// True when there is no target, or the grant's resource (or the fallback) is it: checked inside
// the rotation, so a refresh naming another resource leaves the token unrotated.
function targetMatches(resource: SQL, target: AudienceTarget | null): SQL {
  return target === null
    ? sql`true`
    : sql`string_to_array(coalesce(nullif(${resource}, ''), ${target.fallback}), ' ') @> string_to_array(${target.identifier}, ' ')`
}

/**
 * Why a refresh token did not rotate. A rotated token presented again means it leaked: the
 * whole family and its access tokens are revoked, and `refresh_token_reuse_detected` written, in
 * the same statement (RFC 9700 §4.14.2).
 */
export async function explainRefreshFailure(
  x: Executor,
  input: {
    tokenHash: string
    client: GrantClient
    /** Thumbprint of the key the request's DPoP proof was signed with, or null. */
    dpopJkt: string | null
    target: AudienceTarget | null
    audit: GrantAudit
    now: Date
    accessTokensExpireBy: Date
  },
): Promise<{ failure: RefreshFailure; familyId: string | null; userId: string | null; revoked: number }> {
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`with tok as (
      select r.family_id, r.user_id, r.replaced_by, r.revoked_at, r.expires_at > ${input.now} as live, u.status,
             r.dpop_jkt is not null and r.dpop_jkt is distinct from ${input.dpopJkt}::text as key_mismatch,
             not ${targetMatches(sql`r.resource`, input.target)} as resource_mismatch
      from refresh_tokens r join users u on u.id = r.user_id
      where r.token_hash = ${input.tokenHash} and r.client_id = ${input.client.id}
    ), family as (
      update refresh_tokens set revoked_at = ${input.now}
      where family_id in (select family_id from tok where replaced_by is not null) and revoked_at is null
      returning id, family_id, authorization_code_id
    ), revoked as (
      insert into revoked_access_tokens (jti, expires_at)
      select id::text, ${input.accessTokensExpireBy}::timestamptz from family
      union select family_id::text, ${input.accessTokensExpireBy}::timestamptz from family
      union select authorization_code_id::text, ${input.accessTokensExpireBy}::timestamptz from family where authorization_code_id is not null
      on conflict (jti) do nothing
      returning jti
    ), audited as (
      insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
      select 'refresh_token_reuse_detected', ${`client:${input.client.clientId}`}, tok.user_id,
             ${input.client.tenantId}::uuid, ${input.client.clientId}, ${input.audit.ip},
             jsonb_build_object('family_id', tok.family_id, 'revoked_refresh_tokens', (select count(*) from family))
      from tok where tok.replaced_by is not null
      returning id
    )
    select tok.family_id::text as family_id, tok.user_id::text as user_id, tok.replaced_by is not null as replaced,
           tok.revoked_at is not null as revoked_before, tok.live, tok.status, tok.key_mismatch, tok.resource_mismatch,
           (select count(*) from family)::int as revoked, (select count(*) from revoked)::int as revoked_access
    from tok`,
  )
  if (row === undefined) {
    return { failure: 'unknown', familyId: null, userId: null, revoked: 0 }
  }
  const failure: RefreshFailure =
    row.replaced === true
      ? 'reused'
      : row.revoked_before === true
        ? 'revoked'
        : row.live !== true
          ? 'expired'
          : row.status !== 'active'
            ? 'user_inactive'
            : row.key_mismatch === true
              ? 'dpop_key_mismatch'
              : row.resource_mismatch === true
                ? 'resource_mismatch'
                : 'scope_widened'
  return {
    failure,
    familyId: String(row.family_id),
    userId: String(row.user_id),
    revoked: Number(row.revoked),
  }
}

/**
 * RFC 7009 for refresh tokens: revokes the token's family (every token of the grant) and every
 * access token the grant issued, and writes `token_revoked`, in one statement. Only the owning
 * client may. Returns how many refresh tokens it revoked.
 */
export async function revokeRefreshFamily(
  x: Executor,
  input: {
    tokenHash: string
    client: { id: string; clientId: string; tenantId: string }
    audit: GrantAudit
    now: Date
    accessTokensExpireBy: Date
  },
): Promise<number> {
  const { now, accessTokensExpireBy, client } = input
  const [row] = await queryRows<{ revoked: number }>(
    x,
    sql`with tok as (
      select family_id, user_id from refresh_tokens where token_hash = ${input.tokenHash} and client_id = ${client.id}
    ), family as (
      update refresh_tokens set revoked_at = ${now}
      where family_id in (select family_id from tok) and revoked_at is null
      returning id, family_id, authorization_code_id
    ), revoked as (
      insert into revoked_access_tokens (jti, expires_at)
      select id::text, ${accessTokensExpireBy}::timestamptz from family
      union select family_id::text, ${accessTokensExpireBy}::timestamptz from family
      union select authorization_code_id::text, ${accessTokensExpireBy}::timestamptz from family where authorization_code_id is not null
      on conflict (jti) do nothing
      returning jti
    ), audited as (
      insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
      select 'token_revoked', ${`client:${client.clientId}`}, tok.user_id, ${client.tenantId}::uuid, ${client.clientId},
             ${input.audit.ip},
             jsonb_build_object('token_type', 'refresh_token', 'family_id', tok.family_id,
                                'revoked_refresh_tokens', (select count(*) from family))
      from tok where exists (select 1 from family)
      returning id
    )
    select (select count(*) from family)::int as revoked`,
  )
  return Number(row?.revoked ?? 0)
}

/** A live refresh token as introspection reports it. */
export interface LiveRefreshToken {
  id: string
  user_id: string
  scope: string
  resource: string | null
  exp: number
  iat: number
}

/**
 * RFC 7662 for refresh tokens: the live token issued to the client with this public client_id,
 * its user active. A statement for the caller's batch (with the client lookup); `liveRefreshToken`
 * reads its result.
 */
export function findLiveRefreshTokenStatement(x: Executor, tokenHash: string, clientId: string, now: Date) {
  return x.execute(
    sql`select r.id::text as id, r.user_id::text as user_id, r.scope, r.resource,
               floor(extract(epoch from r.expires_at))::int as exp, floor(extract(epoch from r.created_at))::int as iat
        from refresh_tokens r join users u on u.id = r.user_id join oauth_clients c on c.id = r.client_id
        where r.token_hash = ${tokenHash} and c.client_id = ${clientId} and r.revoked_at is null
          and r.replaced_by is null and r.expires_at > ${now} and u.status = 'active'`,
  )
}

export function liveRefreshToken(result: unknown): LiveRefreshToken | undefined {
  const [row] = (result as { rows?: Record<string, unknown>[] }).rows ?? []
  if (row === undefined) {
    return undefined
  }
  return {
    id: String(row.id),
    user_id: String(row.user_id),
    scope: String(row.scope),
    resource: row.resource === null ? null : String(row.resource),
    exp: Number(row.exp),
    iat: Number(row.iat),
  }
}

/** Scopes the user already granted this client (remembered consent). */
export async function findConsent(
  x: Executor,
  userId: string,
  clientUuid: string,
): Promise<string[] | undefined> {
  const [row] = await x
    .select({ scopes: oauthConsents.scopes })
    .from(oauthConsents)
    .where(and(eq(oauthConsents.userId, userId), eq(oauthConsents.clientId, clientUuid)))
    .limit(1)
  return row?.scopes
}

/** Remembers consent, merged with what was granted before: a statement for the caller's batch. */
export function upsertConsentStatement(x: Executor, userId: string, clientUuid: string, scopes: string[]) {
  return x
    .insert(oauthConsents)
    .values({ userId, clientId: clientUuid, scopes })
    .onConflictDoUpdate({
      target: [oauthConsents.userId, oauthConsents.clientId],
      set: {
        scopes: sql`array(select distinct unnest(${oauthConsents.scopes} || excluded.scopes))`,
        updatedAt: sql`now()`,
      },
    })
}

export type NewDeviceCode = typeof deviceCodes.$inferInsert

export async function insertDeviceCode(x: Executor, code: NewDeviceCode): Promise<void> {
  await x.insert(deviceCodes).values(code)
}

/** The pending, unexpired device request behind a user code, with its client's name. */
export async function findPendingDeviceCode(x: Executor, userCodeHash: string, now: Date) {
  const [row] = await queryRows<{ id: string; scope: string; client_name: string | null; client_id: string }>(
    x,
    sql`select d.id::text as id, d.scope, c.client_name, c.client_id
        from device_codes d join oauth_clients c on c.id = d.client_id
        where d.user_code_hash = ${userCodeHash} and d.status = 'pending' and d.expires_at > ${now}
          and c.disabled_at is null`,
  )
  return row
}

/**
 * RFC 8628 §3.3: the user's decision on a pending, unexpired request, with its
 * `device_code_approved` / `device_code_denied` audit row written by the same statement (the
 * event exists exactly when the decision does). One statement.
 */
export async function decideDeviceCode(
  x: Executor,
  input: {
    userCodeHash: string
    userId: string
    tenantId: string
    approve: boolean
    ip: string | null
    now: Date
  },
): Promise<{ id: string; clientUuid: string } | undefined> {
  const [row] = await queryRows<{ id: string; client_uuid: string }>(
    x,
    sql`with d as (
      update device_codes set status = ${input.approve ? 'approved' : 'denied'}, user_id = ${input.userId}
      where user_code_hash = ${input.userCodeHash} and status = 'pending' and expires_at > ${input.now.toISOString()}::timestamptz
      returning id, client_id
    ), a as (
      insert into audit_events (type, actor, user_id, tenant_id, client_id, ip, metadata)
      select ${input.approve ? 'device_code_approved' : 'device_code_denied'}, ${`user:${input.userId}`},
             ${input.userId}, ${input.tenantId}, c.client_id, ${input.ip}, jsonb_build_object('device_code_id', d.id)
      from d join oauth_clients c on c.id = d.client_id
    )
    select d.id::text as id, d.client_id::text as client_uuid from d`,
  )
  return row === undefined ? undefined : { id: row.id, clientUuid: row.client_uuid }
}

export interface DevicePoll extends Grantee {
  deviceId: string
  previousStatus: string
  expired: boolean
  slowDown: boolean
  intervalSeconds: number
  scope: string
  resource: string | null
  refreshIssued: boolean
}

/**
 * RFC 8628 §3.4-3.5 in ONE statement, `portcullis_poll_device_code` (migration 0026, a PL/pgSQL
 * function so its plan is prepared once per backend): authenticates the client, records the
 * poll, grows the interval by 5 s when polled too fast, and consumes an approved code (starting a
 * refresh family when the client uses refresh tokens, and writing `token_issued`). No row: the
 * client did not authenticate; `poll` undefined: no such device code for this client.
 */
export async function pollDeviceCode(
  x: Executor,
  input: {
    client: PresentedClient
    deviceCodeHash: string
    refresh: NewRefreshToken
    audit: GrantAudit
    now: Date
  },
): Promise<({ client: GrantClient; poll: DevicePoll | undefined } & KeyEpochSeen) | undefined> {
  const refresh = input.refresh
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select *, ${KEY_EPOCH} as key_epoch from portcullis_poll_device_code(${grantArgs(input.client, input.now)},
      p_dpop_jkt => ${input.client.dpop?.jkt ?? null}::text, p_device_code_hash => ${input.deviceCodeHash}::text,
      p_refresh_id => ${refresh.id}::uuid, p_refresh_token_hash => ${refresh.tokenHash}::text,
      p_refresh_expires_at => ${refresh.expiresAt.toISOString()}::timestamptz, p_ip => ${input.audit.ip}::text)`,
  )
  if (row === undefined) {
    return undefined
  }
  const client = toGrantClient(row)
  const keyEpoch = keyEpochOf(row)
  if (row.device_id === null || row.device_id === undefined) {
    return { client, poll: undefined, keyEpoch }
  }
  return {
    client,
    keyEpoch,
    poll: {
      deviceId: String(row.device_id),
      previousStatus: String(row.prev_status),
      expired: row.expired === true,
      slowDown: row.slow_down === true,
      intervalSeconds: Number(row.interval_seconds),
      scope: String(row.scope),
      resource: row.resource === null ? null : String(row.resource),
      userId: row.user_id === null ? '' : String(row.user_id),
      status: row.user_status === null ? 'none' : String(row.user_status),
      email: row.email === null ? '' : String(row.email),
      displayName: row.display_name === null ? null : String(row.display_name),
      emailVerified: row.email_verified === true,
      tokensValidAfter: row.tokens_valid_after == null ? null : Number(row.tokens_valid_after),
      authTime: null,
      refreshIssued: Number(row.refresh_issued) > 0,
    },
  }
}

/**
 * client_credentials (RFC 6749 §4.4) in ONE statement, `portcullis_client_credentials` (migration
 * 0020, a PL/pgSQL function so its plan is prepared once per backend): authenticates the
 * confidential client and, when the requested scope is within its registration and names no
 * user-facing scope, writes `token_issued`. No row: the client did not authenticate.
 */
export async function authenticateForClientCredentials(
  x: Executor,
  input: { client: PresentedClient; requestedScope: string | null; audit: GrantAudit; now: Date },
): Promise<({ client: GrantClient } & KeyEpochSeen) | undefined> {
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select *, ${KEY_EPOCH} as key_epoch from portcullis_client_credentials(${grantArgs(input.client, input.now)},
      p_requested_scope => ${input.requestedScope}::text, p_ip => ${input.audit.ip}::text)`,
  )
  return row === undefined ? undefined : { client: toGrantClient(row), keyEpoch: keyEpochOf(row) }
}

/** What a token exchange records: the subject token, where it goes, and the exchanging request. */
export interface TokenExchangeRecord {
  /**
   * The subject token (a user's access token, signature checked): its state is read in the
   * statement. `issuedAt` is its `iat`.
   */
  subject: { jti: string; clientId: string; userId: string; issuedAt: number }
  audience: string
  scope: string
  audit: GrantAudit
  now: Date
}

/** What the token-exchange functions take of the subject token and the request, by name, beside the time. */
function exchangeArgs(input: TokenExchangeRecord, ringEpoch: string | null): SQL {
  const { subject } = input
  return sql`p_subject_jti => ${subject.jti}::text, p_subject_client_id => ${subject.clientId}::text,
      p_subject_user_id => ${subject.userId}::uuid, p_subject_issued_at => ${issuedAtSeconds(subject.issuedAt)}::bigint,
      p_audience => ${input.audience}::text, p_scope => ${input.scope}::text,
      p_ring_epoch => ${ringEpoch}::text, p_ip => ${input.audit.ip}::text`
}

/**
 * Token exchange (RFC 8693) in ONE statement, `portcullis_token_exchange` (migration 0027, a
 * PL/pgSQL function so its plan is prepared once per backend): authenticates the confidential
 * client registered for the grant and, when the subject token is still good in the database (not
 * revoked, its client enabled, its user active and the token newer than the user's last
 * credential event), writes `token_issued` naming the subject token. It reads the key set's epoch
 * too. `ringEpoch` is the epoch of an idle key ring the subject token's signature was checked
 * with: when the key set has another one now, nothing is written, as that check does not stand
 * (recordTokenExchange writes it once the signature is checked again). No row: the client did not
 * authenticate; `issued` false: the subject token is no longer valid, or the epoch moved.
 */
export async function authenticateForTokenExchange(
  x: Executor,
  input: TokenExchangeRecord & { client: PresentedClient; ringEpoch: string | undefined },
): Promise<({ client: GrantClient; issued: boolean } & KeyEpochSeen) | undefined> {
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select * from portcullis_token_exchange(${grantArgs(input.client, input.now)},
      ${exchangeArgs(input, input.ringEpoch ?? null)})`,
  )
  if (row === undefined) {
    return undefined
  }
  return { client: toGrantClient(row), issued: Number(row.issued) > 0, keyEpoch: keyEpochOf(row) }
}

/**
 * The exchange's writes for a client this request has already authenticated (its proofs and
 * assertion are spent, so it is not authenticated twice): the second statement of an exchange
 * whose first saw the key set's epoch move. `issued` false: the subject token is no longer valid.
 */
export async function recordTokenExchange(
  x: Executor,
  input: TokenExchangeRecord & { client: GrantClient },
): Promise<{ issued: boolean } & KeyEpochSeen> {
  const [row] = await queryRows<Record<string, unknown>>(
    x,
    sql`select * from portcullis_record_token_exchange(p_client => ${input.client.id}::uuid, ${exchangeArgs(input, null)},
      p_now => ${input.now.toISOString()}::timestamptz, p_hour_start => ${hourStart(input.now).toISOString()}::timestamptz)`,
  )
  return { issued: Number(row?.issued ?? 0) > 0, keyEpoch: row === undefined ? null : keyEpochOf(row) }
}
