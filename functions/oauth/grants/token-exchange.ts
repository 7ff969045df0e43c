import { authenticateForTokenExchange, recordTokenExchange } from '../../../db/queries/oauth-grants'
import { isUuid } from '../../../db/uuid'
import { OAuthError } from '../../errors/oauth'
import { confirmKeyRing } from '../../tokens/keys'
import { accessTokenAudience, mintAccessToken } from '../../tokens/mint'
import {
  isClientToken,
  verifyAccessTokenSignature,
  verifyAccessTokenSignatureToConfirm,
} from '../../tokens/verify-access-token'
import { type OAuthParams, param, requiredParam } from '../form'
import { resolveResource } from '../resources'
import { parseScope } from '../scope'
import { type GrantContext, type GrantOutcome, refuseClient, tokenType } from './issue'

export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'

/**
 * RFC 8693 token exchange for a resource server that must call another on the user's behalf.
 * The subject token is one of our access tokens, still valid (signature here, database state in
 * the statement); the new token is for `audience`/`resource` (a registered resource server, the
 * issuer or DEFAULT_AUDIENCE), carries only scopes the subject token had, names the exchanging
 * client in `act` (nested when the subject token already had an actor) and ends no later than
 * the subject token. `actor_token` is not supported. Round trips: ONE statement (client
 * authentication, subject state, `token_issued`, the key set's epoch), plus one for an uncached
 * resource lookup. An isolate whose key ring sat idle checks the subject token's signature with
 * it and lets the statement's epoch confirm it; if the key set changed meanwhile, the statement
 * writes nothing, and the exchange is recorded only once the signature holds against a fresh ring.
 */
export async function tokenExchangeGrant(ctx: GrantContext, params: OAuthParams): Promise<GrantOutcome> {
  const subjectToken = requiredParam(params, 'subject_token', 8192)
  if (requiredParam(params, 'subject_token_type', 200) !== ACCESS_TOKEN_TYPE) {
    throw new OAuthError('invalid_request', {
      description: `subject_token_type must be ${ACCESS_TOKEN_TYPE}`,
    })
  }
  const requestedType = param(params, 'requested_token_type', 200)
  if (requestedType !== undefined && requestedType !== ACCESS_TOKEN_TYPE) {
    throw new OAuthError('invalid_request', {
      description: `requested_token_type must be ${ACCESS_TOKEN_TYPE}`,
    })
  }
  if (params.has('actor_token') || params.has('actor_token_type')) {
    throw new OAuthError('invalid_request', { description: 'actor_token is not supported' })
  }
  const audienceParam = param(params, 'audience', 2000)
  const resourceParam = param(params, 'resource', 2000)
  if (audienceParam !== undefined && resourceParam !== undefined && audienceParam !== resourceParam) {
    throw new OAuthError('invalid_target', { description: 'audience and resource name different targets' })
  }
  const target = await resolveResource(ctx.db.http, ctx.config, resourceParam ?? audienceParam)
  const audience = accessTokenAudience(ctx.config, target?.identifier ?? null)
  const verified = await subjectSignature(() =>
    verifyAccessTokenSignatureToConfirm(ctx.db, ctx.config, subjectToken, 'any', ctx.now),
  )
  const subject = verified.claims
  // On the user's behalf (issue 15): a client's own token has no user to act for, and a user's
  // token names one of our user ids.
  if (isClientToken(subject) || !isUuid(subject.sub)) {
    throw new OAuthError('invalid_grant', { description: 'subject_token must be a user’s access token' })
  }
  // A DPoP-bound subject token is usable only by its key holder; an exchange would unbind it.
  if (subject.cnf?.jkt !== undefined) {
    throw new OAuthError('invalid_grant', { description: 'A DPoP-bound subject_token cannot be exchanged' })
  }
  const held = parseScope(subject.scope ?? '')
  const asked = param(params, 'scope')
  const scopes = asked === undefined ? held : parseScope(asked)
  // RFC 8693 §2.1: the exchange may narrow, never widen.
  const widened = scopes.find((s) => !held.includes(s))
  if (widened !== undefined) {
    throw new OAuthError('invalid_scope', { description: `${widened} is not in the subject token` })
  }
  const scope = scopes.join(' ')
  const record = {
    subject: {
      jti: subject.jti,
      clientId: subject.client_id,
      userId: subject.sub,
      issuedAt: subject.iat,
    },
    audience,
    scope,
    audit: ctx.audit,
    now: ctx.now,
  }
  const authenticated = await authenticateForTokenExchange(ctx.db.http, {
    ...record,
    client: ctx.presented,
    ringEpoch: verified.ringEpoch,
  })
  if (authenticated === undefined) {
    return refuseClient(ctx)
  }
  const client = authenticated.client
  if (client.tokenEndpointAuthMethod === 'none') {
    throw new OAuthError('unauthorized_client', { description: 'Token exchange needs a confidential client' })
  }
  let outcome: { issued: boolean; keyEpoch: string | null } = authenticated
  if (verified.ringEpoch !== undefined && outcome.keyEpoch !== verified.ringEpoch) {
    // The key set changed while the ring sat idle and the statement wrote nothing: the ring is
    // read again, the signature checked against it, and only then is the exchange recorded.
    confirmKeyRing(outcome.keyEpoch, ctx.now)
    await subjectSignature(() => verifyAccessTokenSignature(ctx.db, ctx.config, subjectToken, 'any', ctx.now))
    outcome = await recordTokenExchange(ctx.db.http, { ...record, client })
  }
  confirmKeyRing(outcome.keyEpoch, ctx.now)
  if (!outcome.issued) {
    throw new OAuthError('invalid_grant', { description: 'subject_token is no longer valid' })
  }
  const actor: Record<string, unknown> = { sub: client.clientId }
  if (subject.act !== undefined) {
    actor.act = subject.act
  }
  const access = await mintAccessToken(ctx.db, ctx.config, {
    subject: subject.sub,
    audience,
    // RFC 9068 §2.2: client_id is the client that requested this token (the exchanging one).
    clientId: client.clientId,
    tenantId: client.tenantId,
    scope,
    jti: crypto.randomUUID(),
    now: ctx.now,
    notAfter: subject.exp,
    act: actor,
    jkt: ctx.presented.dpop?.jkt ?? null,
    // The target's signing algorithm (issue 11).
    ...(target?.signingAlgorithm ? { alg: target.signingAlgorithm } : {}),
    ...(subject.auth_time === undefined ? {} : { authTime: new Date(subject.auth_time * 1000) }),
  })
  return {
    response: {
      access_token: access.token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: tokenType(ctx),
      expires_in: access.expiresIn,
      scope,
    },
  }
}

/** A subject token whose signature or claims do not verify is the grant's fault: invalid_grant. */
async function subjectSignature<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check()
  } catch (error) {
    if (error instanceof OAuthError) {
      throw new OAuthError('invalid_grant', {
        description: 'subject_token is not a valid access token',
        cause: error,
      })
    }
    throw error
  }
}
