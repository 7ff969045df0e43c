import type { Context } from 'hono'
import { html } from 'hono/html'
import { listPasskeysStatement } from '../../db/queries/passkeys'
import type { UserRow } from '../../db/queries/users'
import { relyingParty } from '../auth/passkeys/config'
import {
  MAX_PASSKEYS_PER_USER,
  PASSKEY_NAME_MAX_LENGTH,
  signedInRecently,
} from '../auth/passkeys/registration'
import { secondFactorHasPasskey } from '../auth/passkeys/sign-in'
import type { AppEnv } from '../env'
import { CSRF_FIELD } from './csrf'
import { isoTime, relativeTime } from './words'

// The passkey parts of /login, its second step and /account (issue 14). Each is a form that
// works with /passkeys.js: the script runs the WebAuthn ceremony, puts the browser's answer
// (JSON) in the form's `credential` field and submits it. Without the script (or WebAuthn) the
// forms stay hidden: every other way to sign in works without JavaScript.

export const PASSKEY_SCRIPT_PATH = '/passkeys.js'

const STYLE = html`<style>
  .passkey { margin-top: 18px; } .passkey[hidden] { display: none; }
  .passkey .status { margin-top: 10px; }
  form.rename { display: flex; gap: 8px; margin-top: 8px; } form.rename input { flex: 1; width: auto; min-width: 0; padding: 6px 10px; }
  form.rename button { flex: none; } ul.passkeys li > div { flex: 1; min-width: 0; }
</style>`

function script() {
  return html`<script src="${PASSKEY_SCRIPT_PATH}" defer></script>`
}

/** Messages the pages show for a passkey that did not work; the query's `passkey=` names one. */
export const PASSKEY_MESSAGES = {
  failed: 'That passkey did not work. Try again, or use another way to sign in.',
  throttled: 'Too many failed attempts. Wait a few minutes, then try again.',
  account: 'This account cannot sign in right now.',
} as const

