import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { clientFailureStatement } from '../../db/queries/oauth-grants'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { errorForLog, log } from '../log'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { checkDpopProof, type DpopProof } from '../tokens/dpop'
import { currentDpopNonce, isValidDpopNonce } from '../tokens/dpop-nonce'
import { explainAgentRefusal, verifyAgentAssertion } from './client-assertion'
import { authenticateClient, type ClientCredentials, readClientCredentials } from './client-auth'
import { DEVICE_CODE_GRANT, TOKEN_EXCHANGE_GRANT } from './client-metadata'
import { readOAuthBody, requiredParam } from './form'
import { authorizationCodeGrant } from './grants/authorization-code'
import { clientCredentialsGrant } from './grants/client-credentials'
import { deviceCodeGrant } from './grants/device-code'
import type { GrantContext, GrantOutcome } from './grants/issue'
import { refreshTokenGrant } from './grants/refresh-token'
import { tokenExchangeGrant } from './grants/token-exchange'
import { freshenMetadataDocumentClient } from './metadata-document'

/** RFC 6749 §5.1: token responses are never cached. */
export const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' } as const

/** The URIs this request may name as `htu`: the issuer's spelling and the one it arrived at. */
export function requestUris(c: Context<AppEnv>): string[] {
  return [`${c.var.config.issuer}${c.req.path}`, c.req.url]
}

/**
 * RFC 9449 §5: a `DPoP` header on a token request (or a pushed authorization request, §10.1) must
 * hold a valid proof for this POST; its key binds what is minted. The proof's `jti` is spent by
 * the statement that uses it. No header: unbound.
 */
export async function tokenRequestProof(c: Context<AppEnv>, now: Date): Promise<DpopProof | null> {
  const header = c.req.header('dpop')
  if (header === undefined) {
    return null
  }
  const config = c.var.config
  const check = await checkDpopProof(header, {
    method: 'POST',
    urls: requestUris(c),
    now,
    ...(config.dpopNonceRequired
      ? { checkNonce: (nonce: unknown) => isValidDpopNonce(config, nonce, now) }
      : {}),
  })
  if (!check.ok && check.useNonce) {
    throw new OAuthError('use_dpop_nonce', {
      description: 'Send the DPoP proof again with the nonce in DPoP-Nonce',
      headers: { 'dpop-nonce': await currentDpopNonce(config, now) },
    })
  }
  if (!check.ok) {
    throw new OAuthError('invalid_dpop_proof', {
      description: 'The DPoP proof is not valid',
      log: check.reason,
    })
  }
  return check.proof
}

const GRANTS: Record<
  string,
  (ctx: GrantContext, params: ReadonlyMap<string, string>) => Promise<GrantOutcome>
> = {
  authorization_code: authorizationCodeGrant,
  refresh_token: refreshTokenGrant,
  client_credentials: clientCredentialsGrant,
  [DEVICE_CODE_GRANT]: deviceCodeGrant,
  [TOKEN_EXCHANGE_GRANT]: tokenExchangeGrant,
}

/**
 * POST /oauth/token. Round trips per successful grant: ONE in all (issue 16): the grant's
 * statement authenticates the client, does the grant's work and writes `token_issued`; a warm
 * isolate signs with cached keys. A DPoP proof (RFC 9449) is checked without the database and its
 * `jti` spent inside that same statement. A failure may spend one more statement to explain itself.
 */
export const token = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  const now = new Date()
  const grantType = requiredParam(params, 'grant_type', 100)
  const grant = Object.hasOwn(GRANTS, grantType) ? GRANTS[grantType] : undefined
  if (grant === undefined) {
    throw new OAuthError('unsupported_grant_type', { description: `${grantType} is not supported` })
  }
  const credentials = readClientCredentials(c, params)
  const failure = { counted: false }
  try {
    return await grantTokens(c, grant, grantType, params, credentials, now, failure)
  } catch (error) {
    if (error instanceof OAuthError && credentials.method === 'private_key_jwt' && !failure.counted) {
      await countAgentFailure(c, credentials.clientId, grantType, now)
    }
    throw error
  }
})

/** An agent client's refused request counts in its usage; losing the count never changes the answer. */
async function countAgentFailure(c: Context<AppEnv>, clientId: string, grantType: string, now: Date) {
  try {
    await clientFailureStatement(c.var.db.http, { clientId, grantType, now })
  } catch (error) {
    log('warn', 'client_usage_failure_not_recorded', errorForLog(error))
  }
}

