import { Hono } from 'hono'
import * as v from 'valibot'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import {
  changeMemberRole,
  createInvitation,
  createTenant,
  findTenant,
  listMembers,
  listPendingInvitations,
  listTenants,
  removeMember,
  revokeInvitation,
} from '../../db/queries/tenants'
import { TENANT_ROLES } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { tenantResourceServers } from '../admin/resource-servers'
import { auditRow } from '../audit/record'
import { decodeCursor, paginate } from '../auth/cursor'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import { accountLink, deliverSoon } from '../email/outbox'
import { renderInvitationEmail } from '../email/templates'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { tenantIdentityProviders } from '../federation/provider-admin'
import { authenticate } from '../middleware/authenticate'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { tenantServiceKeys } from '../service-keys/routes'
import { jsonBody, queryParams } from '../validation/json-body'
import {
  ListQuery,
  MemberJsonSchema,
  mayTouchOwners,
  NO_STORE,
  Role,
  requireTenantUser,
  TENANT_SECURITY,
  TenantJsonSchema,
  tenantActor,
  toMemberJson,
  toTenantJson,
} from './access'
import { CreateTenantBody } from './admin'
import { invitationPages } from './invitation-page'
import { acceptInvitationAs } from './invitations'
import { tenantObjects } from './objects'

const RoleBody = v.strictObject({ role: Role })
const InviteBody = v.strictObject({
  email: v.pipe(
    v.string(),
    v.trim(),
    v.maxLength(254, 'must be at most 254 characters'),
    v.email('must be an email address'),
  ),
  role: v.optional(Role, 'member'),
})
const AcceptBody = v.strictObject({ token: v.pipe(v.string(), v.minLength(1), v.maxLength(200)) })
const InvitationJson = v.object({
  id: v.string(),
  email: v.string(),
  role: v.picklist(TENANT_ROLES),
  invited_by: v.string(),
  expires_at: v.string(),
  created_at: v.string(),
})

const doc = (
  method: 'get' | 'post' | 'patch' | 'delete',
  path: string,
  summary: string,
  responses: Parameters<typeof documentRoute>[0]['responses'],
  extra: Partial<Parameters<typeof documentRoute>[0]> = {},
) =>
  documentRoute({ method, path, summary, tags: ['tenants'], security: TENANT_SECURITY, responses, ...extra })

doc(
  'post',
  '/tenants',
  'Create a tenant as its owner (TENANT_SELF_SERVICE=true; otherwise 403)',
  { 201: { description: 'The tenant', schema: v.object({ tenant: TenantJsonSchema }) } },
  { requestBody: { schema: CreateTenantBody } },
)
doc(
  'get',
  '/tenants',
  'The tenants the caller belongs to, with their role',
  { 200: { description: 'A page of tenants', schema: v.object({ data: v.array(TenantJsonSchema) }) } },
  { query: ListQuery },
)
doc(
  'post',
  '/tenants/invitations/accept',
  'Accept an invitation as the invited address’s account (dead token: 400 invalid_token; another account: 403)',
  { 200: { description: 'The tenant joined', schema: v.object({ tenant: TenantJsonSchema }) } },
  { requestBody: { schema: AcceptBody } },
)
doc(
  'get',
  '/tenants/{id}/members',
  'List members (owner or admin)',
  { 200: { description: 'A page of members', schema: v.object({ data: v.array(MemberJsonSchema) }) } },
  { query: ListQuery },
)
doc(
  'patch',
  '/tenants/{id}/members/{user_id}',
  'Change a member’s role (admins cannot make or change owners: 403; the last owner: 409 last_owner)',
  { 200: { description: 'The member', schema: v.object({ member: MemberJsonSchema }) } },
  { requestBody: { schema: RoleBody } },
)
doc(
  'delete',
  '/tenants/{id}/members/{user_id}',
  'Remove a member, or leave (own user id; any role). The last owner cannot leave: 409 last_owner',
  { 204: { description: 'Removed' } },
)
doc(
  'post',
  '/tenants/{id}/invitations',
  'Invite an address (single-use token by mail, TENANT_INVITATION_TTL); admins cannot invite owners',
  {
    201: {
      description: 'The invitation (never its token)',
      schema: v.object({ invitation: InvitationJson }),
    },
  },
  { requestBody: { schema: InviteBody } },
)
doc('delete', '/tenants/{id}/invitations/{invitation_id}', 'Revoke a pending invitation (owner or admin)', {
  204: { description: 'Revoked; its link no longer works' },
})
doc('get', '/tenants/{id}/invitations', 'Pending invitations', {
  200: { description: 'Pending invitations', schema: v.object({ data: v.array(InvitationJson) }) },
})

