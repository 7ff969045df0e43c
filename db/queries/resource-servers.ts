import { and, asc, eq, inArray, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { resourceServers } from '../schema'

export type ResourceServerRow = typeof resourceServers.$inferSelect
export type NewResourceServer = typeof resourceServers.$inferInsert

/** The resource server named by this identifier (RFC 8707 `resource`). One round trip. */
export async function findResourceServer(
  x: Executor,
  identifier: string,
): Promise<ResourceServerRow | undefined> {
  const [row] = await x
    .select()
    .from(resourceServers)
    .where(eq(resourceServers.identifier, identifier))
    .limit(1)
  return row
}

/** The resource servers named by these identifiers (several RFC 8707 `resource` values). One round trip. */
export function findResourceServers(
  x: Executor,
  identifiers: readonly string[],
): Promise<ResourceServerRow[]> {
  return x
    .select()
    .from(resourceServers)
    .where(inArray(resourceServers.identifier, [...identifiers]))
}

/**
 * Whose resource servers a management call sees: a tenant's own (`/tenants/{id}/resource-servers`),
 * or every tenant's (platform admins), optionally narrowed to one tenant.
 */
export type ResourceServerScope =
  | { kind: 'tenant'; tenantId: string }
  | { kind: 'platform'; tenantId?: string }

function inScope(scope: ResourceServerScope, ...more: SQL[]): SQL | undefined {
  return and(...(scope.tenantId === undefined ? [] : [eq(resourceServers.tenantId, scope.tenantId)]), ...more)
}

/** The resource server `id` if the scope sees it (another tenant's: undefined). One round trip. */
export async function findResourceServerById(
  x: Executor,
  scope: ResourceServerScope,
  id: string,
): Promise<ResourceServerRow | undefined> {
  const [row] = await x
    .select()
    .from(resourceServers)
    .where(inScope(scope, eq(resourceServers.id, id)))
    .limit(1)
  return row
}

/** The scope's resource servers, oldest first (there are few: an operator registers them by hand). */
export function listResourceServers(x: Executor, scope: ResourceServerScope): Promise<ResourceServerRow[]> {
  return x
    .select()
    .from(resourceServers)
    .where(inScope(scope))
    .orderBy(asc(resourceServers.createdAt))
    .limit(500)
}

/** Every scope some resource server defines, deduplicated. One round trip. */
export async function resourceScopeNames(x: Executor): Promise<Set<string>> {
  const rows = await x
    .select({ name: sql<string>`s->>'name'` })
    .from(sql`${resourceServers}, jsonb_array_elements(${resourceServers.scopes}) s`)
  return new Set(rows.map((r) => r.name))
}

/** Inserts one, as a statement for the caller's batch; an existing identifier fails it (23505). */
export function insertResourceServerStatement(x: Executor, row: NewResourceServer) {
  return x.insert(resourceServers).values(row).returning()
}

/** Changes one the scope sees, as a statement for the caller's batch (no row: not in scope). */
export function updateResourceServerStatement(
  x: Executor,
  scope: ResourceServerScope,
  id: string,
  fields: Partial<NewResourceServer>,
) {
  return x
    .update(resourceServers)
    .set({ ...fields, updatedAt: sql`now()` })
    .where(inScope(scope, eq(resourceServers.id, id)))
    .returning()
}

/** Deletes one the scope sees, as a statement for the caller's batch (no row: not in scope). */
export function deleteResourceServerStatement(x: Executor, scope: ResourceServerScope, id: string) {
  return x
    .delete(resourceServers)
    .where(inScope(scope, eq(resourceServers.id, id)))
    .returning({ id: resourceServers.id, identifier: resourceServers.identifier })
}
