import type { Context } from 'hono'
import * as v from 'valibot'
import { findMembership, findTenant, type MemberRecord, type TenantRecord } from '../../db/queries/tenants'
import { TENANT_PLANS, TENANT_ROLES, type TenantRole } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { PageLimit } from '../auth/cursor'
import { isAdministrator, type Principal } from '../auth/principal'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'

/** The scope an access token needs for `/tenants/*` (sessions need none). */
export const TENANT_ADMIN_SCOPE = 'tenant:admin'

/** Tenant answers are per caller: never cached. */
export const NO_STORE = { 'cache-control': 'no-store' }
/** How the `/tenants…` routes accept a caller (OpenAPI security schemes). */
export const TENANT_SECURITY = ['sessionCookie', 'bearerToken', 'adminToken'] as const
/** `?limit=&cursor=` of every tenant listing. */
export const ListQuery = v.object({ limit: PageLimit, cursor: v.optional(v.string()) })

// A DNS label: lowercase letters, digits and inner hyphens, 2 to 63 characters.
export const Slug = v.pipe(
  v.string(),
  v.regex(
    /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/,
    'must be 2-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen',
  ),
)
export const TenantName = v.pipe(
  v.string(),
  v.trim(),
  v.minLength(1, 'must not be empty'),
  v.maxLength(200, 'must be at most 200 characters'),
)
export const Plan = v.picklist(TENANT_PLANS, `must be one of ${TENANT_PLANS.join(', ')}`)
export const Role = v.picklist(TENANT_ROLES, `must be one of ${TENANT_ROLES.join(', ')}`)

export const TenantJsonSchema = v.object({
  id: v.string(),
  slug: v.string(),
  name: v.string(),
  plan: v.picklist(TENANT_PLANS),
  active: v.boolean(),
  /** The tenant-wide monthly verify quota set for this tenant; null follows the plan (TENANT_MONTHLY_QUOTAS). */
  monthly_quota: v.nullable(v.number()),
  created_at: v.string(),
  updated_at: v.string(),
  role: v.optional(v.picklist(TENANT_ROLES)),
})
export const MemberJsonSchema = v.object({
  user_id: v.string(),
  email: v.string(),
  display_name: v.nullable(v.string()),
  role: v.picklist(TENANT_ROLES),
  created_at: v.string(),
})

export function toTenantJson(tenant: TenantRecord, role?: TenantRole | null) {
  return {
    id: tenant.id,
    slug: tenant.slug,
    name: tenant.name,
    plan: tenant.plan,
    active: tenant.active,
    monthly_quota: tenant.monthlyQuota,
    created_at: tenant.createdAt.toISOString(),
    updated_at: tenant.updatedAt.toISOString(),
    ...(role === undefined || role === null ? {} : { role }),
  }
}

export function toMemberJson(member: MemberRecord) {
  return {
    user_id: member.userId,
    email: member.email,
    display_name: member.displayName,
    role: member.role,
    created_at: member.createdAt.toISOString(),
  }
}

/** `user:<id>`, `client:<client_id>` or `admin`, as audit rows name their actor. */
export function actorOf(principal: Principal): string {
  return principal.kind === 'user'
    ? `user:${principal.userId}`
    : principal.kind === 'client'
      ? `client:${principal.clientId}`
      : 'admin'
}

export interface TenantActor {
  tenantId: string
  /** `platform`: the admin token or an admin-scoped token of a platform admin (acts as an owner). */
  role: TenantRole | 'platform'
  actor: string
  userId: string | undefined
}

/**
 * Who manages a kind of tenant object through handlers shared by `/admin/…` (a platform admin:
 * every tenant's objects) and `/tenants/{id}/…` (an owner or admin: that tenant's only), and
 * so which objects each query may name.
 */
export interface ObjectManager {
  scope: { kind: 'platform' } | { kind: 'tenant'; tenantId: string }
  actor: string
  userId: string | null
}

/** The caller of an `/admin/…` route (behind requireAdmin). */
export function platformManager(c: Context<AppEnv>): ObjectManager {
  const principal = c.var.principal
  return {
    scope: { kind: 'platform' },
    actor: actorOf(principal),
    userId: principal.kind === 'user' ? principal.userId : null,
  }
}

/** The caller of a `/tenants/{id}/…` management route: an owner or admin of `{id}` (else 403/404). */
export async function tenantManager(c: Context<AppEnv>): Promise<ObjectManager> {
  const actor = await tenantActor(c, 'manage')
  return {
    scope: { kind: 'tenant', tenantId: actor.tenantId },
    actor: actor.actor,
    userId: actor.userId ?? null,
  }
}

/** Owners and platform admins may make, change and remove owners; tenant admins may not. */
export function mayTouchOwners(actor: TenantActor): boolean {
  return actor.role === 'owner' || actor.role === 'platform'
}

const notFound = () => new ProblemError('not_found', { detail: 'No such tenant' })

/**
 * Who the caller is in the tenant of the path's `{id}`, or a refusal. An unknown tenant, or one
 * the caller is not a member of, is 404 (existence does not leak); a member whose role is below
 * `needs` is 403; a member of a deactivated tenant is 403. Access tokens need `tenant:admin`
 * (403 otherwise, whatever the tenant), client_credentials tokens are refused. One round trip.
 */
export async function tenantActor(c: Context<AppEnv>, needs: 'manage' | 'member'): Promise<TenantActor> {
  const tenantId = c.req.param('id') ?? ''
  const principal = c.var.principal
  if (isAdministrator(principal)) {
    if (!isUuid(tenantId) || (await findTenant(c.var.db.http, tenantId)) === undefined) {
      throw notFound()
    }
    return {
      tenantId,
      role: 'platform',
      actor: actorOf(principal),
      userId: principal.kind === 'user' ? principal.userId : undefined,
    }
  }
  const userId = requireTenantUser(principal)
  if (!isUuid(tenantId)) {
    throw notFound()
  }
  const membership = await findMembership(c.var.db.http, tenantId, userId)
  if (membership === undefined) {
    throw notFound()
  }
  if (!membership.active) {
    throw new ProblemError('forbidden', { detail: 'This tenant is deactivated' })
  }
  if (needs === 'manage' && membership.role === 'member') {
    throw new ProblemError('forbidden', { detail: 'This needs the owner or admin role in the tenant' })
  }
  return { tenantId, role: membership.role, actor: `user:${userId}`, userId }
}

/** The user behind a `/tenants` call: a session, or an access token with `tenant:admin`. */
export function requireTenantUser(principal: Principal): string {
  if (principal.kind !== 'user') {
    throw new ProblemError('forbidden', { detail: 'Tenant routes are for users and platform admins' })
  }
  if (principal.via === 'access_token' && !principal.scopes.has(TENANT_ADMIN_SCOPE)) {
    throw new ProblemError('insufficient_scope', { detail: `This needs the ${TENANT_ADMIN_SCOPE} scope` })
  }
  return principal.userId
}
