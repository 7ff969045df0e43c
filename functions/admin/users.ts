import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { insertAuditEventWhereStatement } from '../../db/queries/audit'
import { clearUpstreamTokensStatement } from '../../db/queries/federation'
import {
  deleteMfaChallengesOfUserStatement,
  deleteRecoveryCodesStatement,
  deleteTotpStatement,
} from '../../db/queries/mfa'
import { deletePasskeysOfUserStatement } from '../../db/queries/passkeys'
import { setPlatformAdmin } from '../../db/queries/tenants'
import {
  findUserById,
  listUsers,
  transitionedNow,
  transitionUserStatusStatement,
  type UserRow,
} from '../../db/queries/users'
import { USER_STATUSES, type UserStatus } from '../../db/schema/constants'
import { isUuid } from '../../db/uuid'
import { type AuditEventType, auditRow } from '../audit/record'
import { decodeCursor, PageLimit, paginate } from '../auth/cursor'
import { endUserAccessStatement, toEndedAccess } from '../auth/end-user-access'
import { UserJsonSchema } from '../auth/schemas'
import { toUserJson } from '../auth/user-view'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { queryParams } from '../validation/json-body'

const NO_STORE = { 'cache-control': 'no-store' }

const UserListQuery = v.object({
  status: v.optional(v.picklist(USER_STATUSES, `must be one of ${USER_STATUSES.join(', ')}`)),
  q: v.optional(v.pipe(v.string(), v.trim(), v.maxLength(254, 'must be at most 254 characters'))),
  limit: PageLimit,
  cursor: v.optional(v.string()),
})
const UserList = v.object({ data: v.array(UserJsonSchema), next_cursor: v.nullable(v.string()) })
const UserResponse = v.object({ user: UserJsonSchema })
const FactorsReset = v.object({
  user: UserJsonSchema,
  totp_removed: v.boolean(),
  recovery_codes_removed: v.number(),
  passkeys_removed: v.number(),
  sessions_ended: v.number(),
  refresh_tokens_revoked: v.number(),
})

documentRoute({
  method: 'get',
  path: '/admin/users',
  summary: 'List users (filter by status, search email and name)',
  tags: ['admin'],
  security: ['adminToken'],
  query: UserListQuery,
  responses: { 200: { description: 'A page of users', schema: UserList } },
})
for (const action of ['approve', 'suspend', 'reinstate'] as const) {
  documentRoute({
    method: 'post',
    path: `/admin/users/{id}/${action}`,
    summary: `${action[0]?.toUpperCase()}${action.slice(1)} a user`,
    tags: ['admin'],
    security: ['adminToken'],
    responses: { 200: { description: 'The user', schema: UserResponse } },
  })
}

function actorOf(c: Context<AppEnv>): string {
  const principal = c.var.principal
  return principal.kind === 'user'
    ? `user:${principal.userId}`
    : principal.kind === 'client'
      ? `client:${principal.clientId}`
      : 'admin'
}

interface Transition {
  from: readonly UserStatus[]
  to: UserStatus
  audit: AuditEventType
}

// Each action is one atomic status change; repeating it on a user already there answers 200
// with the user unchanged (idempotent), any other starting status is a 409.
const TRANSITIONS: Record<'approve' | 'suspend' | 'reinstate', Transition> = {
  approve: { from: ['pending'], to: 'active', audit: 'user_approved' },
  suspend: { from: ['pending', 'active'], to: 'suspended', audit: 'user_suspended' },
  reinstate: { from: ['suspended'], to: 'active', audit: 'user_reinstated' },
}

async function applyTransition(c: Context<AppEnv>, action: keyof typeof TRANSITIONS): Promise<Response> {
  const id = c.req.param('id') ?? ''
  if (!isUuid(id)) {
    throw new ProblemError('not_found', { detail: 'No such user' })
  }
  const transition = TRANSITIONS[action]
  const db = c.var.db.http
  const now = new Date()
  // One batch: the move, (for suspension) the end of every session and token, and the audit row,
  // which is written only when the move happened now. A repeated suspension ends access again
  // (so a retry after a failure still ends it) without a second event.
  const event = auditRow({ type: transition.audit, actor: actorOf(c), userId: id, metadata: {} }, clientIp(c))
  const changedNow = transitionedNow(id, transition.to, now)
  const move = transitionUserStatusStatement(db, id, transition.from, transition.to, now)
  const [moved] =
    transition.to === 'suspended'
      ? await db.batch([
          move,
          endUserAccessStatement(db, id, now, {
            row: event,
            sessionsKey: 'sessions_ended',
            refreshTokensKey: 'refresh_tokens_revoked',
            onlyIf: changedNow,
          }),
          // Upstream tokens kept for GET /connections/{provider}/token are deleted too (issue 13).
          clearUpstreamTokensStatement(db, id),
        ])
      : await db.batch([move, insertAuditEventWhereStatement(db, event, changedNow)])
  let user: UserRow | undefined = moved[0]
  if (user === undefined) {
    user = await findUserById(db, id)
    if (user === undefined) {
      throw new ProblemError('not_found', { detail: 'No such user' })
    }
    if (user.status !== transition.to) {
      throw new ProblemError('conflict', { detail: `A ${user.status} user cannot be sent to ${action}` })
    }
  }
  return c.json({ user: toUserJson(user) }, 200, NO_STORE)
}

