import type { Context } from 'hono'
import { html } from 'hono/html'
import type { AppEnv } from '../env'
import type { AuthorizationRequest } from '../oauth/authorization-request'
import { requestFields } from '../oauth/authorization-request'
import { metadataDocumentOrigin } from '../oauth/metadata-document'
import { CSRF_FIELD, issueCsrfToken } from './csrf'
import { sendPage } from './layout'
import { scopeText } from './words'

/** The consent page (DESIGN): a no-JavaScript form posting to /oauth/consent. */
export async function renderConsentPage(
  c: Context<AppEnv>,
  request: AuthorizationRequest,
  account: { email: string; displayName: string | null },
): Promise<Response> {
  const csrf = await issueCsrfToken(c)
  const fields = { ...requestFields(request), [CSRF_FIELD]: csrf }
  const name = request.client.clientName ?? request.client.clientId
  const host = new URL(request.redirectUri).host || request.redirectUri
  // Issue 11: a client known only by its metadata document is named by the host that published it.
  const published = metadataDocumentOrigin(request.client)
  // Issue 11: the resource servers' own scopes in their own words, and their names.
  const targets = (request.targets ?? []).filter((t) => !t.builtin)
  const describe = (s: string) =>
    targets.flatMap((t) => t.scopes).find((t) => t.name === s)?.description ?? scopeText(s)
  return sendPage(
    c,
    'Authorize access',
    html`<h1>Authorize ${name}</h1>
      <p class="lead">
        Signed in as <strong data-testid="consent-account">${account.email}</strong>.
        <a href="/oauth/authorize?${new URLSearchParams({ ...requestFields(request), prompt: 'login' }).toString()}">Use another account</a>
      </p>
      ${
        targets.length === 0
          ? html`<p>${name} wants to:</p>`
          : html`<p data-testid="consent-resource">${name} wants access to
              ${targets.map(
                (t, i) =>
                  html`${i > 0 ? ', ' : ''}<strong>${t.displayName}</strong> (${new URL(t.identifier).host})`,
              )}
              to:</p>`
      }
      ${
        published === null
          ? ''
          : html`<p data-testid="consent-client-host">${name} describes itself at <strong>${published.host}</strong>.</p>
              ${
                published.loopback
                  ? html`<div class="error" role="alert" data-testid="consent-loopback-warning">
                      This application is served from this computer (${published.host}), not from a site on the
                      internet. Approve only if you started it yourself.
                    </div>`
                  : ''
              }`
      }
      <ul class="scopes">
        ${request.scope.map((s) => html`<li>${describe(s)}</li>`)}
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
