import { Hono } from 'hono'
import * as v from 'valibot'
import { findClientStatement } from '../../db/queries/oauth-clients'
import { findLiveRefreshTokenStatement, liveRefreshToken } from '../../db/queries/oauth-grants'
import { accessTokenStateStatement, type OAuthClientRow } from '../../db/queries/oauth-tokens'
import { spendAssertionJtiStatement } from '../../db/queries/proof-jtis'
import { findLiveServiceKey, findLiveServiceKeyStatement } from '../../db/queries/service-keys'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { accessCredential } from '../middleware/access-credential'
import { documentRoute } from '../openapi/registry'
import { serviceKeyCredential } from '../service-keys/authenticate'
import {
  type AccessTokenClaims,
  type ClaimsToConfirm,
  confirmedClaims,
  isClientToken,
  principalFromState,
  verifyAccessTokenSignatureToConfirm,
} from '../tokens/verify-access-token'
import { settleAgentAssertion, type VerifiedAssertion, verifyAgentAssertion } from './client-assertion'
import { checkClientCredentials, readClientCredentials } from './client-auth'
import { PRIVILEGED_SCOPES } from './client-metadata'
import { readOAuthBody, requiredParam } from './form'
import { NO_STORE } from './token'

const INACTIVE = { active: false } as const

function looksLikeJwt(token: string): boolean {
  return token.split('.').length === 3
}

/**
 * RFC 7662 §4 (token scanning): a client sees the access tokens issued to it; a client an
 * administrator granted a privileged scope (a resource server such as an API gateway) sees all.
 * Every other token is `{ active: false }`, exactly as an unknown one.
 */
function mayIntrospect(caller: OAuthClientRow, claims: AccessTokenClaims): boolean {
  return claims.client_id === caller.clientId || caller.scope.split(' ').some((s) => PRIVILEGED_SCOPES.has(s))
}

/**
 * POST /oauth/introspect (RFC 7662): confidential clients only (a public client gets 401
 * `invalid_client`). Revoked, expired, suspended-user or not-yours tokens are `{ active: false }`.
 * Round trips: ONE for an access token (caller client, revocation and user status together) and
 * ONE for a refresh token (client and token read in one batch).
 */
export const introspect = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const bearer = accessCredential(c.req.header('authorization'))
  const serviceKey =
    bearer?.scheme === 'Bearer' && bearer.token !== undefined
      ? await serviceKeyCredential(bearer.token)
      : undefined
  if (serviceKey !== undefined) {
    return c.json(await introspectAsService(c.var, params, serviceKey, now), 200, NO_STORE)
  }
  const credentials = readClientCredentials(c, params)
  // RFC 7662 §2.1 and discovery: only a confidential client, authenticated, may introspect.
  if (credentials.method === 'none') {
    throw new OAuthError('invalid_client', { description: 'Introspection needs client authentication' })
  }
  const token = requiredParam(params, 'token', 8192)
  const db = c.var.db.http
  const endpoint = `${c.var.config.issuer}${c.req.path}`
  // An agent's assertion is checked against its cached keys (no round trip when warm) and its
  // jti spent in the batch that reads what the answer needs: one round trip in all (issue 16).
  const agent =
    credentials.method === 'private_key_jwt' && credentials.assertion !== undefined
      ? {
          verified: await verifyAgentAssertion(
            c.var.config,
            db,
            credentials.clientId,
            credentials.assertion,
            endpoint,
            now,
          ),
          input: { clientId: credentials.clientId, assertion: credentials.assertion, endpoint, now },
        }
      : undefined
  const spendStatement = (verified: VerifiedAssertion) =>
    spendAssertionJtiStatement(db, { clientId: credentials.clientId, ...verified })
  const callerFrom = (row: OAuthClientRow | undefined, spent: unknown) =>
    agent === undefined
      ? checkClientCredentials(row, credentials, now)
      : settleAgentAssertion(c.var.config, row, spent, agent.input)
  if (looksLikeJwt(token)) {
    const verified = await signedClaims(c.var, token, now)
    if (verified !== undefined) {
      const claims = verified.claims
      const stateQuery = accessTokenStateStatement(db, {
        clientId: credentials.clientId,
        jti: claims.jti,
        userId: isClientToken(claims) ? null : claims.sub,
        tokenClientId: claims.client_id,
      })
      const [states, spent] =
        agent === undefined
          ? [await stateQuery, undefined]
          : await db.batch([stateQuery, spendStatement(agent.verified)])
      const state = states[0]
      const caller = await callerFrom(state?.client, spent)
      if (!(await settled(c.var, token, verified, state?.keyEpoch ?? null, now))) {
        return c.json(INACTIVE, 200, NO_STORE)
      }
      if (!mayIntrospect(caller, claims)) {
        return c.json(INACTIVE, 200, NO_STORE)
      }
      try {
        principalFromState(claims, state)
      } catch (error) {
        if (error instanceof OAuthError) {
          return c.json(INACTIVE, 200, NO_STORE)
        }
        throw error
      }
      return c.json(activeAccessToken(claims, state?.tokenClientTenantId ?? null), 200, NO_STORE)
    }
    const [clients, spent] =
      agent === undefined
        ? [await findClientStatement(db, credentials.clientId), undefined]
        : await db.batch([findClientStatement(db, credentials.clientId), spendStatement(agent.verified)])
    await callerFrom(clients[0], spent)
    return c.json(INACTIVE, 200, NO_STORE)
  }
  // Refresh tokens are introspectable only by the client they were issued to. The client and the
  // token are read in one batch (one round trip); the token counts only once the client is checked.
  const tokenHash = token.length <= 200 ? await sha256Hex(token) : ''
  const clientQuery = findClientStatement(db, credentials.clientId)
  const refreshQuery = findLiveRefreshTokenStatement(db, tokenHash, credentials.clientId, now)
  const [clients, tokens, spent] =
    agent === undefined
      ? [...(await db.batch([clientQuery, refreshQuery])), undefined]
      : await db.batch([clientQuery, refreshQuery, spendStatement(agent.verified)])
  const client = await callerFrom(clients[0], spent)
  const refresh = liveRefreshToken(tokens)
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

