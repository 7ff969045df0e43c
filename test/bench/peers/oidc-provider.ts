import { exportJWK, generateKeyPair } from 'jose'
import Provider from 'oidc-provider'

/**
 * Peer: panva's oidc-provider on Node with its in-memory adapter (the bench's reference for
 * client_credentials and introspection). Started by run.ts as its own process; prints one
 * line `READY {json}` with its URL and client credentials.
 *
 * Resource `urn:bench:jwt` gets ES256 JWT access tokens (RFC 9068), the shape ours issues.
 * oidc-provider refuses to introspect structured (JWT) tokens, so introspection is measured on
 * tokens for `urn:bench:opaque`: opaque tokens kept by the in-memory adapter.
 */
const JWT_RESOURCE = 'urn:bench:jwt'
const OPAQUE_RESOURCE = 'urn:bench:opaque'
const CLIENT_ID = 'bench-client'
const CLIENT_SECRET = 'bench-client-secret-0123456789abcdefghijklmnopqrstuvwxyz'

async function signingKey(alg: 'ES256' | 'RS256') {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return { ...(await exportJWK(privateKey)), alg, use: 'sig', kid: `bench-${alg.toLowerCase()}` }
}

async function main(): Promise<void> {
  const port = Number(process.argv[2] ?? '0')
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error('usage: oidc-provider.ts <port>')
  }
  const issuer = `http://127.0.0.1:${port}`
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'api',
      },
    ],
    jwks: { keys: [await signingKey('ES256'), await signingKey('RS256')] },
    scopes: ['api'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => JWT_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) =>
          resource === OPAQUE_RESOURCE
            ? { scope: 'api', accessTokenFormat: 'opaque' }
            : {
                scope: 'api',
                audience: JWT_RESOURCE,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: 'ES256' } },
              },
      },
    },
  })
  // Nothing logged per request: a quiet server, like ours under --log-level warn.
  provider.on('server_error', (_ctx, error) => {
    process.stderr.write(`oidc-provider server_error: ${error.message}\n`)
  })
  const server = provider.listen(port, '127.0.0.1')
  server.once('listening', () => {
    process.stdout.write(
      `READY ${JSON.stringify({
        url: issuer,
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        jwtResource: JWT_RESOURCE,
        opaqueResource: OPAQUE_RESOURCE,
      })}\n`,
    )
  })
  const stop = () => {
    server.close(() => process.exit(0))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`)
  process.exit(1)
})
