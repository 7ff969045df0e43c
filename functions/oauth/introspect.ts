import { Hono } from 'hono'
import * as v from 'valibot'
import { findClient } from '../../db/queries/oauth-clients'
import { findLiveRefreshToken } from '../../db/queries/oauth-grants'
import { readAccessTokenState } from '../../db/queries/oauth-tokens'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { documentRoute } from '../openapi/registry'
import {
  type AccessTokenClaims,
  isClientToken,
  principalFromState,
  verifyAccessTokenSignature,
} from '../tokens/verify-access-token'
import { checkClientCredentials, readClientCredentials } from './client-auth'
import { readOAuthBody, requiredParam } from './form'
import { NO_STORE } from './token'

const INACTIVE = { active: false } as const

function looksLikeJwt(token: string): boolean {
  return token.split('.').length === 3
}

/**
 * POST /oauth/introspect (RFC 7662), client authentication required. Revoked, expired,
 * suspended-user or foreign tokens are `{ active: false }`. Round trips for an access token:
 * ONE (caller client, revocation and user status together); for a refresh token: two.
 */
export const introspect = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const credentials = readClientCredentials(c, params)
  const token = requiredParam(params, 'token', 8192)
  if (looksLikeJwt(token)) {
    let claims: AccessTokenClaims | undefined
    try {
      claims = await verifyAccessTokenSignature(c.var.db, c.var.config, token, 'any', now)
    } catch (error) {
      if (!(error instanceof OAuthError)) {
        throw error
      }
    }
    if (claims !== undefined) {
      const state = await readAccessTokenState(c.var.db.http, {
        clientId: credentials.clientId,
        jti: claims.jti,
        userId: isClientToken(claims) ? null : claims.sub,
        tokenClientId: claims.client_id,
      })
      await checkClientCredentials(state?.client, credentials, now)
      try {
        principalFromState(claims, state)
      } catch (error) {
        if (error instanceof OAuthError) {
          return c.json(INACTIVE, 200, NO_STORE)
        }
        throw error
      }
      return c.json(
        {
          active: true,
          scope: claims.scope ?? '',
          client_id: claims.client_id,
          sub: claims.sub,
          aud: claims.aud,
          iss: claims.iss,
          exp: claims.exp,
          iat: claims.iat,
          jti: claims.jti,
          token_type: 'Bearer',
          ...(claims.auth_time === undefined ? {} : { auth_time: claims.auth_time }),
        },
        200,
        NO_STORE,
      )
    }
    await checkClientCredentials(await findClient(c.var.db.http, credentials.clientId), credentials, now)
    return c.json(INACTIVE, 200, NO_STORE)
  }
  const client = await checkClientCredentials(
    await findClient(c.var.db.http, credentials.clientId),
    credentials,
    now,
  )
  // Refresh tokens are introspectable only by the client they were issued to.
  const refresh =
    token.length <= 200
      ? await findLiveRefreshToken(c.var.db.http, await sha256Hex(token), client.id, now)
      : undefined
  if (refresh === undefined) {
    return c.json(INACTIVE, 200, NO_STORE)
  }
  return c.json(
    {
      active: true,
      scope: refresh.scope,
      client_id: client.clientId,
      sub: refresh.user_id,
      iss: c.var.config.issuer,
      exp: refresh.exp,
      iat: refresh.iat,
      token_type: 'refresh_token',
    },
    200,
    NO_STORE,
  )
})

documentRoute({
  method: 'post',
  path: '/oauth/introspect',
  summary: 'Token introspection (RFC 7662)',
  tags: ['oauth'],
  security: ['clientBasic'],
  requestBody: {
    schema: v.object({ token: v.string(), token_type_hint: v.optional(v.string()) }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: {
    200: {
      description: 'Token state',
      schema: v.object({
        active: v.boolean(),
        scope: v.optional(v.string()),
        client_id: v.optional(v.string()),
      }),
    },
  },
})
