import { type Context, Hono } from 'hono'
import { getCookie } from 'hono/cookie'
import { html } from 'hono/html'
import * as v from 'valibot'
import { findConsent, upsertConsentStatement } from '../../db/queries/oauth-grants'
import { findLiveSession, type LiveSession } from '../../db/queries/sessions'
import { findUserById } from '../../db/queries/users'
import { auditStatement } from '../audit/record'
import { acrValuesRequireMfa, meetsTwoFactorPolicy } from '../auth/acr'
import { enrolledFactors } from '../auth/factors'
import { sessionCookieName } from '../auth/session-cookie'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { wantsHtml } from '../pages/config-error'
import { renderConsentPage } from '../pages/consent'
import { CSRF_FIELD, verifyCsrf } from '../pages/csrf'
import { sendPage } from '../pages/layout'
import {
  type AuthorizationRequest,
  issueAuthorizationCode,
  RedirectableError,
  redirectTarget,
} from './authorization-request'
import { readOAuthBody, readOAuthQuery } from './form'
import { resolveAuthorizationRequest } from './par'

async function currentSession(c: Context<AppEnv>): Promise<LiveSession | undefined> {
  const cookie = getCookie(c, sessionCookieName(c.var.config))
  if (cookie === undefined || cookie.length === 0 || cookie.length > 128) {
    return undefined
  }
  return findLiveSession(c.var.db.http, await sha256Hex(cookie), new Date())
}

function redirect(c: Context<AppEnv>, location: string): Response {
  return c.body(null, 302, { location, 'cache-control': 'no-store' })
}

function redirectError(c: Context<AppEnv>, error: RedirectableError): Response {
  return redirect(
    c,
    redirectTarget(error.redirectUri, c.var.config.issuer, {
      error: error.code,
      error_description: error.description,
      state: error.state,
    }),
  )
}

async function completeWithCode(
  c: Context<AppEnv>,
  request: AuthorizationRequest,
  session: LiveSession,
): Promise<Response> {
  const code = await issueAuthorizationCode(c.var.db.http, c.var.config, request, session, new Date())
  return redirect(c, redirectTarget(request.redirectUri, c.var.config.issuer, { code, state: request.state }))
}

function covers(granted: readonly string[] | undefined, requested: readonly string[]): boolean {
  return granted !== undefined && requested.every((s) => granted.includes(s))
}

/**
 * What a browser sees when the request cannot be sent back to the client (unknown client, bad
 * redirect URI): a page in words. API clients (no text/html in Accept) keep the JSON error.
 */
function unredirectablePage(c: Context<AppEnv>, error: OAuthError): Promise<Response> {
  return sendPage(
    c,
    'Cannot continue',
    html`<h1>This sign-in link does not work</h1>
      <div class="error" role="alert" data-testid="oauth-error">
        The application that sent you here made a request we cannot accept, so we cannot send you back to it.
      </div>
      <p class="lead">Go back to the application and try again. If it keeps happening, tell the application's support.</p>
      <p class="muted">Details for the developer: <code>${error.code}</code>: ${error.options.description ?? ''}</p>`,
    400,
  )
}

/** Turns RedirectableError into the redirect RFC 6749 §4.1.2.1 asks for. */
async function withRedirectErrors(c: Context<AppEnv>, work: () => Promise<Response>): Promise<Response> {
  try {
    return await work()
  } catch (error) {
    if (error instanceof RedirectableError) {
      return redirectError(c, error)
    }
    if (error instanceof OAuthError && wantsHtml(c.req.header('accept'))) {
      return unredirectablePage(c, error)
    }
    throw error
  }
}

/**
 * Back to /login, then here. The user comes back without prompt=login or max_age, so it is asked
 * once (max_age=0 would otherwise send a fresh sign-in straight back to /login).
 */
function toSignIn(c: Context<AppEnv>): Response {
  const url = new URL(c.req.url)
  url.searchParams.delete('prompt')
  url.searchParams.delete('max_age')
  return redirect(c, `/login?return_to=${encodeURIComponent(`${url.pathname}${url.search}`)}`)
}

/**
 * Issue 14: a one-factor session must sign in again with a second factor when REQUIRE_TWO_FACTOR
 * is on (the sign-in then asks for the code, or sends a user without a factor to enrol), or when
 * the request's `acr_values` asks only for `urn:portcullis:acr:mfa` and the user has a factor to
 * present, TOTP or a passkey (OIDC Core §3.1.2.1: acr_values is voluntary, so a user without one
 * goes on at the basic level and the ID token's `acr` says so). One more round trip, only for
 * such a request.
 */
async function needsSecondFactor(
  c: Context<AppEnv>,
  request: AuthorizationRequest,
  session: LiveSession,
): Promise<boolean> {
  if (session.amr.includes('mfa')) {
    return false
  }
  if (!meetsTwoFactorPolicy(c.var.config, session.amr)) {
    return true
  }
  if (!acrValuesRequireMfa(request.acrValues)) {
    return false
  }
  const factors = await enrolledFactors(c.var.db.http, session.userId)
  return factors.totp || factors.passkey
}

/**
 * GET /oauth/authorize: validate, then sign-in (302 to /login), consent (page, remembered per
 * user + client + scopes; first-party clients skip it) and a code redirect with `iss` (RFC 9207).
 */