/** `tenantId`: the tenant the token was issued in (its client's), also for tokens without the claim. */
function activeAccessToken(claims: AccessTokenClaims, tenantId: string | null) {
  return {
    active: true,
    scope: claims.scope ?? '',
    client_id: claims.client_id,
    ...(tenantId === null ? {} : { tenant_id: tenantId }),
    sub: claims.sub,
    aud: claims.aud,
    iss: claims.iss,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    // RFC 9449 §6.2: a bound token says so, with the key it is bound to.
    token_type: claims.cnf?.jkt === undefined ? 'Bearer' : 'DPoP',
    ...(claims.cnf?.jkt === undefined ? {} : { cnf: { jkt: claims.cnf.jkt } }),
    ...(claims.auth_time === undefined ? {} : { auth_time: claims.auth_time }),
  }
}

/**
 * The claims of one of our access tokens whose signature checks out, else undefined. The check may
 * use a key ring past its TTL: the state statement's key-set epoch settles it (`settled`).
 */
async function signedClaims(
  vars: AppEnv['Variables'],
  token: string,
  now: Date,
): Promise<ClaimsToConfirm | undefined> {
  try {
    return await verifyAccessTokenSignatureToConfirm(vars.db, vars.config, token, 'any', now)
  } catch (error) {
    if (error instanceof OAuthError) {
      return undefined
    }
    throw error
  }
}

/** Whether the signature check stands once the state statement's key-set epoch is known. */
async function settled(
  vars: AppEnv['Variables'],
  token: string,
  verified: ClaimsToConfirm,
  statementEpoch: string | null,
  now: Date,
): Promise<boolean> {
  try {
    await confirmedClaims(vars.db, vars.config, token, 'any', verified, statementEpoch, now)
    return true
  } catch (error) {
    if (error instanceof OAuthError) {
      return false
    }
    throw error
  }
}

/**
 * Introspection by a resource server holding a service key (`Authorization: Bearer psk_…`,
 * issue 10) instead of client credentials. An unknown, revoked, expired or malformed key is 401
 * `invalid_client`. A platform key sees every access token; a tenant's key only those issued in
 * its tenant (to its clients; others are `{ active: false }`, as unknown ones), and none once the
 * tenant is deactivated. Refresh tokens stay introspectable only by their own client:
 * `{ active: false }`. Round trips: 0 for a malformed key, else ONE (issue 16): the key alone, or
 * for a well-signed access token the key and the token's revocation, client, tenant and user
 * state in one batch.
 */
async function introspectAsService(
  vars: AppEnv['Variables'],
  params: Parameters<typeof requiredParam>[0],
  serviceKey: { hash: string } | 'malformed',
  now: Date,
): Promise<Record<string, unknown>> {
  const refused = new OAuthError('invalid_client', {
    description: 'The service key is not valid',
    headers: { 'www-authenticate': 'Bearer realm="portcullis", error="invalid_token"' },
  })
  if (serviceKey === 'malformed') {
    throw refused
  }
  const token = requiredParam(params, 'token', 8192)
  const db = vars.db.http
  // The token's signature needs no database; the key and the token's state then share one batch.
  const verified = looksLikeJwt(token) ? await signedClaims(vars, token, now) : undefined
  if (verified === undefined) {
    if ((await findLiveServiceKey(db, serviceKey.hash, now)) === undefined) {
      throw refused
    }
    return INACTIVE
  }
  const claims = verified.claims
  const [keys, states] = await db.batch([
    findLiveServiceKeyStatement(db, serviceKey.hash, now),
    accessTokenStateStatement(db, {
      clientId: claims.client_id,
      jti: claims.jti,
      userId: isClientToken(claims) ? null : claims.sub,
      tokenClientId: claims.client_id,
    }),
  ])
  const caller = keys[0]
  if (caller === undefined) {
    throw refused
  }
  const state = states[0]
  if (!(await settled(vars, token, verified, state?.keyEpoch ?? null, now))) {
    return INACTIVE
  }
  const tenantId = state?.tokenClientTenantId ?? null
  if (caller.tenantId !== null && tenantId !== caller.tenantId) {
    return INACTIVE
  }
  try {
    principalFromState(claims, state)
  } catch (error) {
    if (error instanceof OAuthError) {
      return INACTIVE
    }
    throw error
  }
  return activeAccessToken(claims, tenantId)
}

documentRoute({
  method: 'post',
  path: '/oauth/introspect',
  summary: 'Token introspection (RFC 7662)',
  tags: ['oauth'],
  security: ['clientBasic', 'serviceKey'],
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
        /** The tenant the token was issued in (its client's). */
        tenant_id: v.optional(v.string()),
      }),
    },
  },
})
