import { and, desc, eq, isNull, type SQL, sql } from 'drizzle-orm'
import type { HttpDb } from '../client'
import { serviceKeys } from '../schema'

export type ServiceKeyRow = typeof serviceKeys.$inferSelect
/** What reads return: never the hash. */
export type ServiceKeyRecord = Omit<ServiceKeyRow, 'keyHash'>

const PUBLIC_COLUMNS = {
  id: serviceKeys.id,
  prefix: serviceKeys.prefix,
  last4: serviceKeys.last4,
  serviceName: serviceKeys.serviceName,
  tenantId: serviceKeys.tenantId,
  skipRateLimit: serviceKeys.skipRateLimit,
  expiresAt: serviceKeys.expiresAt,
  revokedAt: serviceKeys.revokedAt,
  createdBy: serviceKeys.createdBy,
  createdAt: serviceKeys.createdAt,
}

/**
 * Where a caller's service keys live: `platform` (tenant_id null; only platform admins), or one
 * tenant's. Every read and write below is scoped by it in its WHERE clause.
 */
export type ServiceKeyScope = { kind: 'platform' } | { kind: 'tenant'; tenantId: string }

function scopeFilter(scope: ServiceKeyScope): SQL {
  return scope.kind === 'platform' ? isNull(serviceKeys.tenantId) : eq(serviceKeys.tenantId, scope.tenantId)
}

export interface NewServiceKey {
  keyHash: string
  prefix: string
  last4: string
  serviceName: string
  skipRateLimit: boolean
  expiresAt: Date
  createdBy: string
}

/** Who did it, for the audit row that commits in the same batch as the change. */
export interface ServiceKeyAudit {
  actor: string
  userId: string | null
  ip: string | null
}

function auditFromRow(
  db: HttpDb,
  type: 'service_key_created' | 'service_key_revoked',
  id: string,
  audit: ServiceKeyAudit,
  revokedAt?: Date,
) {
  const onlyIfRevokedNow =
    revokedAt === undefined ? sql`` : sql` and revoked_at = ${revokedAt.toISOString()}::timestamptz`
  return db.execute(sql`insert into audit_events (type, actor, user_id, tenant_id, ip, metadata)
    select ${type}, ${audit.actor}, ${audit.userId}::uuid, tenant_id, ${audit.ip},
      jsonb_build_object('service_key_id', id, 'prefix', prefix, 'service_name', service_name,
        'skip_rate_limit', skip_rate_limit)
    from ${serviceKeys} where id = ${id}${onlyIfRevokedNow}`)
}

/** Inserts a service key with its `service_key_created` audit row. One round trip (a batch). */
export async function insertServiceKey(
  db: HttpDb,
  scope: ServiceKeyScope,
  key: NewServiceKey,
  audit: ServiceKeyAudit,
): Promise<ServiceKeyRecord> {
  const id = crypto.randomUUID()
  const [inserted] = await db.batch([
    db
      .insert(serviceKeys)
      .values({ ...key, id, tenantId: scope.kind === 'tenant' ? scope.tenantId : null })
      .returning(PUBLIC_COLUMNS),
    auditFromRow(db, 'service_key_created', id, audit),
  ])
  const row = inserted[0]
  if (row === undefined) {
    throw new Error('insert into service_keys returned no row')
  }
  return row
}

/**
 * The scope's service keys, newest first, keyset-paginated on (created_at, id); revoked keys
 * only when asked for. One round trip.
 */
export async function listServiceKeys(
  db: HttpDb,
  scope: ServiceKeyScope,
  options: { limit: number; after: { createdAt: string; id: string } | undefined; includeRevoked: boolean },
): Promise<(ServiceKeyRecord & { cursorCreatedAt: string })[]> {
  const conditions: SQL[] = [scopeFilter(scope)]
  if (!options.includeRevoked) {
    conditions.push(isNull(serviceKeys.revokedAt))
  }
  if (options.after !== undefined) {
    conditions.push(
      sql`(${serviceKeys.createdAt}, ${serviceKeys.id}) < (${options.after.createdAt}::timestamptz, ${options.after.id}::uuid)`,
    )
  }
  return db
    .select({
      ...PUBLIC_COLUMNS,
      cursorCreatedAt: sql<string>`to_char(${serviceKeys.createdAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`,
    })
    .from(serviceKeys)
    .where(and(...conditions))
    .orderBy(desc(serviceKeys.createdAt), desc(serviceKeys.id))
    .limit(options.limit + 1)
}

/**
 * Revokes a service key of the scope: idempotent (the first revocation time stays), and only a
 * revocation that happened now writes its `service_key_revoked` audit row, in the same batch.
 * Undefined when the scope has no such key. One round trip.
 */
export async function revokeServiceKey(
  db: HttpDb,
  scope: ServiceKeyScope,
  id: string,
  now: Date,
  audit: ServiceKeyAudit,
): Promise<ServiceKeyRecord | undefined> {
  const [updated] = await db.batch([
    db
      .update(serviceKeys)
      .set({ revokedAt: sql`coalesce(${serviceKeys.revokedAt}, ${now.toISOString()}::timestamptz)` })
      .where(and(eq(serviceKeys.id, id), scopeFilter(scope)))
      .returning(PUBLIC_COLUMNS),
    auditFromRow(db, 'service_key_revoked', id, audit, now),
  ])
  return updated[0]
}

/** The live service key with this hash (introspection's caller check). One round trip. */
export async function findLiveServiceKey(
  db: HttpDb,
  keyHash: string,
  now: Date,
): Promise<{ id: string; tenantId: string | null } | undefined> {
  const [row] = await findLiveServiceKeyStatement(db, keyHash, now)
  return row
}

/** `findLiveServiceKey` as a statement for the caller's batch (its first row is the key). */
export function findLiveServiceKeyStatement(db: HttpDb, keyHash: string, now: Date) {
  return db
    .select({ id: serviceKeys.id, tenantId: serviceKeys.tenantId })
    .from(serviceKeys)
    .where(
      and(
        eq(serviceKeys.keyHash, keyHash),
        isNull(serviceKeys.revokedAt),
        sql`${serviceKeys.expiresAt} > ${now.toISOString()}::timestamptz`,
        sql`(${serviceKeys.tenantId} is null or (select t.active from tenants t where t.id = ${serviceKeys.tenantId}) is true)`,
      ),
    )
    .limit(1)
}