export const authorizeEndpoint = new Hono<AppEnv>().get('/', (c) =>
  withRedirectErrors(c, async () => {
    const request = await resolveAuthorizationRequest(
      c.var.db.http,
      c.var.config,
      readOAuthQuery(c),
      new Date(),
    )
    // A pushed request cannot lose prompt=login or max_age on the way back from /login (they are
    // not in the URL): a sign-in after the push satisfies them.
    const pushedAt = request.pushed?.pushedAt
    const current =
      request.prompt.has('login') && pushedAt === undefined ? undefined : await currentSession(c)
    const signedInSincePush =
      current !== undefined &&
      pushedAt !== undefined &&
      current.authenticatedAt.getTime() > pushedAt.getTime()
    const found = request.prompt.has('login') && !signedInSincePush ? undefined : current
    // OIDC Core §3.1.2.1: a sign-in older than max_age counts as no sign-in.
    const session =
      found !== undefined &&
      !signedInSincePush &&
      request.maxAge !== undefined &&
      Date.now() - found.authenticatedAt.getTime() > request.maxAge * 1000
        ? undefined
        : found
    if (session === undefined) {
      if (request.prompt.has('none')) {
        throw new RedirectableError(
          'login_required',
          'The user is not signed in',
          request.redirectUri,
          request.state,
        )
      }
      return toSignIn(c)
    }
    if (session.status !== 'active') {
      throw new RedirectableError(
        'access_denied',
        'The account may not sign in',
        request.redirectUri,
        request.state,
      )
    }
    if (await needsSecondFactor(c, request, session)) {
      if (request.prompt.has('none')) {
        throw new RedirectableError(
          'interaction_required',
          'The user must sign in with a second factor',
          request.redirectUri,
          request.state,
        )
      }
      return toSignIn(c)
    }
    const needsConsent =
      !request.client.firstParty &&
      (request.prompt.has('consent') ||
        !covers(await findConsent(c.var.db.http, session.userId, request.client.id), request.scope))
    if (needsConsent) {
      if (request.prompt.has('none')) {
        throw new RedirectableError(
          'consent_required',
          'The user has not consented',
          request.redirectUri,
          request.state,
        )
      }
      const account = await findUserById(c.var.db.http, session.userId)
      if (account === undefined) {
        throw new RedirectableError(
          'access_denied',
          'The user is not signed in',
          request.redirectUri,
          request.state,
        )
      }
      return renderConsentPage(c, request, account)
    }
    return completeWithCode(c, request, session)
  }),
)

/** POST /oauth/consent: the consent form's answer (CSRF-checked, request re-validated). */
export const consentEndpoint = new Hono<AppEnv>().post('/', async (c) => {
  const params = await readOAuthBody(c)
  await verifyCsrf(c, params.get(CSRF_FIELD))
  return withRedirectErrors(c, async () => {
    const request = await resolveAuthorizationRequest(c.var.db.http, c.var.config, params, new Date())
    const session = await currentSession(c)
    // REQUIRE_TWO_FACTOR: a consent posted from a one-factor session (one from before the policy)
    // is refused like a signed-out one.
    if (
      session === undefined ||
      session.status !== 'active' ||
      !meetsTwoFactorPolicy(c.var.config, session.amr)
    ) {
      throw new RedirectableError(
        'access_denied',
        'The user is not signed in',
        request.redirectUri,
        request.state,
      )
    }
    const decision = params.get('decision')
    if (decision !== 'approve') {
      throw new RedirectableError(
        'access_denied',
        'The user denied the request',
        request.redirectUri,
        request.state,
      )
    }
    // The consent and its audit row commit together (one batch).
    await c.var.db.http.batch([
      upsertConsentStatement(c.var.db.http, session.userId, request.client.id, request.scope),
      auditStatement(c.var.db.http, clientIp(c), {
        type: 'consent_granted',
        actor: `user:${session.userId}`,
        userId: session.userId,
        tenantId: session.tenantId,
        clientId: request.client.clientId,
        metadata: { scope: request.scope.join(' ') },
      }),
    ])
    return completeWithCode(c, request, session)
  })
})

documentRoute({
  method: 'get',
  path: '/oauth/authorize',
  summary: 'Authorization endpoint (code + PKCE S256)',
  tags: ['oauth'],
  query: v.object({
    response_type: v.literal('code'),
    client_id: v.pipe(
      v.string(),
      v.description('A registered client_id, or the https URL of its Client ID Metadata Document (issue 11)'),
    ),
    redirect_uri: v.optional(v.string()),
    scope: v.optional(v.string()),
    state: v.optional(v.string()),
    nonce: v.optional(v.string()),
    code_challenge: v.string(),
    code_challenge_method: v.literal('S256'),
    resource: v.optional(
      v.pipe(
        v.string(),
        v.description(
          'RFC 8707 target (a registered resource server, or the issuer); repeat it for several, at most 5',
        ),
      ),
    ),
    prompt: v.optional(v.string()),
    max_age: v.optional(v.string()),
    request_uri: v.optional(
      v.pipe(v.string(), v.description('RFC 9126: the request_uri /oauth/par answered (single use, 60 s)')),
    ),
    dpop_jkt: v.optional(
      v.pipe(
        v.string(),
        v.description(
          'RFC 9449 §10: only a token request proving this DPoP key (RFC 7638 thumbprint) redeems the code',
        ),
      ),
    ),
  }),
  responses: {
    302: { description: 'Redirect to login, or back to the client' },
    200: { description: 'Consent page', contentType: 'text/html' },
  },
})
documentRoute({
  method: 'post',
  path: '/oauth/consent',
  summary: 'Consent form submission',
  tags: ['oauth'],
  security: ['sessionCookie'],
  requestBody: {
    schema: v.object({ decision: v.picklist(['approve', 'deny']), csrf_token: v.string() }),
    contentTypes: ['application/x-www-form-urlencoded'],
  },
  responses: { 302: { description: 'Back to the client with a code or an error' } },
})