for (const action of ['promote', 'demote'] as const) {
  documentRoute({
    method: 'post',
    path: `/admin/users/{id}/${action}`,
    summary:
      action === 'promote'
        ? 'Make a user a platform admin (is_admin; audited user_promoted)'
        : 'Take platform admin rights away (audited user_demoted); their admin-scoped tokens stop working at once',
    tags: ['admin'],
    security: ['adminToken'],
    responses: { 200: { description: 'The user', schema: UserResponse } },
  })
}

async function setAdmin(c: Context<AppEnv>, isAdmin: boolean): Promise<Response> {
  const id = c.req.param('id') ?? ''
  if (!isUuid(id)) {
    throw new ProblemError('not_found', { detail: 'No such user' })
  }
  const db = c.var.db.http
  // The change and its audit row are one statement; repeating it is a 200 with nothing written.
  const outcome = await setPlatformAdmin(
    db,
    id,
    isAdmin,
    new Date(),
    auditRow({ type: isAdmin ? 'user_promoted' : 'user_demoted', actor: actorOf(c) }, clientIp(c)),
  )
  const user = outcome === undefined ? undefined : await findUserById(db, id)
  if (user === undefined) {
    throw new ProblemError('not_found', { detail: 'No such user' })
  }
  return c.json({ user: toUserJson(user) }, 200, NO_STORE)
}

documentRoute({
  method: 'delete',
  path: '/admin/users/{id}/factors',
  summary:
    "Reset a user's two-factor sign-in (TOTP, recovery codes, passkeys, pending second steps); ends their sessions and tokens (audited mfa_reset)",
  tags: ['admin'],
  security: ['adminToken'],
  responses: { 200: { description: 'The user and what was removed', schema: FactorsReset } },
})

/**
 * For a user who lost their authenticator and recovery codes: the factor, every recovery code,
 * every passkey (a lost or planted one is a way in too) and every pending second step go, and so
 * does every session and token (whoever holds them signed in with the factor now gone), with
 * `mfa_reset` recorded, in one batch. The next sign-in is by password alone, or leads to
 * enrolment where two-factor sign-in is required.
 */
async function resetFactors(c: Context<AppEnv>): Promise<Response> {
  const id = c.req.param('id') ?? ''
  const db = c.var.db.http
  const user = isUuid(id) ? await findUserById(db, id) : undefined
  if (user === undefined) {
    throw new ProblemError('not_found', { detail: 'No such user' })
  }
  const now = new Date()
  const [totp, codes, keys, , ended] = await db.batch([
    deleteTotpStatement(db, id),
    deleteRecoveryCodesStatement(db, id),
    deletePasskeysOfUserStatement(db, id),
    deleteMfaChallengesOfUserStatement(db, id),
    endUserAccessStatement(db, id, now, {
      row: auditRow(
        { type: 'mfa_reset', actor: actorOf(c), userId: id, tenantId: user.tenantId, metadata: {} },
        clientIp(c),
      ),
      sessionsKey: 'sessions_ended',
      refreshTokensKey: 'refresh_tokens_revoked',
    }),
  ])
  const access = toEndedAccess(ended)
  return c.json(
    {
      user: toUserJson(user),
      totp_removed: totp.length > 0,
      recovery_codes_removed: codes.length,
      passkeys_removed: keys.length,
      sessions_ended: access.sessions,
      refresh_tokens_revoked: access.refreshTokens,
    },
    200,
    NO_STORE,
  )
}

/** `/admin/users`: list and moderate accounts (ADMIN_TOKEN or an admin-scoped token). */
export const usersAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .get('/', queryParams(UserListQuery), async (c) => {
    const query = c.req.valid('query')
    const rows = await listUsers(c.var.db.http, {
      status: query.status,
      q: query.q,
      limit: query.limit,
      after: decodeCursor(query.cursor),
    })
    const { page, nextCursor } = paginate(rows, query.limit, (row) => ({
      createdAt: row.cursorAt,
      id: row.user.id,
    }))
    return c.json({ data: page.map((row) => toUserJson(row.user)), next_cursor: nextCursor }, 200, NO_STORE)
  })
  .post('/:id/approve', (c) => applyTransition(c, 'approve'))
  .post('/:id/suspend', (c) => applyTransition(c, 'suspend'))
  .post('/:id/reinstate', (c) => applyTransition(c, 'reinstate'))
  .post('/:id/promote', (c) => setAdmin(c, true))
  .post('/:id/demote', (c) => setAdmin(c, false))
  .delete('/:id/factors', resetFactors)