/** A sign-in form the script completes: it asks `options` for a challenge, then posts here. */
function signInForm(input: {
  action: string
  options: string
  csrf: string
  returnTo: string
  hidden: Record<string, string>
  testId: string
  label: string
}) {
  return html`${STYLE}
    <form class="passkey" method="post" action="${input.action}" data-passkey="get" data-options="${input.options}" hidden>
      <input type="hidden" name="${CSRF_FIELD}" value="${input.csrf}" />
      <input type="hidden" name="return_to" value="${input.returnTo}" />
      ${Object.entries(input.hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`)}
      <input type="hidden" name="credential" value="" />
      <div class="row"><button type="submit" class="secondary" data-testid="${input.testId}">${input.label}</button></div>
      <div class="status error" role="alert" data-passkey-status hidden></div>
    </form>
    ${script()}`
}

/** "Sign in with a passkey" on /login: a usernameless sign-in that returns to `returnTo`. */
export function passkeySignInBlock(c: Context<AppEnv>, input: { csrf: string; returnTo: string }) {
  if (relyingParty(c.var.config) === undefined) {
    return ''
  }
  return signInForm({
    action: '/login/passkey',
    options: '/auth/passkeys/sign-in/options',
    csrf: input.csrf,
    returnTo: input.returnTo,
    hidden: { remember: '' },
    testId: 'passkey-sign-in',
    label: 'Sign in with a passkey',
  })
}

/** On the second page of a two-step sign-in: "Use a passkey instead", when the user has one. */
export async function passkeySecondStepBlock(
  c: Context<AppEnv>,
  input: { csrf: string; returnTo: string; mfaToken: string },
) {
  if (
    relyingParty(c.var.config) === undefined ||
    !(await secondFactorHasPasskey(c.var.db.http, input.mfaToken, new Date()))
  ) {
    return ''
  }
  return signInForm({
    action: '/login/mfa/passkey',
    options: '/auth/passkeys/second-factor/options',
    csrf: input.csrf,
    returnTo: input.returnTo,
    hidden: { mfa_token: input.mfaToken },
    testId: 'passkey-second-factor',
    label: 'Use a passkey instead',
  })
}

const ACCOUNT_NOTICES: Readonly<Record<string, { text: string; ok: boolean }>> = {
  added: { text: 'Your passkey is added. You can sign in with it now.', ok: true },
  renamed: { text: 'The passkey is renamed.', ok: true },
  removed: { text: 'The passkey is removed.', ok: true },
  failed: { text: 'The passkey could not be added. Try again.', ok: false },
  exists: { text: 'That passkey is already registered.', ok: false },
  too_many: { text: `You have ${MAX_PASSKEYS_PER_USER} passkeys; remove one first.`, ok: false },
  stale: {
    text: 'Sign in again to add a passkey (for your safety, within 15 minutes of signing in).',
    ok: false,
  },
  last: { text: 'That passkey is the only way into your account; add another way first.', ok: false },
  missing: { text: 'No such passkey.', ok: false },
  name: { text: `Name the passkey (at most ${PASSKEY_NAME_MAX_LENGTH} characters).`, ok: false },
}

/**
 * The "Passkeys" section of /account: each passkey with rename and remove forms, and "Add a
 * passkey" (offered only within 15 minutes of signing in; older sessions get a link to sign in
 * again). `?passkey=<notice>` after a change says what happened. One round trip.
 */
export async function passkeyAccountSection(
  c: Context<AppEnv>,
  me: { user: UserRow; session: { createdAt: Date } },
  csrf: string,
) {
  if (relyingParty(c.var.config) === undefined) {
    return ''
  }
  const now = new Date()
  const rows = await listPasskeysStatement(c.var.db.http, me.user.id)
  const notice = ACCOUNT_NOTICES[c.req.query('passkey') ?? '']
  const csrfInput = html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />`
  return html`${STYLE}
    <h2 id="passkeys">Passkeys</h2>
    <p class="muted">Sign in with your fingerprint, face or screen lock instead of a password. With two-factor
      sign-in on, a passkey also works in place of the code from your app.</p>
    ${notice === undefined ? '' : html`<div class="${notice.ok ? 'notice' : 'error'}" role="status" data-testid="passkey-notice">${notice.text}</div>`}
    ${
      rows.length === 0
        ? html`<p class="muted" data-testid="no-passkeys">You have no passkeys.</p>`
        : html`<ul class="items passkeys" data-testid="passkeys">
            ${rows.map(
              (p) => html`<li data-passkey-id="${p.id}">
                <div>
                  <strong>${p.name}</strong>${p.backedUp ? html`<span class="badge">Synced</span>` : ''}
                  <div class="muted">added <time datetime="${isoTime(p.createdAt)}">${relativeTime(p.createdAt, now)}</time> ·
                    ${p.lastUsedAt === null ? 'never used' : html`last used <time datetime="${isoTime(p.lastUsedAt)}">${relativeTime(p.lastUsedAt, now)}</time>`}</div>
                  <form class="rename" method="post" action="/account/passkeys/${p.id}/rename">
                    ${csrfInput}
                    <input aria-label="Name of this passkey" name="name" type="text" required
                      maxlength="${PASSKEY_NAME_MAX_LENGTH}" value="${p.name}" />
                    <button type="submit" class="secondary small">Rename</button>
                  </form>
                </div>
                <form method="post" action="/account/passkeys/${p.id}/remove">
                  ${csrfInput}
                  <button type="submit" class="secondary small">Remove</button>
                </form>
              </li>`,
            )}
          </ul>`
    }
    ${
      signedInRecently(me.session, now)
        ? html`<form class="passkey" method="post" action="/account/passkeys" data-passkey="create"
              data-options="/auth/passkeys/registration/options" hidden>
              ${csrfInput}
              <input type="hidden" name="credential" value="" />
              <label for="passkey_name">Name for the new passkey</label>
              <input id="passkey_name" name="name" type="text" maxlength="${PASSKEY_NAME_MAX_LENGTH}" placeholder="e.g. My laptop" />
              <div class="row"><button type="submit" class="secondary" data-testid="add-passkey">Add a passkey</button></div>
              <div class="status error" role="alert" data-passkey-status hidden></div>
            </form>
            ${script()}`
        : html`<p class="muted">To add a passkey, <a href="/login?return_to=${encodeURIComponent('/account#passkeys')}">sign in again</a>
            (adding one needs a sign-in within the last 15 minutes).</p>`
    }`
}
