import type { MiddlewareHandler } from 'hono'
import { createDb, withRequestScope } from '../../db/client'
import { loadConfig } from '../config'
import type { AppEnv } from '../env'

export const REQUEST_ID_HEADER = 'x-request-id'

/**
 * Sets `requestId`, `config` (parsed once per isolate) and `db` (nothing connects until a
 * query runs), and tags the request's database traffic with its id for round-trip counting.
 */
export function requestContext(): MiddlewareHandler<AppEnv> {
  return async function requestContext(c, next) {
    const requestId = crypto.randomUUID()
    c.set('requestId', requestId)
    c.header(REQUEST_ID_HEADER, requestId)
    const config = loadConfig(c.env)
    c.set('config', config)
    c.set(
      'db',
      createDb({
        databaseUrl: config.databaseUrl,
        gatewayUrl: config.dbGatewayUrl,
        timeoutMs: config.dbTimeoutMs,
        waitUntil: (promise) => c.executionCtx.waitUntil(promise),
      }),
    )
    await withRequestScope(requestId, next)
    // DESIGN: every response has a content-type, 204s and redirects included.
    if (!c.res.headers.has('content-type')) {
      c.res.headers.set('content-type', 'text/plain; charset=utf-8')
    }
  }
}
