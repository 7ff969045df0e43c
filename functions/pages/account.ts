import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import * as v from 'valibot'
import {
  disconnectAppAudited,
  endSessionByIdAudited,
  listConnectedApps,
  listLiveSessions,
} from '../../db/queries/account'
import { insertApiKey, type KeyAudit, listApiKeys, revokeApiKey } from '../../db/queries/apikeys'
import { updateDisplayNameStatement } from '../../db/queries/users'
import { isUuid } from '../../db/uuid'
import { generateApiKey } from '../apikeys/key-format'
import { auditStatement } from '../audit/record'
import { changePassword } from '../auth/account-actions'
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../auth/password-policy'
import { DISPLAY_NAME_MAX_LENGTH, DisplayName } from '../auth/schemas'
import { slideSession } from '../auth/session-cookie'
import {
  confirmTotpEnrolment,
  disableTotp,
  pendingEnrolment,
  regenerateRecoveryCodes,
  startTotpEnrolment,
  totpStatus,
} from '../auth/totp-enrolment'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { connectionsAccountSection } from '../federation/account-connections'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { planKeyTiers } from '../tenants/plans'
import { accountEmailPage } from './account-email'
import { type Form, type Signed, signedIn, signedInForm, toLogin } from './account-session'
import { CSRF_FIELD, issueCsrfToken } from './csrf'
import { sendPage } from './layout'
import { passkeyAccountSection } from './passkey-blocks'
import { qrCodeSvg } from './qr-code'
import { isoTime, relativeTime, scopeText, weakPasswordText } from './words'

/** "Chrome on Linux"-style words for a User-Agent; the raw string stays in the tooltip. */
function deviceWords(userAgent: string | null): string {
  if (userAgent === null || userAgent === '') {
    return 'Unknown device'
  }
  const browser = /Edg\//.test(userAgent)
    ? 'Edge'
    : /Firefox\//.test(userAgent)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(userAgent)
        ? 'Chrome'
        : /Safari\//.test(userAgent)
          ? 'Safari'
          : /curl|node|undici|python|go-http/i.test(userAgent)
            ? 'A program'
            : 'A browser'
  const os = /Android/.test(userAgent)
    ? 'Android'
    : /iPhone|iPad/.test(userAgent)
      ? 'iOS'
      : /Windows/.test(userAgent)
        ? 'Windows'
        : /Mac OS X|Macintosh/.test(userAgent)
          ? 'macOS'
          : /Linux/.test(userAgent)
            ? 'Linux'
            : undefined
  return os === undefined ? browser : `${browser} on ${os}`
}

const KEY_NAME_MAX_LENGTH = 100

function keyAudit(c: Context<AppEnv>, me: Signed, type: KeyAudit['type']): KeyAudit {
  return { type, actor: `user:${me.user.id}`, clientId: null, ip: clientIp(c), metadata: { via: 'account' } }
}