async function grantTokens(
  c: Context<AppEnv>,
  grant: (ctx: GrantContext, params: ReadonlyMap<string, string>) => Promise<GrantOutcome>,
  grantType: string,
  params: Awaited<ReturnType<typeof readOAuthBody>>,
  credentials: ClientCredentials,
  now: Date,
  /** Set when the refusal's own statement already counted the agent's failure. */
  failure: { counted: boolean },
): Promise<Response> {
  const dpop = await tokenRequestProof(c, now)
  // Issue 11: a metadata document client_id is read again when stale (no round trip when fresh here).
  await freshenMetadataDocumentClient(c.var.db.http, c.var.config, credentials.clientId, now)
  const endpoint = `${c.var.config.issuer}${c.req.path}`
  // RFC 7523 §2.2: the assertion is checked against the client's keys, cached per isolate; the
  // grant statement spends its jti while that key is still registered (one round trip in all).
  const assertion =
    credentials.method === 'private_key_jwt' && credentials.assertion !== undefined
      ? await verifyAgentAssertion(
          c.var.config,
          c.var.db.http,
          credentials.clientId,
          credentials.assertion,
          endpoint,
          now,
        )
      : undefined
  const ctx: GrantContext = {
    db: c.var.db,
    config: c.var.config,
    now,
    presented: {
      clientId: credentials.clientId,
      method: credentials.method,
      secretHash: credentials.secret === undefined ? null : await sha256Hex(credentials.secret),
      grantType,
      dpop,
      ...(assertion === undefined ? {} : { assertion }),
    },
    audit: { ip: clientIp(c) },
    explainClient: () => {
      if (assertion === undefined || credentials.assertion === undefined) {
        return authenticateClient(c, c.var.db.http, params, now)
      }
      // The row changed (a key removed, disabled) or the jti was spent: one batch says which.
      failure.counted = true
      return explainAgentRefusal(c.var.config, c.var.db.http, {
        clientId: credentials.clientId,
        assertion: credentials.assertion,
        verified: assertion,
        endpoint,
        grantType,
        now,
      })
    },
  }
  const outcome = await grant(ctx, params)
  if (dpop !== null && c.var.config.dpopNonceRequired) {
    // RFC 9449 §8.2: the next nonce rides on the success too.
    return c.json(outcome.response, 200, {
      ...NO_STORE,
      'dpop-nonce': await currentDpopNonce(c.var.config, now),
    })
  }
  return c.json(outcome.response, 200, NO_STORE)
}

/** RFC 9449 §5 / §10.1: the `DPoP` request header as the token and PAR endpoints read it. */
export const DPOP_HEADER_DOC =
  'RFC 9449 proof (typ dpop+jwt, htm POST, htu this endpoint, iat, jti; the nonce from DPoP-Nonce when ' +
  'DPOP_NONCE_REQUIRED): binds the tokens (token_type DPoP, cnf.jkt) or, at /oauth/par, the code to its key'

/** RFC 7523 §2.2 `private_key_jwt`, in the form body instead of Basic credentials. */
export const CLIENT_ASSERTION_FIELDS = {
  client_assertion_type: v.optional(v.literal('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')),
  client_assertion: v.optional(
    v.pipe(
      v.string(),
      v.description(
        'private_key_jwt: a JWT signed (ES256, RS256, EdDSA) with a key in the client’s jwks or jwks_uri; ' +
          'iss = sub = client_id, aud = the issuer or this endpoint, exp at most 5 minutes ahead, jti used once',
      ),
    ),
  ),
}

const TOKEN_RESPONSE = v.object({
  access_token: v.string(),
  token_type: v.picklist(['Bearer', 'DPoP']),
  expires_in: v.number(),
  scope: v.string(),
  refresh_token: v.optional(v.string()),
  id_token: v.optional(v.string()),
  issued_token_type: v.optional(v.string()),
})

documentRoute({
  method: 'post',
  path: '/oauth/token',
  summary:
    'Token endpoint (authorization_code, refresh_token, client_credentials, device_code, token-exchange)',
  tags: ['oauth'],
  security: ['clientBasic'],
  headers: [{ name: 'DPoP', description: DPOP_HEADER_DOC }],
  requestBody: {
    schema: v.object({
      grant_type: v.string(),
      code: v.optional(v.string()),
      code_verifier: v.optional(v.string()),
      redirect_uri: v.optional(v.string()),
      refresh_token: v.optional(v.string()),
      device_code: v.optional(v.string()),
      scope: v.optional(v.string()),
      resource: v.optional(
        v.pipe(
          v.string(),
          v.description('RFC 8707: narrows the token to these of the grant’s targets (repeat for several)'),
        ),
      ),
      client_id: v.optional(
        v.pipe(
          v.string(),
          v.description('Public clients: their client_id, or the URL of their Client ID Metadata Document'),
        ),
      ),
      client_secret: v.optional(v.string()),
      ...CLIENT_ASSERTION_FIELDS,
      subject_token: v.optional(v.string()),
      subject_token_type: v.optional(v.string()),
      requested_token_type: v.optional(v.string()),
      audience: v.optional(v.string()),
    }),
    contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  },
  responses: { 200: { description: 'Tokens', schema: TOKEN_RESPONSE } },
})
