import type { Context } from 'hono'
import { html } from 'hono/html'
import type { AppEnv } from '../env'
import type { AuthorizationRequest } from '../oauth/authorization-request'
import { requestFields } from '../oauth/authorization-request'
import { CSRF_FIELD, issueCsrfToken } from './csrf'
import { sendPage } from './layout'

const SCOPE_TEXT: Record<string, string> = {
  openid: 'Know who you are',
  profile: 'See your name',
  email: 'See your email address',
  offline_access: 'Stay signed in (refresh tokens)',
  'apikeys:write': 'Create and manage your API keys',
}

/** The consent page (DESIGN): a no-JavaScript form posting to /oauth/consent. */
export async function renderConsentPage(
  c: Context<AppEnv>,
  request: AuthorizationRequest,
): Promise<Response> {
  const csrf = await issueCsrfToken(c)
  const fields = { ...requestFields(request), [CSRF_FIELD]: csrf }
  const name = request.client.clientName ?? request.client.clientId
  const host = new URL(request.redirectUri).host || request.redirectUri
  return sendPage(
    c,
    'Authorize access',
    html`<h1>Authorize ${name}</h1>
      <p class="lead">${name} wants to:</p>
      <ul class="scopes">
        ${request.scope.map((s) => html`<li>${SCOPE_TEXT[s] ?? s}</li>`)}
      </ul>
      <p class="muted">You will be sent back to ${host}.</p>
      <form method="post" action="/oauth/consent">
        ${Object.entries(fields).map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}" />`)}
        <div class="row">
          <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
          <button type="submit" name="decision" value="approve">Approve</button>
        </div>
      </form>`,
  )
}
