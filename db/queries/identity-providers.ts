import { and, eq, inArray, isNull, or, type SQL, sql } from 'drizzle-orm'
import type { Executor, HttpDb } from '../client'
import { identityProviders, tenants } from '../schema'
import { insertAuditEventsStatement, insertAuditEventWhereStatement, type NewAuditEvent } from './audit'

export type IdentityProviderRow = typeof identityProviders.$inferSelect
export type NewIdentityProvider = typeof identityProviders.$inferInsert

/**
 * Whose providers a caller manages: the platform admin sees every row (or one tenant's with a
 * filter); a tenant's owners and admins see only that tenant's. Every read and write is scoped so.
 */
export type ProviderScope =
  | { kind: 'platform'; tenantId?: string | null }
  | { kind: 'tenant'; tenantId: string }

function scopeFilter(scope: ProviderScope): SQL | undefined {
  if (scope.kind === 'tenant') {
    return eq(identityProviders.tenantId, scope.tenantId)
  }
  if (scope.tenantId === undefined) {
    return undefined
  }
  return scope.tenantId === null
    ? isNull(identityProviders.tenantId)
    : eq(identityProviders.tenantId, scope.tenantId)
}

/** A provider and its audit row: one batch, so neither commits without the other. */
export async function insertIdentityProvider(
  db: HttpDb,
  row: NewIdentityProvider,
  audit: NewAuditEvent,
): Promise<IdentityProviderRow> {
  const [inserted] = await db.batch([
    db.insert(identityProviders).values(row).returning(),
    insertAuditEventsStatement(db, [audit]),
  ])
  const [created] = inserted
  if (created === undefined) {
    throw new Error('identity provider insert returned no row')
  }
  return created
}

export function listIdentityProviders(x: Executor, scope: ProviderScope): Promise<IdentityProviderRow[]> {
  return x
    .select()
    .from(identityProviders)
    .where(scopeFilter(scope))
    .orderBy(identityProviders.createdAt, identityProviders.id)
}

export async function findIdentityProvider(
  x: Executor,
  scope: ProviderScope,
  id: string,
): Promise<IdentityProviderRow | undefined> {
  const [row] = await x
    .select()
    .from(identityProviders)
    .where(and(eq(identityProviders.id, id), scopeFilter(scope)))
  return row
}

/**
 * Changes a provider in the caller's scope, with its audit row written only when the row changed
 * (matched by the `updatedAt` this statement set): one batch. Undefined: no such provider here.
 */
export async function updateIdentityProvider(
  db: HttpDb,
  scope: ProviderScope,
  id: string,
  changes: Partial<
    Pick<NewIdentityProvider, 'name' | 'clientId' | 'clientSecretSealed' | 'scope' | 'enabled'>
  > & {
    updatedAt: Date
  },
  audit: NewAuditEvent,
): Promise<IdentityProviderRow | undefined> {
  const [updated] = await db.batch([
    db
      .update(identityProviders)
      .set(changes)
      .where(and(eq(identityProviders.id, id), scopeFilter(scope)))
      .returning(),
    insertAuditEventWhereStatement(
      db,
      audit,
      sql`exists (select 1 from ${identityProviders} where ${identityProviders.id} = ${id}
        and ${identityProviders.updatedAt} = ${changes.updatedAt.toISOString()}::timestamptz)`,
    ),
  ])
  return updated[0]
}

/**
 * The enabled provider with this slug, for sign-in: the platform's, or an active tenant's (a
 * deactivated tenant's providers sign no one in).
 */
export function selectUsableProviderStatement(x: Executor, slug: string) {
  return x
    .select({ provider: identityProviders })
    .from(identityProviders)
    .leftJoin(tenants, eq(tenants.id, identityProviders.tenantId))
    .where(
      and(
        eq(identityProviders.slug, slug),
        eq(identityProviders.enabled, true),
        or(isNull(identityProviders.tenantId), eq(tenants.active, true)),
      ),
    )
    .limit(1)
}

/** The buttons of /login: the platform's enabled providers and, named by slug, one active tenant's. */
export function listLoginProviders(x: Executor, tenantSlug: string | undefined) {
  return x
    .select({ slug: identityProviders.slug, name: identityProviders.name })
    .from(identityProviders)
    .leftJoin(tenants, eq(tenants.id, identityProviders.tenantId))
    .where(
      and(
        eq(identityProviders.enabled, true),
        tenantSlug === undefined
          ? isNull(identityProviders.tenantId)
          : or(
              isNull(identityProviders.tenantId),
              and(eq(tenants.slug, tenantSlug), eq(tenants.active, true)),
            ),
      ),
    )
    .orderBy(identityProviders.createdAt)
    .limit(50)
}

/** Display names of stored providers by slug (disabled ones too: a linked identity keeps its name). */
export function providerNames(x: Executor, slugs: readonly string[]) {
  return x
    .select({ slug: identityProviders.slug, name: identityProviders.name })
    .from(identityProviders)
    .where(inArray(identityProviders.slug, [...slugs]))
}
