import { Hono } from 'hono'
import { auditAdmin } from './admin/audit'
import { clientsAdmin } from './admin/clients'
import { purgeRoute } from './admin/purge'
import { resourceServersAdmin } from './admin/resource-servers'
import { signingKeysAdmin } from './admin/signing-keys'
import { usersAdmin } from './admin/users'
import { apiKeys } from './apikeys/routes'
import { passkeyApi } from './auth/passkeys/routes'
import { auth } from './auth/routes'
import type { AppEnv } from './env'
import { ProblemError } from './errors/problem'
import { renderError } from './errors/render'
import { accountConnections } from './federation/account-connections'
import { allowlistAdmin } from './federation/allowlist-admin'
import { connections } from './federation/connections'
import { passwordLoginGate } from './federation/password-off'
import { identityProvidersAdmin } from './federation/provider-admin'
import { federation } from './federation/routes'
import { connectionTokens } from './federation/token-route'
import { healthz } from './health/healthz'
import { masterKeyAdmin } from './master-key/route'
import { allowedMethodsFinder } from './method-not-allowed'
import { bodyLimit } from './middleware/body-limit'
import { cors } from './middleware/cors'
import { requestContext } from './middleware/request-context'
import { validText } from './middleware/valid-text'
import { oauth } from './oauth'
import { openapiJson } from './openapi/route'
import { accountPage } from './pages/account'
import { devicePages } from './pages/device'
import { forgotPasswordPage } from './pages/forgot-password'
import { homePage } from './pages/home'
import { loginPage } from './pages/login'
import { passkeyPages } from './pages/passkeys'
import { signupPage } from './pages/signup'
import { StaticPathCachingRouter } from './router'
import { serviceKeysAdmin } from './service-keys/routes'
import { tenantsAdmin } from './tenants/admin'
import { tenants } from './tenants/routes'
import { wellKnown } from './wellknown'
import { PROTECTED_RESOURCE_PATH, protectedResource, resourceChallenge } from './wellknown/protected-resource'

/**
 * The Hono app. Middleware order: request context (id, config, db) → body limit → valid text
 * (path, query and body, issue 9) → routes;
 * `onError` is the one renderer for every failure.
 */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>({ router: new StaticPathCachingRouter() })
  // CORS first: a preflight is answered before any config, database or body work.
  app.use(cors())
  app.use(requestContext())
  app.use(resourceChallenge())
  app.use(bodyLimit())
  app.use(validText())
  app.use(passwordLoginGate())

  app.route('/healthz', healthz)
  app.route('/openapi.json', openapiJson)
  app.route('/admin/purge', purgeRoute)
  app.route('/api-keys', apiKeys)
  app.route('/auth/passkeys', passkeyApi)
  app.route('/auth', auth)
  app.route('/auth/connections', connections)
  app.route('/admin/users', usersAdmin)
  app.route('/admin/identity-allowlist', allowlistAdmin)
  app.route('/admin/identity-providers', identityProvidersAdmin)
  app.route('/admin/master-key', masterKeyAdmin)
  app.route('/admin/audit', auditAdmin)
  app.route('/admin/tenants', tenantsAdmin)
  app.route('/tenants', tenants)
  app.route('/login', loginPage)
  app.route('/signup', signupPage)
  app.route('/forgot-password', forgotPasswordPage)
  app.route('/account/connections', accountConnections)
  app.route('/account', accountPage)
  app.route('/', passkeyPages)
  app.route('/federated', federation)
  app.route('/connections', connectionTokens)
  app.route('/', homePage)
  app.route(PROTECTED_RESOURCE_PATH, protectedResource)
  app.route('/.well-known', wellKnown)
  app.route('/oauth', oauth)
  app.route('/admin/clients', clientsAdmin)
  app.route('/admin/resource-servers', resourceServersAdmin)
  app.route('/admin/signing-keys', signingKeysAdmin)
  app.route('/admin/service-keys', serviceKeysAdmin)
  app.route('/device', devicePages)

  const allowedMethods = allowedMethodsFinder(app as unknown as Hono<never>)
  app.notFound((c) => {
    const allowed = allowedMethods(c.req.path)
    if (allowed.length > 0) {
      throw new ProblemError('method_not_allowed', {
        detail: `${c.req.method} is not allowed here; use ${allowed.join(', ')}`,
        headers: { allow: allowed.join(', ') },
      })
    }
    throw new ProblemError('not_found', { detail: `No route for ${c.req.method} ${c.req.path}` })
  })
  app.onError(renderError)
  return app
}
