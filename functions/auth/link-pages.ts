import type { Context, MiddlewareHandler } from 'hono'
import { html } from 'hono/html'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from '../pages/csrf'
import { sendPage } from '../pages/layout'
import { confirmPasswordReset, verifyEmailToken } from './account-tokens'
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from './password-policy'

// The links in verification and reset emails open these pages. Opening a link changes nothing
// (mail scanners prefetch links); the person confirms with a button, a CSRF-protected form post
// to the same path that the JSON API serves.

const TOKEN_MAX_LENGTH = 128

function tokenOf(raw: unknown): string {
  return typeof raw === 'string' && raw.length > 0 && raw.length <= TOKEN_MAX_LENGTH ? raw : ''
}

function isFormPost(c: Context<AppEnv>): boolean {
  const type = c.req.header('content-type') ?? ''
  return /^(application\/x-www-form-urlencoded|multipart\/form-data)/i.test(type)
}

function invalidLinkPage(c: Context<AppEnv>) {
  return sendPage(
    c,
    'Link expired',
    html`<h1>This link no longer works</h1>
      <div class="error" role="alert">The link is invalid, has expired or was already used.</div>
      <p class="lead">Ask for a new one and use the most recent message.</p>
      <div class="row"><a href="/login" style="flex:1"><button type="button" class="secondary">Back to sign in</button></a></div>`,
    400,
  )
}

/** `GET /auth/verify-email?token=…`: a confirm button. */
export async function verifyEmailPage(c: Context<AppEnv>) {
  const token = tokenOf(c.req.query('token'))
  if (token === '') {
    return invalidLinkPage(c)
  }
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Confirm your email',
    html`<h1>Confirm your email address</h1>
      <p class="lead">One click and your address is confirmed.</p>
      <form method="post" action="/auth/verify-email">
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="token" value="${token}" />
        <div class="row"><button type="submit">Confirm email address</button></div>
      </form>`,
  )
}

/** Form posts to `POST /auth/verify-email` get pages; JSON requests go on to the API handler. */
export function verifyEmailForm(): MiddlewareHandler<AppEnv> {
  return async function verifyEmailForm(c, next) {
    if (!isFormPost(c)) {
      return next()
    }
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const user = await verifyEmailToken(c, tokenOf(form.token))
    if (user === undefined) {
      return invalidLinkPage(c)
    }
    return sendPage(
      c,
      'Email confirmed',
      html`<h1>Email confirmed</h1>
        <p class="lead">${user.email} is confirmed. You can sign in now.</p>
        <div class="row"><a href="/login" style="flex:1"><button type="button">Sign in</button></a></div>`,
    )
  }
}

async function resetForm(c: Context<AppEnv>, token: string, error?: string, status: 200 | 400 = 200) {
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Choose a new password',
    html`<h1>Choose a new password</h1>
      <p class="lead">At least ${PASSWORD_MIN_LENGTH} characters. Every device signed in to your account will be signed out.</p>
      ${error === undefined ? '' : html`<div class="error" role="alert">${error}</div>`}
      <form method="post" action="/auth/password-reset/confirm">
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="token" value="${token}" />
        <label for="password">New password</label>
        <input id="password" name="password" type="password" autocomplete="new-password" required
          minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}" autofocus />
        <div class="row"><button type="submit">Set password</button></div>
      </form>`,
    status,
  )
}

/** `GET /auth/password-reset/confirm?token=…`: the new-password form. */
export function resetPasswordPage(c: Context<AppEnv>) {
  const token = tokenOf(c.req.query('token'))
  return token === '' ? invalidLinkPage(c) : resetForm(c, token)
}

/** Form posts to `POST /auth/password-reset/confirm` get pages; JSON goes on to the API. */
export function resetPasswordForm(): MiddlewareHandler<AppEnv> {
  return async function resetPasswordForm(c, next) {
    if (!isFormPost(c)) {
      return next()
    }
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const token = tokenOf(form.token)
    const password = typeof form.password === 'string' ? form.password : ''
    if (password.length > PASSWORD_MAX_LENGTH) {
      return resetForm(c, token, `Use at most ${PASSWORD_MAX_LENGTH} characters.`, 400)
    }
    try {
      await confirmPasswordReset(c, token, password)
    } catch (error) {
      if (error instanceof ProblemError && error.code === 'weak_password') {
        return resetForm(c, token, error.options.detail ?? 'Choose a stronger password.', 400)
      }
      if (error instanceof ProblemError && error.code === 'invalid_token') {
        return invalidLinkPage(c)
      }
      throw error
    }
    return sendPage(
      c,
      'Password changed',
      html`<h1>Password changed</h1>
        <p class="lead">Sign in with your new password.</p>
        <div class="row"><a href="/login" style="flex:1"><button type="button">Sign in</button></a></div>`,
    )
  }
}
