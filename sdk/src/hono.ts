import type { MiddlewareHandler } from 'hono'
import { type AuthenticateOptions, authenticateRequest, type PortcullisAuth } from './fetch-handler.js'

export type { PortcullisAuth } from './fetch-handler.js'

/** Hono variables set by `requireAuth`: `c.var.auth`. */
export interface PortcullisVariables {
  auth: PortcullisAuth
}

/**
 * Hono middleware: authenticates the request with an API key or access token through
 * Portcullis and sets `c.var.auth`, or answers 401/403/429/503 itself.
 */
export function requireAuth(
  options: AuthenticateOptions,
): MiddlewareHandler<{ Variables: PortcullisVariables }> {
  return async function requireAuth(c, next) {
    const result = await authenticateRequest(c.req.raw, options)
    if (!result.ok) {
      return result.response
    }
    c.set('auth', result.auth)
    await next()
    return undefined
  }
}