async function renderAccount(
  c: Context<AppEnv>,
  me: Signed,
  notice?: string,
  status: 200 | 400 | 429 = 200,
  newKey?: string,
) {
  const now = new Date()
  const db = c.var.db.http
  const [sessions, apps, keys, csrf, totp] = await Promise.all([
    listLiveSessions(db, me.user.id, now),
    listConnectedApps(db, me.user.id),
    listApiKeys(db, { ownerUserId: me.user.id, limit: 50, after: undefined, includeRevoked: false, now }),
    issueCsrfToken(c),
    totpStatus(c, me.user.id),
  ])
  const csrfInput = html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />`
  return sendPage(
    c,
    'Your account',
    html`<h1>Your account</h1>
      <p class="lead">Signed in as <strong data-testid="account-email">${me.user.email}</strong>
        · <a href="/account/email" data-testid="change-email">Change email</a></p>
      ${notice === undefined ? '' : html`<div class="${status === 200 ? 'notice' : 'error'}" role="status">${notice}</div>`}

      <h2>Profile</h2>
      <form method="post" action="/account/profile">
        ${csrfInput}
        <label for="display_name">Name</label>
        <input id="display_name" name="display_name" type="text" autocomplete="name" maxlength="${DISPLAY_NAME_MAX_LENGTH}"
          value="${me.user.displayName ?? ''}" />
        <div class="row"><button type="submit" class="secondary">Save name</button></div>
      </form>

      ${
        // PASSWORD_LOGIN=off (issue 13): no password to change.
        c.var.config.federation.passwordLogin
          ? html`<h2>Password</h2>
      <form method="post" action="/account/password">
        ${csrfInput}
        <input type="text" name="username" value="${me.user.email}" autocomplete="username" hidden />
        <label for="current_password">Current password</label>
        <input id="current_password" name="current_password" type="password" autocomplete="current-password" required
          maxlength="${PASSWORD_MAX_LENGTH}" />
        <label for="new_password">New password</label>
        <input id="new_password" name="new_password" type="password" autocomplete="new-password" required
          minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}" />
        <p class="muted">At least ${PASSWORD_MIN_LENGTH} characters. Every other device will be signed out.
          Forgot it? <a href="/forgot-password">Get a reset link</a>.</p>
        <div class="row"><button type="submit" class="secondary">Change password</button></div>
      </form>`
          : ''
      }

      <h2>Two-factor sign-in</h2>
      ${
        totp.active
          ? html`<p data-testid="totp-on">On: signing in asks for a code from your authenticator app.
                ${totp.recoveryCodesLeft} recovery codes left.</p>
              <form method="post" action="/account/recovery-codes">
                ${csrfInput}
                <p class="muted">To get new recovery codes (all the old ones stop working) or to turn two-factor
                  sign-in off, confirm it is you with your password or a code.</p>
                <label for="factor_password">Current password</label>
                <input id="factor_password" name="current_password" type="password" autocomplete="current-password"
                  maxlength="${PASSWORD_MAX_LENGTH}" />
                <label for="factor_code">Or a code from your app (or a recovery code)</label>
                <input id="factor_code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" maxlength="32" />
                <div class="row">
                  <button type="submit" class="secondary" data-testid="new-recovery-codes">New recovery codes</button>
                  <button type="submit" class="secondary" formaction="/account/totp/disable" data-testid="totp-disable">Turn off</button>
                </div>
              </form>`
          : html`<p data-testid="totp-off">Off. Add a code from an authenticator app to every sign-in.</p>
              <form method="post" action="/account/totp/start">
                ${csrfInput}
                <div class="row"><button type="submit" class="secondary">Set up two-factor sign-in</button></div>
              </form>`
      }

      ${passkeyAccountSection(c, me, csrf)}

      ${connectionsAccountSection(c, me, csrf)}

      <h2>Where you are signed in</h2>
      <ul class="items" data-testid="sessions">
        ${sessions.map(
          (s) => html`<li data-session="${s.id}">
            <div>
              <strong title="${s.userAgent ?? ''}">${deviceWords(s.userAgent)}</strong>
              ${s.id === me.session.id ? html`<span class="badge">This device</span>` : ''}
              <div class="muted">
                ${s.ip ?? 'Unknown address'} · signed in
                <time datetime="${isoTime(s.createdAt)}" title="${isoTime(s.createdAt)}">${relativeTime(s.createdAt, now)}</time>
                · last active <time datetime="${isoTime(s.lastSeenAt)}">${relativeTime(s.lastSeenAt, now)}</time>
              </div>
            </div>
            <form method="post" action="/account/sessions/${s.id}/end">
              ${csrfInput}
              <button type="submit" class="secondary small">Sign out</button>
            </form>
          </li>`,
        )}
      </ul>

      <h2>Connected applications</h2>
      ${
        apps.length === 0
          ? html`<p class="muted" data-testid="no-apps">No applications can use your account.</p>`
          : html`<ul class="items" data-testid="apps">
              ${apps.map(
                (a) => html`<li>
                  <div>
                    <strong>${a.clientName ?? a.clientId}</strong>
                    <div class="muted">${a.scopes.map(scopeText).join(' · ')} · allowed
                      <time datetime="${isoTime(a.grantedAt)}">${relativeTime(a.grantedAt, now)}</time></div>
                  </div>
                  <form method="post" action="/account/apps/${a.clientUuid}/revoke">
                    ${csrfInput}
                    <button type="submit" class="secondary small">Remove access</button>
                  </form>
                </li>`,
              )}
            </ul>`
      }

      <h2>API keys</h2>
      ${
        newKey === undefined
          ? ''
          : html`<div class="notice" role="status">
              Your new key. Copy it now: it is shown only once.
              <code class="secret" data-testid="new-api-key">${newKey}</code>
            </div>`
      }
      ${
        keys.rows.length === 0
          ? html`<p class="muted" data-testid="no-keys">You have no API keys.</p>`
          : html`<ul class="items" data-testid="api-keys">
              ${keys.rows.map(
                (k) => html`<li>
                  <div>
                    <strong>${k.name}</strong>
                    <div class="muted"><code>${k.prefix}…${k.last4}</code> · created
                      <time datetime="${isoTime(k.createdAt)}">${relativeTime(k.createdAt, now)}</time> ·
                      ${k.lastUsedAt === null ? 'never used' : html`last used <time datetime="${isoTime(k.lastUsedAt)}">${relativeTime(k.lastUsedAt, now)}</time>`}
                      ${k.expiresAt === null ? '' : html` · expires <time datetime="${isoTime(k.expiresAt)}">${relativeTime(k.expiresAt, now)}</time>`}
                    </div>
                  </div>
                  <form method="post" action="/account/api-keys/${k.id}/revoke">
                    ${csrfInput}
                    <button type="submit" class="secondary small">Revoke</button>
                  </form>
                </li>`,
              )}
            </ul>`
      }
      <form method="post" action="/account/api-keys">
        ${csrfInput}
        <label for="key_name">New key name</label>
        <input id="key_name" name="name" type="text" required maxlength="${KEY_NAME_MAX_LENGTH}" placeholder="e.g. Build server" />
        <div class="row"><button type="submit" class="secondary">Create API key</button></div>
      </form>
      <div class="links"><a href="/">Home</a></div>`,
    status,
  )
}

/** The otpauth URI as a QR code to scan (server-drawn SVG), sized for a phone camera. */
export function totpQrBlock(uri: string) {
  return html`<style>
      .qr-box { display: flex; justify-content: center; margin: 8px 0 4px; }
      .qr-box svg { width: min(240px, 70vw); height: auto; border-radius: 8px; }
      code[data-testid="totp-secret"] { word-break: normal; word-spacing: 0.3em; }
    </style>
    <div class="qr-box" data-testid="totp-qr">${qrCodeSvg(uri, 'QR code for your authenticator app')}</div>`
}

/** The enrolment page: the otpauth URI and secret, and the form for the first code. */
async function renderTotpSetup(c: Context<AppEnv>, setup: { secret: string; uri: string }, error?: string) {
  const csrf = await issueCsrfToken(c)
  const grouped = setup.secret.replace(/(.{4})/g, '$1 ').trim()
  return sendPage(
    c,
    'Set up two-factor sign-in',
    html`<h1>Set up two-factor sign-in</h1>
      <p class="lead">Add this account to your authenticator app, then enter the code it shows.</p>
      ${error === undefined ? '' : html`<div class="error" role="alert">${error}</div>`}
      ${totpQrBlock(setup.uri)}
      <p><a href="${setup.uri}" data-testid="otpauth-uri">Open in an authenticator app on this device</a></p>
      <p>Or type this key: <code class="secret" data-testid="totp-secret">${grouped}</code></p>
      <form method="post" action="/account/totp/confirm" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <label for="code">Code from the app</label>
        <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="6" autofocus />
        <div class="row"><button type="submit">Turn on</button></div>
      </form>
      <div class="links"><a href="/account">Cancel</a></div>`,
    error === undefined ? 200 : 400,
  )
}

/** The password-or-code fields of a two-factor change. */
function factorProof(form: Form): { password: string; code: string } {
  return {
    password:
      typeof form.current_password === 'string' ? form.current_password.slice(0, PASSWORD_MAX_LENGTH) : '',
    code: typeof form.code === 'string' ? form.code.slice(0, 32) : '',
  }
}

/** The words for a refused two-factor change; anything but a refused proof is rethrown. */
function factorProofRefusal(error: unknown): { message: string; status: 400 | 429 } {
  if (error instanceof ProblemError && error.code === 'rate_limited') {
    return { message: 'Too many wrong attempts. Wait a few minutes, then try again.', status: 429 }
  }
  if (error instanceof ProblemError && error.code === 'invalid_credentials') {
    return { message: 'Enter your current password or a current code.', status: 400 }
  }
  throw error
}

/** Recovery codes, shown once, and where to go next. */
export function renderRecoveryCodes(c: Context<AppEnv>, heading: string, codes: string[], next: string) {
  return sendPage(
    c,
    'Recovery codes',
    html`<h1>${heading}</h1>
      <div class="notice" role="status">Save these recovery codes now: they are shown only once. Each works once
        if you lose your device.</div>
      <style>
        ul.codes { list-style: none; padding: 0; margin: 16px 0; display: grid; grid-template-columns: repeat(2, 1fr); gap: 8px; }
        ul.codes code { display: block; text-align: center; padding: 8px; border: 1px solid var(--border); border-radius: 6px; font-size: 15px; }
        a.button { display: block; flex: 1; text-align: center; padding: 11px 14px; border-radius: 8px; font-weight: 600;
          background: var(--accent); color: #fff; text-decoration: none; }
      </style>
      <ul class="codes" data-testid="recovery-codes">${codes.map((code) => html`<li><code>${code}</code></li>`)}</ul>
      <div class="row"><a class="button" href="${next}" data-testid="recovery-continue">I saved them, continue</a></div>`,
  )
}

documentRoute({
  method: 'get',
  path: '/account',
  summary: 'The account center (HTML): profile, sessions, connected applications, API keys',
  tags: ['pages'],
  responses: { 200: { description: 'An HTML page', contentType: 'text/html' } },
})

/**
 * `/account`: the signed-in person's own account. Every form is CSRF-protected and works without
 * JavaScript; every change is scoped to the session's user and audited in its own statement.
 */
export const accountPage = new Hono<AppEnv>()
  .route('/email', accountEmailPage)
  .get('/', async (c) => {
    const me = await signedIn(c)
    if (me === undefined) {
      return toLogin(c)
    }
    slideSession(c, me.session, new Date())
    const notice =
      c.req.query('done') === 'password'
        ? 'Your password is changed. Every other device is signed out.'
        : undefined
    return renderAccount(c, me, notice)
  })
  .post('/password', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const current = typeof form.current_password === 'string' ? form.current_password : ''
    const next = typeof form.new_password === 'string' ? form.new_password : ''
    if (current === '' || current.length > PASSWORD_MAX_LENGTH || next.length > PASSWORD_MAX_LENGTH) {
      return renderAccount(c, me, 'Enter your current password and a new one.', 400)
    }
    try {
      await changePassword(c, me, current, next)
    } catch (error) {
      const messages: Partial<Record<string, string>> = {
        weak_password:
          error instanceof ProblemError ? weakPasswordText(error.options.errors?.[0]?.message) : '',
        invalid_credentials: 'Your current password is not right.',
        rate_limited: 'Too many wrong passwords. Wait a few minutes, then try again.',
      }
      const message = error instanceof ProblemError ? messages[error.code] : undefined
      if (message === undefined) {
        throw error
      }
      return renderAccount(c, me, message, 400)
    }
    // The change gave this browser a new session cookie: the next page's forms bind to it.
    return c.redirect('/account?done=password', 303)
  })
  .post('/totp/start', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const setup = await startTotpEnrolment(c, posted.me.user)
    if (setup === undefined) {
      return renderAccount(c, posted.me, 'Two-factor sign-in is already on.', 400)
    }
    return renderTotpSetup(c, setup)
  })
  .post('/totp/confirm', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const code = typeof form.code === 'string' ? form.code.slice(0, 32) : ''
    const codes = await confirmTotpEnrolment(c, me.user, code)
    if (codes === undefined) {
      const setup = await pendingEnrolment(c, me.user)
      return setup === undefined
        ? renderAccount(c, me, 'Start the setup again.', 400)
        : renderTotpSetup(
            c,
            setup,
            'That code is not right. Check the time on your device and try the next one.',
          )
    }
    return renderRecoveryCodes(c, 'Two-factor sign-in is on', codes, '/account')
  })
  .post('/recovery-codes', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    let codes: string[] | undefined
    try {
      codes = await regenerateRecoveryCodes(c, me.user, factorProof(form))
    } catch (error) {
      const refused = factorProofRefusal(error)
      return renderAccount(c, me, refused.message, refused.status)
    }
    if (codes === undefined) {
      return renderAccount(c, me, 'Two-factor sign-in is off: there are no recovery codes to replace.', 400)
    }
    return renderRecoveryCodes(c, 'New recovery codes', codes, '/account')
  })
  .post('/totp/disable', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    try {
      await disableTotp(c, me.user, factorProof(form))
    } catch (error) {
      const refused = factorProofRefusal(error)
      return renderAccount(c, me, refused.message, refused.status)
    }
    return renderAccount(c, me, 'Two-factor sign-in is off.')
  })
  .post('/profile', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const parsed = v.safeParse(DisplayName, typeof form.display_name === 'string' ? form.display_name : '')
    if (!parsed.success) {
      return renderAccount(c, me, 'Use a shorter name without control characters.', 400)
    }
    const name = parsed.output === null || parsed.output === '' ? null : parsed.output
    const db = c.var.db.http
    await db.batch([
      updateDisplayNameStatement(db, me.user.id, name, new Date()),
      auditStatement(db, clientIp(c), {
        type: 'user_updated',
        actor: `user:${me.user.id}`,
        userId: me.user.id,
        tenantId: me.user.tenantId,
        metadata: { fields: ['display_name'], via: 'account' },
      }),
    ])
    return renderAccount(c, { ...me, user: { ...me.user, displayName: name } }, 'Your name is saved.')
  })
  .post('/sessions/:id/end', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me } = posted
    const id = c.req.param('id')
    const ended = isUuid(id) && (await endSessionByIdAudited(c.var.db.http, me.user.id, id, clientIp(c)))
    if (ended && id === me.session.id) {
      return c.redirect('/login', 303)
    }
    return renderAccount(c, me, ended ? 'That session is signed out.' : 'That session had already ended.')
  })
  .post('/apps/:id/revoke', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me } = posted
    const id = c.req.param('id')
    const removed = isUuid(id) && (await disconnectAppAudited(c.var.db.http, me.user.id, id, clientIp(c)))
    return renderAccount(
      c,
      me,
      removed
        ? 'The application can no longer use your account; it will ask again if you use it.'
        : 'That application had no access.',
    )
  })
  .post('/api-keys', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const name = typeof form.name === 'string' ? form.name.trim() : ''
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    if (name === '' || name.length > KEY_NAME_MAX_LENGTH || /[\u0000-\u001f\u007f]/.test(name)) {
      return renderAccount(c, me, `Name the key (at most ${KEY_NAME_MAX_LENGTH} characters).`, 400)
    }
    const config = c.var.config
    const generated = generateApiKey(config.apiKeyEnv)
    await insertApiKey(
      c.var.db.http,
      { userId: me.user.id, tenantId: me.user.tenantId },
      {
        keyHash: await sha256Hex(generated.key),
        prefix: generated.prefix,
        last4: generated.last4,
        name,
        tier: planKeyTiers(config),
        scopes: [],
        metadata: {},
        rateLimit: null,
        rateLimitWindowSeconds: 60,
        expiresAt: null,
        createdAt: new Date(),
      },
      keyAudit(c, me, 'api_key_created'),
    )
    return renderAccount(c, me, undefined, 200, generated.key)
  })
  .post('/api-keys/:id/revoke', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me } = posted
    const id = c.req.param('id')
    const revoked = isUuid(id)
      ? await revokeApiKey(c.var.db.http, id, me.user.id, new Date(), keyAudit(c, me, 'api_key_revoked'))
      : undefined
    return renderAccount(
      c,
      me,
      revoked === undefined ? 'No such key.' : 'The key is revoked; it stops working now.',
    )
  })
