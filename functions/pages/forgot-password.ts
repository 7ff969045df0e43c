import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import * as v from 'valibot'
import { requestPasswordReset } from '../auth/account-actions'
import { EMAIL_MAX_LENGTH, Email } from '../auth/schemas'
import type { AppEnv } from '../env'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'
import { relativeTime } from './words'

async function renderForm(c: Context<AppEnv>, email: string, error?: string, status: 200 | 400 | 403 = 200) {
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Reset your password',
    html`<h1>Forgot your password?</h1>
      <p class="lead">Enter the email address of your account and we will send you a link to choose a new password.</p>
      ${error === undefined ? '' : html`<div class="error" role="alert">${error}</div>`}
      <form method="post" action="/forgot-password" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="email" required maxlength="${EMAIL_MAX_LENGTH}"
          value="${email}" autofocus />
        <div class="row"><button type="submit">Send reset link</button></div>
      </form>
      <div class="links"><a href="/login">Back to sign in</a><a href="/signup">Create an account</a></div>`,
    status,
  )
}

documentRoute({
  method: 'get',
  path: '/forgot-password',
  summary: 'The forgot-password page (HTML)',
  tags: ['pages'],
  responses: { 200: { description: 'An HTML form', contentType: 'text/html' } },
})
documentRoute({
  method: 'post',
  path: '/forgot-password',
  summary: 'Ask for a reset link (CSRF protected); the same answer whether or not the address has an account',
  tags: ['pages'],
  responses: { 200: { description: 'A "check your email" page', contentType: 'text/html' } },
})

/** `GET/POST /forgot-password`: the HTML face of `POST /auth/password-reset`. */
export const forgotPasswordPage = new Hono<AppEnv>()
  .get('/', (c) => renderForm(c, ''))
  .post('/', async (c) => {
    const form = await c.req.parseBody()
    const raw = typeof form.email === 'string' ? form.email.slice(0, EMAIL_MAX_LENGTH) : ''
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return renderForm(c, raw, 'This form expired. Please try again.', 403)
    }
    const email = v.safeParse(Email, raw)
    if (!email.success) {
      return renderForm(c, raw, 'Enter a valid email address.', 400)
    }
    await requestPasswordReset(c, email.output)
    const now = new Date()
    const expires = new Date(now.getTime() + c.var.config.passwordResetTtlSeconds * 1000)
    // The same page whether or not the address has an account (no account enumeration).
    return sendPage(
      c,
      'Check your email',
      html`<h1>Check your email</h1>
        <div class="notice" role="status" data-testid="reset-sent">
          If <strong>${email.output}</strong> has an account, we sent it a link to choose a new password.
        </div>
        <p class="lead">The link works once and expires ${relativeTime(expires, now)}. Nothing there? Look in spam, or ask again in a minute.</p>
        <div class="links"><a href="/login">Back to sign in</a></div>`,
    )
  })
