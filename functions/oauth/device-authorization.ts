import { Hono } from 'hono'
import * as v from 'valibot'
import { insertDeviceCode } from '../../db/queries/oauth-grants'
import { sha256Hex } from '../crypto/hash'
import { randomBytes, randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { documentRoute } from '../openapi/registry'
import { authenticateClient } from './client-auth'
import { DEVICE_CODE_GRANT } from './client-metadata'
import { param, readOAuthBody } from './form'
import { resolveResource, targetScopeNames } from './resources'
import { grantableScope } from './scope'
import { NO_STORE } from './token'

/** RFC 8628 §6.1: consonants only, no vowels (no words) and no look-alikes. */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ'
const USER_CODE_LENGTH = 8
export const DEVICE_POLL_INTERVAL_SECONDS = 5

/** A user code such as `BCDF-GHJK` (20^8 ≈ 2^34.6 possibilities, guessed only by signed-in users). */
export function newUserCode(): string {
  // Bytes of 240 and above are dropped so every letter is equally likely (240 = 12 × 20).
  let code = ''
  while (code.length < USER_CODE_LENGTH) {
    for (const byte of randomBytes(16)) {
      if (byte < 240 && code.length < USER_CODE_LENGTH) {
        code += USER_CODE_ALPHABET[byte % 20]
      }
    }
  }
  return `${code.slice(0, 4)}-${code.slice(4)}`
}

/** What users type: case and separators do not matter. */
export function normalizeUserCode(input: string): string {
  return input.toUpperCase().replace(/[^A-Z]/g, '')
}

/** POST /oauth/device_authorization (RFC 8628 §3.1-3.2). Two round trips. */
export const deviceAuthorization = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const client = await authenticateClient(c, c.var.db.http, params, now)
  if (!client.grantTypes.includes(DEVICE_CODE_GRANT)) {
    throw new OAuthError('unauthorized_client', { description: 'This client may not use the device grant' })
  }
  // RFC 8707: unknown → invalid_target; a known resource lends its scopes (issue 11).
  const target = await resolveResource(c.var.db.http, c.var.config, param(params, 'resource'))
  const scope = grantableScope(
    param(params, 'scope'),
    client.scope,
    ['admin', 'apikeys:verify', 'tenant:admin'],
    targetScopeNames(target),
  )
  const resource = target?.identifier ?? null
  const deviceCode = randomToken(32)
  const userCode = newUserCode()
  await insertDeviceCode(c.var.db.http, {
    deviceCodeHash: await sha256Hex(deviceCode),
    userCodeHash: await sha256Hex(normalizeUserCode(userCode)),
    clientId: client.id,
    scope: scope.join(' '),
    resource,
    intervalSeconds: DEVICE_POLL_INTERVAL_SECONDS,
    expiresAt: new Date(now.getTime() + c.var.config.deviceCodeTtlSeconds * 1000),
  })
  const verificationUri = `${c.var.config.issuer}/device`
  return c.json(
    {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: verificationUri,
      verification_uri_complete: `${verificationUri}?user_code=${encodeURIComponent(userCode)}`,
      expires_in: c.var.config.deviceCodeTtlSeconds,
      interval: DEVICE_POLL_INTERVAL_SECONDS,
    },
    200,
    NO_STORE,
  )
})

documentRoute({
  method: 'post',
  path: '/oauth/device_authorization',
  summary: 'Device authorization (RFC 8628)',
  tags: ['oauth'],
  requestBody: {
    schema: v.object({ client_id: v.optional(v.string()), scope: v.optional(v.string()) }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: {
    200: {
      description: 'Codes',
      schema: v.object({
        device_code: v.string(),
        user_code: v.string(),
        verification_uri: v.string(),
        interval: v.number(),
      }),
    },
  },
})
