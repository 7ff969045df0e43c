import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import { errors as joseErrors, jwtVerify } from 'jose'
import * as v from 'valibot'
import { findClient } from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { endSessionAudited, findLiveSession } from '../../db/queries/sessions'
import { clearSessionCookie, readSessionToken } from '../auth/session-cookie'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from '../pages/csrf'
import { sendPage } from '../pages/layout'
import { verificationKey } from '../tokens/keys'
import { ID_TOKEN_ALGS } from './client-metadata'
import { type OAuthParams, param, readOAuthBody, readOAuthQuery } from './form'

/** An expired id_token still names who is signing out (OIDC RP-Initiated Logout §2), this long. */
const ID_TOKEN_HINT_GRACE_SECONDS = 30 * 86_400

interface Hint {
  sub: string
  clientId: string
}

type LogoutRequest =
  | {
      ok: true
      hint: Hint | undefined
      client: OAuthClientRow | undefined
      redirect: string | undefined
      state: string | undefined
    }
  | { ok: false; reason: string }

async function verifyHint(c: Context<AppEnv>, token: string, now: Date): Promise<Hint | undefined> {
  if (token.length > 8192 || token.split('.').length !== 3) {
    return undefined
  }
  try {
    const { payload } = await jwtVerify(
      token,
      async (header) => {
        const key =
          header.kid === undefined
            ? undefined
            : await verificationKey(c.var.db, c.var.config, header.kid, now)
        if (key === undefined || key.alg !== header.alg) {
          throw new joseErrors.JWSSignatureVerificationFailed()
        }
        return key.publicKey
      },
      {
        algorithms: [...ID_TOKEN_ALGS],
        issuer: c.var.config.issuer,
        currentDate: now,
        clockTolerance: ID_TOKEN_HINT_GRACE_SECONDS,
        requiredClaims: ['sub', 'aud'],
      },
    )
    // Our id_tokens have one audience, the client, and no typ at+jwt (an access token is no hint).
    if (typeof payload.sub !== 'string' || typeof payload.aud !== 'string' || 'client_id' in payload) {
      return undefined
    }
    return { sub: payload.sub, clientId: payload.aud }
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError || error instanceof SyntaxError) {
      return undefined
    }
    throw error
  }
}

/** The registered `post_logout_redirect_uris` of a client (kept in its metadata). */
export function postLogoutRedirectUris(client: OAuthClientRow): string[] {
  const uris = client.metadata.post_logout_redirect_uris
  return Array.isArray(uris) ? uris.filter((u): u is string => typeof u === 'string') : []
}

async function readLogoutRequest(c: Context<AppEnv>, params: OAuthParams, now: Date): Promise<LogoutRequest> {
  const hintText = param(params, 'id_token_hint', 8192)
  const hint = hintText === undefined ? undefined : await verifyHint(c, hintText, now)
  if (hintText !== undefined && hint === undefined) {
    return { ok: false, reason: 'id_token_hint is not an ID token we issued' }
  }
  const clientId = param(params, 'client_id', 200)
  if (hint !== undefined && clientId !== undefined && clientId !== hint.clientId) {
    return { ok: false, reason: 'client_id does not match the id_token_hint' }
  }
  const named = hint?.clientId ?? clientId
  const client = named === undefined ? undefined : await findClient(c.var.db.http, named)
  const redirect = param(params, 'post_logout_redirect_uri', 2000)
  if (redirect !== undefined) {
    // OIDC RP-Initiated Logout §3: only a URI registered by the client the request names.
    if (
      client === undefined ||
      client.disabledAt !== null ||
      !postLogoutRedirectUris(client).includes(redirect)
    ) {
      return { ok: false, reason: 'post_logout_redirect_uri is not registered for this client' }
    }
  }
  return { ok: true, hint, client, redirect, state: param(params, 'state', 1000) }
}

function refusePage(c: Context<AppEnv>, reason: string): Promise<Response> {
  return sendPage(
    c,
    'Cannot sign out',
    html`<h1>This sign-out link does not work</h1>
      <div class="error" role="alert" data-testid="logout-error">
        The application that sent you here made a request we cannot accept. You are still signed in.
      </div>
      <p class="muted">Details for the developer: <code>invalid_request</code>: ${reason}</p>`,
    400,
  )
}