const memberNotFound = () => new ProblemError('not_found', { detail: 'No such member' })
const ownerProtected = () =>
  new ProblemError('forbidden', { detail: 'Only an owner can make, demote or remove an owner' })
const lastOwner = () =>
  new ProblemError('last_owner', {
    detail: 'Make another member an owner first; a tenant keeps at least one',
  })

/** `/tenants`: organizations for their members (session or `tenant:admin` token) and platform admins. */
export const tenants = new Hono<AppEnv>()
  // First: the invitation mail's link is a page for browsers (the API below answers JSON 401s).
  .route('/invitations/accept', invitationPages)
  .use(authenticate({ accept: ['session', 'access_token', 'admin_token'] }))
  .post('/', jsonBody(CreateTenantBody), async (c) => {
    const userId = requireTenantUser(c.var.principal)
    if (!c.var.config.tenantSelfService) {
      throw new ProblemError('forbidden', { detail: 'Tenants are created by a platform admin here' })
    }
    const body = c.req.valid('json')
    const id = crypto.randomUUID()
    const tenant = await createTenant(
      c.var.db.http,
      { id, slug: body.slug, name: body.name, plan: body.plan, now: new Date(), ownerUserId: userId },
      auditRow({ type: 'tenant_created', actor: `user:${userId}`, userId, tenantId: id }, clientIp(c)),
    ).catch((error: unknown) => {
      if (sqlState(error) === UNIQUE_VIOLATION) {
        throw new ProblemError('slug_taken', { detail: 'Another tenant already uses this slug' })
      }
      throw error
    })
    return c.json({ tenant: toTenantJson(tenant, 'owner') }, 201, NO_STORE)
  })
  .get('/', queryParams(ListQuery), async (c) => {
    const userId = requireTenantUser(c.var.principal)
    const query = c.req.valid('query')
    const rows = await listTenants(c.var.db.http, {
      limit: query.limit,
      after: decodeCursor(query.cursor),
      memberUserId: userId,
    })
    const { page, nextCursor } = paginate(rows, query.limit, (row) => ({
      createdAt: row.cursorAt,
      id: row.id,
    }))
    return c.json({ data: page.map((t) => toTenantJson(t, t.role)), next_cursor: nextCursor }, 200, NO_STORE)
  })
  .post('/invitations/accept', jsonBody(AcceptBody), async (c) => {
    const userId = requireTenantUser(c.var.principal)
    const outcome = await acceptInvitationAs(c, c.req.valid('json').token, userId)
    if (outcome.kind === 'invalid') {
      throw new ProblemError('invalid_token', {
        detail: 'The invitation is unknown, expired or already used',
      })
    }
    if (outcome.kind === 'wrong_account') {
      throw new ProblemError('forbidden', { detail: 'Sign in with the account of the invited address' })
    }
    return c.json(
      { tenant: toTenantJson(outcome.tenant, outcome.role), already_member: outcome.alreadyMember },
      200,
      NO_STORE,
    )
  })
  .get('/:id/members', queryParams(ListQuery), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const query = c.req.valid('query')
    const rows = await listMembers(c.var.db.http, actor.tenantId, {
      limit: query.limit,
      after: decodeCursor(query.cursor),
    })
    const { page, nextCursor } = paginate(rows, query.limit, (row) => ({
      createdAt: row.cursorAt,
      id: row.userId,
    }))
    return c.json({ data: page.map(toMemberJson), next_cursor: nextCursor }, 200, NO_STORE)
  })
  .patch('/:id/members/:userId', jsonBody(RoleBody), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const userId = c.req.param('userId')
    if (!isUuid(userId)) {
      throw memberNotFound()
    }
    const role = c.req.valid('json').role
    const outcome = await changeMemberRole(c.var.db.http, {
      tenantId: actor.tenantId,
      userId,
      role,
      actorMayTouchOwners: mayTouchOwners(actor),
      audit: auditRow(
        { type: 'member_role_changed', actor: actor.actor, tenantId: actor.tenantId },
        clientIp(c),
      ),
    })
    switch (outcome.kind) {
      case 'changed':
        return c.json({ member: toMemberJson(outcome.member) }, 200, NO_STORE)
      case 'not_found':
        throw memberNotFound()
      case 'owner_protected':
        throw ownerProtected()
      case 'last_owner':
        throw lastOwner()
    }
  })
  .delete('/:id/members/:userId', async (c) => {
    const userId = c.req.param('userId')
    // Leaving is open to every member; removing someone else needs owner or admin.
    const leaving = c.var.principal.kind === 'user' && c.var.principal.userId === userId
    const actor = await tenantActor(c, leaving ? 'member' : 'manage')
    if (!isUuid(userId)) {
      throw memberNotFound()
    }
    const outcome = await removeMember(c.var.db.http, {
      tenantId: actor.tenantId,
      userId,
      actorMayTouchOwners: leaving || mayTouchOwners(actor),
      audit: auditRow({ type: 'member_removed', actor: actor.actor, tenantId: actor.tenantId }, clientIp(c)),
    })
    switch (outcome.kind) {
      case 'removed':
        return c.body(null, 204, NO_STORE)
      case 'not_found':
        throw memberNotFound()
      case 'owner_protected':
        throw ownerProtected()
      case 'last_owner':
        throw lastOwner()
    }
  })
  .post('/:id/invitations', jsonBody(InviteBody), async (c) => {
    const actor = await tenantActor(c, 'manage')
    const body = c.req.valid('json')
    if (body.role === 'owner' && !mayTouchOwners(actor)) {
      throw ownerProtected()
    }
    const tenant = await findTenant(c.var.db.http, actor.tenantId)
    if (tenant === undefined) {
      throw new ProblemError('not_found', { detail: 'No such tenant' })
    }
    const config = c.var.config
    const token = randomToken()
    const now = new Date()
    const { invitation, outboxId } = await createInvitation(
      c.var.db.http,
      {
        tenantId: actor.tenantId,
        email: body.email,
        role: body.role,
        tokenHash: await sha256Hex(token),
        invitedBy: actor.actor,
        now,
        expiresAt: new Date(now.getTime() + config.invitationTtlSeconds * 1000),
        message: renderInvitationEmail(
          tenant.name,
          body.role,
          accountLink(config.issuer, '/tenants/invitations/accept', token),
          config.invitationTtlSeconds,
          config.brand,
        ),
      },
      auditRow({ type: 'invitation_created', actor: actor.actor, tenantId: actor.tenantId }, clientIp(c)),
    )
    deliverSoon(c, [outboxId])
    return c.json({ invitation: toInvitationJson(invitation) }, 201, NO_STORE)
  })
  .get('/:id/invitations', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const rows = await listPendingInvitations(c.var.db.http, actor.tenantId, new Date())
    return c.json({ data: rows.map(toInvitationJson) }, 200, NO_STORE)
  })
  .delete('/:id/invitations/:invitationId', async (c) => {
    const actor = await tenantActor(c, 'manage')
    const invitationId = c.req.param('invitationId')
    const revoked =
      isUuid(invitationId) &&
      (await revokeInvitation(
        c.var.db.http,
        actor.tenantId,
        invitationId,
        auditRow({ type: 'invitation_revoked', actor: actor.actor, tenantId: actor.tenantId }, clientIp(c)),
      ))
    if (!revoked) {
      throw new ProblemError('not_found', { detail: 'No such pending invitation' })
    }
    return c.body(null, 204, NO_STORE)
  })
  .route('/:id', tenantObjects)
  .route('/:id/service-keys', tenantServiceKeys)
  .route('/:id/identity-providers', tenantIdentityProviders)
  .route('/:id/resource-servers', tenantResourceServers)

function toInvitationJson(invitation: {
  id: string
  email: string
  role: string
  invitedBy: string
  expiresAt: Date
  createdAt: Date
}) {
  return {
    id: invitation.id,
    email: invitation.email,
    role: invitation.role,
    invited_by: invitation.invitedBy,
    expires_at: invitation.expiresAt.toISOString(),
    created_at: invitation.createdAt.toISOString(),
  }
}
