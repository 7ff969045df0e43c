import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import { listIdentities, unlinkIdentity } from '../../db/queries/federation'
import { listLoginProviders, providerNames } from '../../db/queries/identity-providers'
import { isUuid } from '../../db/uuid'
import type { AppEnv } from '../env'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { signedInForm } from '../pages/account-session'
import { CSRF_FIELD } from '../pages/csrf'
import { isoTime, relativeTime } from '../pages/words'
import { PROVIDER_ID } from './config'

/** What `?connection=` on /account says after a connections form (the section shows it). */
const NOTICES: Readonly<Record<string, { text: string; ok: boolean }>> = {
  linked: { text: 'The sign-in provider is connected.', ok: true },
  removed: { text: 'The sign-in provider is disconnected.', ok: true },
  last: {
    text: 'That is your last way to sign in: set a password, add a passkey or connect another provider first.',
    ok: false,
  },
  missing: { text: 'No such connection.', ok: false },
}

const STYLE = html`<style>
  ul.connections form { margin: 0; }
  .connect-list { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 8px; }
</style>`

/**
 * The "Sign-in providers" section of /account (issue 13): the user's linked identities with an
 * unlink button each (refused for the last way to sign in), and a connect button per enabled
 * provider not linked yet. Every button is a CSRF-protected form. Two reads side by side (a third
 * for the names of linked providers no longer offered).
 */
export async function connectionsAccountSection(
  c: Context<AppEnv>,
  me: { user: { id: string } },
  csrf: string,
) {
  const db = c.var.db.http
  const config = c.var.config
  const [linked, offered] = await Promise.all([
    listIdentities(db, me.user.id),
    listLoginProviders(db, undefined),
  ])
  const providers = [
    ...config.federation.providers.map((p) => ({ id: p.id, name: p.name })),
    ...offered.map((p) => ({ id: p.slug, name: p.name })),
  ]
  const unknown = [...new Set(linked.map((i) => i.provider))].filter(
    (id) => !providers.some((p) => p.id === id),
  )
  const stored = unknown.length === 0 ? [] : await providerNames(db, unknown)
  const nameOf = (id: string) =>
    providers.find((p) => p.id === id)?.name ?? stored.find((p) => p.slug === id)?.name ?? id
  const connectable = providers.filter((p) => !linked.some((i) => i.provider === p.id))
  if (linked.length === 0 && connectable.length === 0) {
    return ''
  }
  const notice = NOTICES[c.req.query('connection') ?? '']
  const csrfInput = html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />`
  const now = new Date()
  return html`${STYLE}
    <h2 id="connections">Sign-in providers</h2>
    ${notice === undefined ? '' : html`<div class="${notice.ok ? 'notice' : 'error'}" role="status" data-testid="connection-notice">${notice.text}</div>`}
    ${
      linked.length === 0
        ? html`<p class="muted" data-testid="no-connections">No provider is connected to your account.</p>`
        : html`<ul class="items connections" data-testid="connections">
            ${linked.map(
              (i) => html`<li data-connection="${i.id}">
                <div>
                  <strong>${nameOf(i.provider)}</strong>${i.brokenAt === null ? '' : html`<span class="badge">Sign in again</span>`}
                  <div class="muted">${i.username ?? i.email ?? i.subject} · connected
                    <time datetime="${isoTime(i.createdAt)}">${relativeTime(i.createdAt, now)}</time>
                    ${i.lastLoginAt === null ? '' : html` · last used <time datetime="${isoTime(i.lastLoginAt)}">${relativeTime(i.lastLoginAt, now)}</time>`}</div>
                </div>
                <form method="post" action="/account/connections/${i.id}/unlink">
                  ${csrfInput}
                  <button type="submit" class="secondary small">Disconnect</button>
                </form>
              </li>`,
            )}
          </ul>`
    }
    ${
      connectable.length === 0
        ? ''
        : html`<form method="post" action="/account/connections/connect">
            ${csrfInput}
            <p class="muted">Connect another account to sign in with it too.</p>
            <div class="connect-list">
              ${connectable.map(
                (p) =>
                  html`<button type="submit" class="secondary" name="provider" value="${p.id}">Connect ${p.name}</button>`,
              )}
            </div>
          </form>`
    }`
}

function back(c: Context<AppEnv>, notice: keyof typeof NOTICES) {
  return c.redirect(`/account?connection=${notice}#connections`, 303)
}

documentRoute({
  method: 'post',
  path: '/account/connections/connect',
  summary: 'Connect a sign-in provider from /account (CSRF protected): 303 to its start, back to /account',
  tags: ['pages'],
  responses: { 303: { description: 'To /federated/{provider}/start (or /login when signed out)' } },
})
documentRoute({
  method: 'post',
  path: '/account/connections/{id}/unlink',
  summary:
    'Disconnect a sign-in provider from /account (CSRF protected); refused for the last way to sign in',
  tags: ['pages'],
  responses: { 303: { description: 'Back to /account with a notice (removed, last or missing)' } },
})

/** `/account/connections/…`: the section's forms. */
export const accountConnections = new Hono<AppEnv>()
  .post('/connect', async (c) => {
    const signed = await signedInForm(c)
    if (signed instanceof Response) {
      return signed
    }
    const provider = signed.form.provider
    if (typeof provider !== 'string' || !PROVIDER_ID.test(provider)) {
      return back(c, 'missing')
    }
    // Signed in, the provider's start connects it to this account (functions/federation/routes.ts).
    const returnTo = encodeURIComponent('/account?connection=linked#connections')
    return c.redirect(`/federated/${provider}/start?return_to=${returnTo}`, 303)
  })
  .post('/:id/unlink', async (c) => {
    const signed = await signedInForm(c)
    if (signed instanceof Response) {
      return signed
    }
    const id = c.req.param('id')
    const outcome = isUuid(id)
      ? await unlinkIdentity(
          c.var.db.http,
          signed.me.user.id,
          id,
          clientIp(c),
          c.var.config.federation.passwordLogin,
        )
      : 'not_found'
    return back(c, outcome === 'deleted' ? 'removed' : outcome === 'last_method' ? 'last' : 'missing')
  })