async function finish(c: Context<AppEnv>, request: Extract<LogoutRequest, { ok: true }>): Promise<Response> {
  const token = readSessionToken(c)
  if (token !== undefined) {
    await endSessionAudited(c.var.db.http, await sha256Hex(token), {
      ip: clientIp(c),
      metadata: { all: false, end_session: true, client_id: request.client?.clientId ?? null },
    })
  }
  clearSessionCookie(c)
  if (request.redirect !== undefined) {
    const target = new URL(request.redirect)
    if (request.state !== undefined) {
      target.searchParams.set('state', request.state)
    }
    return c.body(null, 302, { location: target.href, 'cache-control': 'no-store' })
  }
  return sendPage(
    c,
    'Signed out',
    html`<h1>You are signed out</h1><p class="lead">You can close this window.</p>`,
  )
}

/**
 * GET /oauth/logout (OIDC RP-Initiated Logout 1.0). With an `id_token_hint` of the user signed in
 * here the session ends at once; otherwise a confirmation form (CSRF-protected) asks first, so a
 * cross-site link cannot sign anyone out. A `post_logout_redirect_uri` must be registered by the
 * client the request names (hint `aud` or `client_id`); `state` is handed back. Round trips: the
 * client and the session (one each), ending the session with its `user_logout` row (one).
 */
async function endSession(c: Context<AppEnv>): Promise<Response> {
  const now = new Date()
  const request = await readLogoutRequest(c, readOAuthQuery(c), now)
  if (!request.ok) {
    return refusePage(c, request.reason)
  }
  const token = readSessionToken(c)
  const session =
    token === undefined ? undefined : await findLiveSession(c.var.db.http, await sha256Hex(token), now)
  if (session === undefined || (request.hint !== undefined && request.hint.sub === session.userId)) {
    return finish(c, request)
  }
  const csrf = await issueCsrfToken(c)
  const fields: Record<string, string> = { [CSRF_FIELD]: csrf }
  if (request.client !== undefined) {
    fields.client_id = request.client.clientId
  }
  if (request.redirect !== undefined) {
    fields.post_logout_redirect_uri = request.redirect
  }
  if (request.state !== undefined) {
    fields.state = request.state
  }
  const name = request.client?.clientName ?? request.client?.clientId
  return sendPage(
    c,
    'Sign out',
    html`<h1>Sign out?</h1>
      <p class="lead">${name === undefined ? 'An application' : name} asks to sign you out of ${c.var.config.brand.name}.</p>
      <form method="post" action="/oauth/logout">
        ${Object.entries(fields).map(([k, val]) => html`<input type="hidden" name="${k}" value="${val}" />`)}
        <div class="row"><button type="submit" name="confirm" value="yes">Sign out</button></div>
      </form>`,
  )
}

/** POST /oauth/logout: the confirmation form's answer (CSRF-checked), or an RP's form post. */
async function confirmEndSession(c: Context<AppEnv>): Promise<Response> {
  const params = await readOAuthBody(c)
  await verifyCsrf(c, params.get(CSRF_FIELD))
  const request = await readLogoutRequest(c, params, new Date())
  if (!request.ok) {
    return refusePage(c, request.reason)
  }
  return finish(c, request)
}

export const endSessionEndpoint = new Hono<AppEnv>().get('/', endSession).post('/', confirmEndSession)

documentRoute({
  method: 'get',
  path: '/oauth/logout',
  summary: 'RP-initiated logout (end_session_endpoint)',
  tags: ['oauth'],
  query: v.object({
    id_token_hint: v.optional(v.string()),
    client_id: v.optional(v.string()),
    post_logout_redirect_uri: v.optional(v.string()),
    state: v.optional(v.string()),
  }),
  responses: {
    302: { description: 'Signed out; back to the registered post_logout_redirect_uri with state' },
    200: { description: 'Confirmation page, or signed-out page', contentType: 'text/html' },
    400: {
      description: 'Invalid hint or unregistered post_logout_redirect_uri (nothing changed)',
      contentType: 'text/html',
    },
  },
})
