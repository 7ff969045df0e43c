import { type Context, Hono } from 'hono'
import {
  claimRefreshLease,
  findUserIdentity,
  markIdentityBroken,
  releaseRefreshLease,
  storeRefreshedTokens,
} from '../../db/queries/federation'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { errorForLog, log } from '../log'
import { authenticate } from '../middleware/authenticate'
import { documentRoute } from '../openapi/registry'
import { resolveProvider } from './providers'
import { openSealed, sealTokens } from './tokens'
import { refreshUpstream } from './upstream'

const NO_STORE = { 'cache-control': 'no-store' }
/** A token this close to expiry is refreshed first, so the caller gets one it can still use. */
const EXPIRY_SKEW_MS = 60_000
/** How often a request waiting for another's refresh looks again. */
const WAIT_STEP_MS = 50

export const CONNECTIONS_READ = 'connections:read'

documentRoute({
  method: 'get',
  path: '/connections/{provider}/token',
  summary:
    'A fresh upstream access token of the user an access token with connections:read was issued to (refreshed once under concurrency)',
  tags: ['auth'],
  security: ['bearerToken'],
  responses: {
    200: { description: '{ access_token, token_type, expires_at, scope }' },
    403: { description: 'The access token lacks connections:read' },
    404: { description: 'The user has no connection to this provider' },
    409: {
      description: 'The connection is broken (the provider refused the refresh): sign in with it again',
    },
    503: { description: 'The provider could not be reached; retry' },
  },
})

function broken(): ProblemError {
  return new ProblemError('conflict', {
    detail: 'The connection is broken: the provider refused to refresh it. Sign in with the provider again.',
  })
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Refreshes when the stored token is (about to be) expired. Single flight in the database: the
 * request that claims the row's lease calls the provider; the others wait for the lease to go
 * and read what it stored. A provider refusal marks the connection broken and deletes its tokens.
 */
async function freshToken(c: Context<AppEnv>, userId: string, providerId: string) {
  const config = c.var.config
  const db = c.var.db.http
  const provider = await resolveProvider(db, config, providerId)
  if (provider === undefined) {
    throw new ProblemError('not_found', { detail: 'No such provider' })
  }
  const deadline = Date.now() + config.federation.timeoutMs + 5_000
  while (Date.now() < deadline) {
    const row = await findUserIdentity(db, userId, provider.id)
    if (row === undefined) {
      throw new ProblemError('not_found', { detail: `No ${provider.name} connection` })
    }
    if (row.brokenAt !== null || row.accessTokenSealed === null) {
      throw broken()
    }
    const now = new Date()
    if (row.tokenExpiresAt === null || row.tokenExpiresAt.getTime() > now.getTime() + EXPIRY_SKEW_MS) {
      return {
        access_token: await openSealed(config, row.accessTokenSealed, row.id, 'access'),
        token_type: 'Bearer',
        expires_at: row.tokenExpiresAt?.toISOString() ?? null,
        scope: row.tokenScope,
      }
    }
    if (row.refreshTokenSealed === null) {
      await markIdentityBroken(db, row.id, now)
      throw broken()
    }
    const leaseUntil = new Date(now.getTime() + config.federation.timeoutMs + 5_000)
    if (!(await claimRefreshLease(db, row.id, row.tokenExpiresAt, now, leaseUntil))) {
      await sleep(WAIT_STEP_MS) // another request is refreshing: read again
      continue
    }
    const refreshToken = await openSealed(config, row.refreshTokenSealed, row.id, 'refresh')
    const outcome = await refreshUpstream(provider, refreshToken, config.federation.timeoutMs)
    if (outcome.kind === 'refused') {
      log('warn', 'federation_refresh_refused', {
        requestId: c.var.requestId,
        provider: provider.id,
        error: outcome.error,
      })
      await markIdentityBroken(db, row.id, new Date())
      throw broken()
    }
    if (outcome.kind === 'failed') {
      log('warn', 'federation_refresh_failed', {
        requestId: c.var.requestId,
        provider: provider.id,
        reason: outcome.reason,
      })
      await releaseRefreshLease(db, row.id).catch((error: unknown) =>
        log('warn', 'federation_lease_release_failed', {
          requestId: c.var.requestId,
          error: errorForLog(error),
        }),
      )
      throw new ProblemError('overloaded', {
        detail: `${provider.name} could not be reached; retry shortly`,
        retryAfterSeconds: 5,
      })
    }
    await storeRefreshedTokens(
      db,
      row.id,
      await sealTokens(config, row.id, outcome.tokens, new Date(), row.refreshTokenSealed),
    )
    // The loop reads the stored token back and answers with it, as the waiting requests do.
  }
  throw new ProblemError('overloaded', {
    detail: 'The refresh did not finish in time; retry',
    retryAfterSeconds: 5,
  })
}

/** `GET /connections/{provider}/token`: for resource servers holding the user's access token. */
export const connectionTokens = new Hono<AppEnv>()
  .use(authenticate({ accept: ['access_token'] }))
  .get('/:provider/token', async (c) => {
    const principal = c.var.principal
    if (principal.kind !== 'user') {
      throw new ProblemError('forbidden', { detail: 'The access token must be issued to a user' })
    }
    if (!principal.scopes.has(CONNECTIONS_READ)) {
      throw new ProblemError('insufficient_scope', { detail: `This needs the ${CONNECTIONS_READ} scope` })
    }
    return c.json(await freshToken(c, principal.userId, c.req.param('provider')), 200, NO_STORE)
  })
