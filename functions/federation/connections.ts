import { type Context, Hono } from 'hono'
import { listIdentities, unlinkIdentity } from '../../db/queries/federation'
import { isUuid } from '../../db/uuid'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { authenticate } from '../middleware/authenticate'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'

const NO_STORE = { 'cache-control': 'no-store' }

function signedInUser(c: Context<AppEnv>): string {
  const principal = c.var.principal
  if (principal.kind !== 'user') {
    throw new ProblemError('forbidden', { detail: 'This endpoint acts on a signed-in user' })
  }
  return principal.userId
}

documentRoute({
  method: 'get',
  path: '/auth/connections',
  summary: 'The signed-in user’s connected providers (GitHub, OpenID providers)',
  tags: ['auth'],
  security: ['sessionCookie'],
  responses: {
    200: { description: '{ connections: [{ id, provider, username, email, created_at, last_login_at }] }' },
  },
})
documentRoute({
  method: 'delete',
  path: '/auth/connections/{id}',
  summary: 'Disconnect a provider; refused (409 conflict) when it is the last way to sign in',
  tags: ['auth'],
  security: ['sessionCookie'],
  responses: {
    204: { description: 'Disconnected (audited as identity_unlinked in the same statement)' },
    404: { description: 'No such connection of this user' },
    409: { description: 'The last way to sign in: set a password or connect another provider first' },
  },
})

/** `/auth/connections`: list and unlink the signed-in user's external identities (session only). */
export const connections = new Hono<AppEnv>()
  .use(authenticate({ accept: ['session'] }))
  .get('/', async (c) => {
    const rows = await listIdentities(c.var.db.http, signedInUser(c))
    return c.json(
      {
        connections: rows.map((r) => ({
          id: r.id,
          provider: r.provider,
          username: r.username,
          email: r.email,
          created_at: r.createdAt.toISOString(),
          last_login_at: r.lastLoginAt?.toISOString() ?? null,
        })),
      },
      200,
      NO_STORE,
    )
  })
  .delete('/:id', async (c) => {
    const userId = signedInUser(c)
    const id = c.req.param('id')
    const outcome = isUuid(id)
      ? await unlinkIdentity(c.var.db.http, userId, id, clientIp(c), c.var.config.federation.passwordLogin)
      : 'not_found'
    if (outcome === 'not_found') {
      throw new ProblemError('not_found', { detail: 'No such connection' })
    }
    if (outcome === 'last_method') {
      throw new ProblemError('conflict', {
        detail: 'This is your last way to sign in: set a password or connect another provider first',
      })
    }
    return c.body(null, 204, NO_STORE)
  })
