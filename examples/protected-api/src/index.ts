import { Hono } from 'hono'
import { type PortcullisVariables, requireAuth } from '../../../sdk/src/hono'
// In your project: '@portcullis/sdk' and '@portcullis/sdk/hono' (this repository imports the source).
import { clientCredentials, createPortcullis, type Portcullis } from '../../../sdk/src/index'

export interface ExampleBindings {
  PORTCULLIS_ISSUER: string
  API_AUDIENCE: string
  PORTCULLIS_CLIENT_ID: string
  PORTCULLIS_CLIENT_SECRET: string
}

/** The API: reading needs any valid key or token, writing needs the `things:write` scope. */
export function createProtectedApi(portcullis: Portcullis) {
  return new Hono<{ Variables: PortcullisVariables }>()
    .get('/health', (c) => c.text('ok'))
    .get('/v1/things', requireAuth({ portcullis }), (c) => {
      const auth = c.var.auth
      const caller = auth.kind === 'api_key' ? `key:${auth.key.keyId}` : `client:${auth.claims.client_id}`
      return c.json({ caller, things: [] })
    })
    .post('/v1/things', requireAuth({ portcullis, scopes: ['things:write'] }), (c) =>
      c.json({ created: true }, 201),
    )
}

let cached: { env: ExampleBindings; app: ReturnType<typeof createProtectedApi> } | undefined

/** One client per isolate, so the JWKS and the caller's token are cached across requests. */
function appFor(env: ExampleBindings) {
  if (cached?.env !== env) {
    const portcullis = createPortcullis({
      issuer: env.PORTCULLIS_ISSUER,
      audience: env.API_AUDIENCE,
      credentials: clientCredentials({
        clientId: env.PORTCULLIS_CLIENT_ID,
        clientSecret: env.PORTCULLIS_CLIENT_SECRET,
      }),
    })
    cached = { env, app: createProtectedApi(portcullis) }
  }
  return cached.app
}

// biome-ignore lint/style/noDefaultExport: the Workers runtime loads the module's default as the handler.
export default {
  fetch(request: Request, env: ExampleBindings, ctx: ExecutionContext): Response | Promise<Response> {
    return appFor(env).fetch(request, env, ctx)
  },
}
