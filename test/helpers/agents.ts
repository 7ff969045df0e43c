import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { adminClient, ISSUER, postForm, type TestClient } from './oauth'

/** RFC 7523 §2.2 `client_assertion_type`. */
export const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const TOKEN_URL = `${ISSUER}/oauth/token`

/** An agent client (private_key_jwt, RFC 7523) with the private key its assertions are signed with. */
export interface Agent {
  client: TestClient
  privateKey: CryptoKey
  kid: string
}

/** Registers an agent (admin API) with a fresh key of `alg` in its inline `jwks`. */
export async function agent(alg = 'ES256', extra: Record<string, unknown> = {}): Promise<Agent> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const kid = crypto.randomUUID()
  const jwk = { ...(await exportJWK(publicKey)), kid, alg }
  const client = await adminClient({
    client_name: 'Agent',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: alg,
    jwks: { keys: [jwk] },
    grant_types: ['client_credentials'],
    scope: 'apikeys:verify',
    ...extra,
  })
  return { client, privateKey, kid }
}

export interface AssertionOptions {
  aud?: string
  expIn?: number
  iatOffset?: number
  jti?: string
  key?: CryptoKey
  kid?: string
  alg?: string
  sub?: string
}

/** A signed client assertion; every claim can be bent to build the bad cases. */
export function assertion(a: Agent, o: AssertionOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ jti: o.jti ?? crypto.randomUUID() })
    .setProtectedHeader({ alg: o.alg ?? 'ES256', kid: o.kid ?? a.kid })
    .setIssuer(a.client.client_id)
    .setSubject(o.sub ?? a.client.client_id)
    .setAudience(o.aud ?? TOKEN_URL)
    .setIssuedAt(now + (o.iatOffset ?? 0))
    .setExpirationTime(now + (o.expIn ?? 60))
    .sign(o.key ?? a.privateKey)
}

/** POST /oauth/token authenticated by `clientAssertion` (client_credentials unless `extra` says). */
export function tokenWith(
  clientAssertion: string,
  extra: Record<string, string> = {},
  headers: Record<string, string> = {},
): Promise<Response> {
  return postForm(
    '/oauth/token',
    {
      grant_type: 'client_credentials',
      client_assertion_type: ASSERTION_TYPE,
      client_assertion: clientAssertion,
      ...extra,
    },
    headers,
  )
}
