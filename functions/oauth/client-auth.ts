import type { Context } from 'hono'
import type { Executor } from '../../db/client'
import { findClient, findClientStatement } from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { spendAssertionJtiStatement } from '../../db/queries/proof-jtis'
import { secretsEqual } from '../crypto/compare'
import { fromBase64Url } from '../crypto/encoding'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import {
  assertionSubject,
  JWT_BEARER_ASSERTION,
  settleAgentAssertion,
  verifyAgentAssertion,
} from './client-assertion'
import { type OAuthParams, param } from './form'

export interface ClientCredentials {
  clientId: string
  secret: string | undefined
  method: 'client_secret_basic' | 'client_secret_post' | 'none' | 'private_key_jwt'
  /** RFC 7523 §2.2 `client_assertion` (method private_key_jwt). */
  assertion?: string
}

const MAX_CLIENT_ID = 200

function basicCredentials(header: string | undefined): ClientCredentials | undefined {
  const match = header?.match(/^Basic[ ]+([A-Za-z0-9+/=_-]+)[ ]*$/i)
  if (header === undefined || !/^Basic /i.test(header)) {
    return undefined
  }
  const decoded = match?.[1] === undefined ? undefined : fromBase64Url(match[1])
  const text = decoded === undefined ? undefined : new TextDecoder().decode(decoded)
  const colon = text?.indexOf(':') ?? -1
  if (text === undefined || colon <= 0) {
    throw new OAuthError('invalid_client', { description: 'Malformed Basic credentials', basicAuth: true })
  }
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before Base64.
    const clientId = decodeURIComponent(text.slice(0, colon).replace(/\+/g, ' '))
    const secret = decodeURIComponent(text.slice(colon + 1).replace(/\+/g, ' '))
    return { clientId, secret, method: 'client_secret_basic' }
  } catch {
    throw new OAuthError('invalid_client', { description: 'Malformed Basic credentials', basicAuth: true })
  }
}

/**
 * The credentials a client presented (no database): HTTP Basic, else `client_id` and
 * `client_secret` in the body, else a bare `client_id` (public client). Using two methods at
 * once is refused (RFC 6749 §2.3).
 */
export function readClientCredentials(c: Context<AppEnv>, params: OAuthParams): ClientCredentials {
  const basic = basicCredentials(c.req.header('authorization'))
  const bodyId = param(params, 'client_id', MAX_CLIENT_ID)
  const bodySecret = param(params, 'client_secret', 500)
  const assertionType = param(params, 'client_assertion_type', 200)
  if (assertionType !== undefined || params.has('client_assertion')) {
    const assertion = param(params, 'client_assertion', 8192)
    if (basic !== undefined || bodySecret !== undefined) {
      throw new OAuthError('invalid_request', { description: 'Use one client authentication method' })
    }
    if (assertionType !== JWT_BEARER_ASSERTION || assertion === undefined) {
      throw new OAuthError('invalid_client', {
        description: 'Client authentication failed',
        log: 'bad assertion type',
      })
    }
    const subject = assertionSubject(assertion)
    if (subject === undefined || (bodyId !== undefined && bodyId !== subject)) {
      throw new OAuthError('invalid_client', {
        description: 'Client authentication failed',
        log: 'assertion sub',
      })
    }
    return { clientId: subject, secret: undefined, method: 'private_key_jwt', assertion }
  }
  if (basic !== undefined) {
    if (bodySecret !== undefined || (bodyId !== undefined && bodyId !== basic.clientId)) {
      throw new OAuthError('invalid_request', { description: 'Use one client authentication method' })
    }
    return basic
  }
  if (bodyId === undefined) {
    throw new OAuthError('invalid_client', { description: 'Client authentication is required' })
  }
  return {
    clientId: bodyId,
    secret: bodySecret,
    method: bodySecret === undefined ? 'none' : 'client_secret_post',
  }
}

/**
 * Checks presented credentials against the client row: the client must exist and be enabled;
 * confidential clients must present their secret (compared as SHA-256 in constant time) with
 * the method they registered (Basic or post); public clients present none; `private_key_jwt`
 * is refused here (see authenticateClient).
 */
export async function checkClientCredentials(
  client: OAuthClientRow | undefined,
  credentials: ClientCredentials,
  now: Date,
): Promise<OAuthClientRow> {
  const basicAuth = credentials.method === 'client_secret_basic'
  const fail = (log: string) =>
    new OAuthError('invalid_client', { description: 'Client authentication failed', basicAuth, log })
  if (client === undefined) {
    // Same work as a real check, so timing does not reveal which client ids exist.
    await secretsEqual(credentials.secret ?? '', 'x')
    throw fail('unknown client')
  }
  if (client.disabledAt !== null) {
    throw fail('client disabled')
  }
  if (client.tokenEndpointAuthMethod === 'private_key_jwt' || credentials.method === 'private_key_jwt') {
    // An assertion is checked by authenticateClient (or the token endpoint, or introspection):
    // cached keys, then its jti spent in the statement that reads the client. Never here.
    throw fail(`auth method ${credentials.method} but registered ${client.tokenEndpointAuthMethod}`)
  }
  if (client.tokenEndpointAuthMethod === 'none') {
    if (credentials.method !== 'none') {
      throw fail('public client presented a secret')
    }
    return client
  }
  if (credentials.secret === undefined || client.clientSecretHash === null) {
    throw fail('secret missing')
  }
  // RFC 7591 §2: the registered method is the one the client uses; another one is refused
  // (a secret sent in a form body where Basic was registered may be logged by a proxy).
  if (credentials.method !== client.tokenEndpointAuthMethod) {
    await secretsEqual(credentials.secret, 'x')
    throw fail(`auth method ${credentials.method} but registered ${client.tokenEndpointAuthMethod}`)
  }
  const matches = await secretsEqual(await sha256Hex(credentials.secret), client.clientSecretHash)
  if (!matches) {
    throw fail('wrong secret')
  }
  if (client.clientSecretExpiresAt !== null && client.clientSecretExpiresAt.getTime() <= now.getTime()) {
    throw fail('secret expired')
  }
  return client
}

/**
 * Reads, looks up (one round trip) and checks the calling client. An agent's assertion is checked
 * against its cached keys first, and the row read and the `jti` spent in one batch.
 */
export async function authenticateClient(
  c: Context<AppEnv>,
  x: Executor,
  params: OAuthParams,
  now: Date,
): Promise<OAuthClientRow> {
  const credentials = readClientCredentials(c, params)
  const { config } = c.var
  const endpoint = `${config.issuer}${c.req.path}`
  const { clientId, assertion } = credentials
  if (credentials.method === 'private_key_jwt' && assertion !== undefined) {
    const db = c.var.db.http
    const verified = await verifyAgentAssertion(config, db, clientId, assertion, endpoint, now)
    const [rows, spent] = await db.batch([
      findClientStatement(db, clientId),
      spendAssertionJtiStatement(db, { clientId, ...verified }),
    ])
    return settleAgentAssertion(config, rows[0], spent, { clientId, assertion, endpoint, now })
  }
  return checkClientCredentials(await findClient(x, clientId), credentials, now)
}
