import { Hono } from 'hono'
import { html } from 'hono/html'
import { endSessionAudited, findLiveSessionWithUser } from '../../db/queries/sessions'
import { clearSessionCookie, readSessionToken, slideSession } from '../auth/session-cookie'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { clientIp } from '../middleware/client-ip'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'
import { isoTime, relativeTime } from './words'

/** `GET /`: who is signed in, with a sign-out button; `POST /logout`: the button's target. */
export const homePage = new Hono<AppEnv>()
  .get('/', async (c) => {
    const token = readSessionToken(c)
    const now = new Date()
    const found =
      token === undefined
        ? undefined
        : await findLiveSessionWithUser(c.var.db.http, await sha256Hex(token), now)
    if (found === undefined || found.user.status !== 'active') {
      return sendPage(
        c,
        'Welcome',
        html`<h1>You are not signed in</h1>
          <p class="lead">Sign in to see your account.</p>
          <div class="row"><a href="/login" style="flex:1"><button type="button">Sign in</button></a></div>
          <p class="muted">New here? <a href="/signup">Create an account</a>.</p>`,
      )
    }
    slideSession(c, found.session, now)
    const name = found.user.displayName ?? found.user.email
    const csrf = await issueCsrfToken(c)
    return sendPage(
      c,
      'Signed in',
      html`<h1>Welcome, ${name}</h1>
        <p class="lead">You are signed in as <strong data-testid="signed-in-email">${found.user.email}</strong>.</p>
        <p class="muted" data-testid="session-expiry">
          Your session expires
          <time datetime="${isoTime(found.session.expiresAt)}" title="${isoTime(found.session.expiresAt)}">${relativeTime(found.session.expiresAt, now)}</time>.
        </p>
        <p><a href="/account">Manage your account</a>: name, where you are signed in, connected applications.</p>
        <form method="post" action="/logout">
          <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
          <div class="row"><button type="submit" class="secondary">Sign out</button></div>
        </form>`,
    )
  })
  .post('/logout', async (c) => {
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const token = readSessionToken(c)
    if (token !== undefined) {
      await endSessionAudited(c.var.db.http, await sha256Hex(token), {
        ip: clientIp(c),
        metadata: { all: false, via: 'form' },
      })
    }
    clearSessionCookie(c)
    return c.redirect('/login', 303)
  })
