import type { MiddlewareHandler } from 'hono'
import { isAdministrator } from '../auth/principal'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { authenticate } from './authenticate'

/**
 * Admin API guard: `Bearer <ADMIN_TOKEN>` (constant-time compare) or an access token with scope
 * `admin` issued to an `is_admin` user. No or bad credential → 401; a valid one without
 * admin rights → 403.
 */
export function requireAdmin(): MiddlewareHandler<AppEnv> {
  const authenticateCaller = authenticate({ accept: ['admin_token', 'access_token'] })
  return async function requireAdmin(c, next) {
    await authenticateCaller(c, async () => {
      if (!isAdministrator(c.var.principal)) {
        throw new ProblemError('forbidden', { detail: 'This needs the admin token or an admin-scoped token' })
      }
      await next()
    })
  }
}
