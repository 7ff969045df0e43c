import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import * as v from 'valibot'
import { confirmEmailChange, requestEmailChange } from '../auth/email-change'
import { PASSWORD_MAX_LENGTH } from '../auth/password-policy'
import { EMAIL_MAX_LENGTH, Email } from '../auth/schemas'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { documentRoute } from '../openapi/registry'
import { type Signed, signedIn, signedInForm, toLogin } from './account-session'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'

const TOKEN_MAX_LENGTH = 128

async function renderChangeForm(
  c: Context<AppEnv>,
  me: Signed,
  state: { email: string; error?: string },
  status: 200 | 400 | 409 | 429 = 200,
) {
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Change email',
    html`<h1>Change your email address</h1>
      <p class="lead">You sign in with <strong>${me.user.email}</strong>. We will send a link to the new address;
        the address changes only when you follow it.</p>
      ${state.error === undefined ? '' : html`<div class="error" role="alert">${state.error}</div>`}
      <form method="post" action="/account/email" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="text" name="username" value="${me.user.email}" autocomplete="username" hidden />
        <label for="new_email">New email address</label>
        <input id="new_email" name="new_email" type="email" autocomplete="email" required maxlength="${EMAIL_MAX_LENGTH}"
          value="${state.email}" autofocus />
        <label for="email_password">Current password</label>
        <input id="email_password" name="current_password" type="password" autocomplete="current-password" required
          maxlength="${PASSWORD_MAX_LENGTH}" />
        <div class="row"><button type="submit">Send confirmation link</button></div>
      </form>
      <div class="links"><a href="/account">Cancel</a></div>`,
    status,
  )
}

const REFUSALS: Partial<Record<string, { message: string; status: 400 | 409 | 429 }>> = {
  validation_failed: { message: 'That is already your address.', status: 400 },
  email_taken: { message: 'Another account already uses that address.', status: 409 },
  invalid_credentials: { message: 'Your current password is not right.', status: 400 },
  rate_limited: { message: 'Wait a minute, then try again.', status: 429 },
}

function linkProblemPage(c: Context<AppEnv>, message: string, status: 400 | 409) {
  return sendPage(
    c,
    'Email not changed',
    html`<h1>Your email address did not change</h1>
      <div class="error" role="alert" data-testid="email-change-error">${message}</div>
      <div class="links"><a href="/account">Your account</a></div>`,
    status,
  )
}

const PAGE = { description: 'An HTML page', contentType: 'text/html' }
const ROUTES = [
  {
    method: 'get',
    path: '/account/email',
    summary: 'The email-change form (HTML)',
    responses: { 200: PAGE, 303: { description: 'Not signed in: to /login' } },
  },
  {
    method: 'post',
    path: '/account/email',
    summary: 'Ask to change the email address (CSRF; current password): mails a link to the new address',
    responses: {
      200: PAGE,
      303: { description: 'Not signed in: to /login' },
      400: { ...PAGE, description: 'Bad address, same address or wrong password: the form again' },
      403: { description: 'CSRF check failed' },
      409: { ...PAGE, description: 'Another account uses the address' },
      429: { ...PAGE, description: 'Asked again within a minute, or too many wrong passwords' },
    },
  },
  {
    method: 'get',
    path: '/account/email/confirm',
    summary: 'The page the link in the mail opens: a confirm button (HTML)',
    responses: { 200: PAGE, 400: { ...PAGE, description: 'No usable token' } },
  },
  {
    method: 'post',
    path: '/account/email/confirm',
    summary: 'Confirm an email change with the token from the mail (CSRF)',
    responses: {
      200: PAGE,
      400: { ...PAGE, description: 'Invalid, expired or used link' },
      403: { description: 'CSRF check failed' },
      409: { ...PAGE, description: 'Another account took the address meanwhile' },
    },
  },
] as const
for (const route of ROUTES) {
  documentRoute({ ...route, tags: ['pages'] })
}

/**
 * `/account/email`: change the sign-in address with re-verification. The request needs the current
 * password and mails a single-use link to the new address; following it (a button, since mail
 * scanners open links) changes the address and tells the old one.
 */
export const accountEmailPage = new Hono<AppEnv>()
  .get('/', async (c) => {
    const me = await signedIn(c)
    return me === undefined ? toLogin(c) : renderChangeForm(c, me, { email: '' })
  })
  .post('/', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const typed = typeof form.new_email === 'string' ? form.new_email.slice(0, EMAIL_MAX_LENGTH + 1) : ''
    const password =
      typeof form.current_password === 'string' ? form.current_password.slice(0, PASSWORD_MAX_LENGTH) : ''
    const parsed = v.safeParse(Email, typed)
    if (!parsed.success || password === '') {
      return renderChangeForm(
        c,
        me,
        {
          email: typed.slice(0, EMAIL_MAX_LENGTH),
          error: 'Enter a valid new address and your current password.',
        },
        400,
      )
    }
    try {
      await requestEmailChange(c, me.user, parsed.output, password)
    } catch (error) {
      const refusal = error instanceof ProblemError ? REFUSALS[error.code] : undefined
      if (refusal === undefined) {
        throw error
      }
      return renderChangeForm(c, me, { email: parsed.output, error: refusal.message }, refusal.status)
    }
    return sendPage(
      c,
      'Check your email',
      html`<h1>Check your new inbox</h1>
        <div class="notice" role="status" data-testid="email-change-sent">We sent a link to <strong>${parsed.output}</strong>.
          Your address stays ${me.user.email} until you follow it.</div>
        <div class="links"><a href="/account">Back to your account</a></div>`,
    )
  })
  .get('/confirm', async (c) => {
    const token = c.req.query('token') ?? ''
    if (token === '' || token.length > TOKEN_MAX_LENGTH) {
      return linkProblemPage(c, 'The link is invalid, has expired or was already used.', 400)
    }
    const csrf = await issueCsrfToken(c)
    return sendPage(
      c,
      'Confirm new email',
      html`<h1>Confirm your new email address</h1>
        <p class="lead">One click and you sign in with this address from now on.</p>
        <form method="post" action="/account/email/confirm">
          <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
          <input type="hidden" name="token" value="${token}" />
          <div class="row"><button type="submit">Confirm new address</button></div>
        </form>`,
    )
  })
  .post('/confirm', async (c) => {
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const token = typeof form.token === 'string' && form.token.length <= TOKEN_MAX_LENGTH ? form.token : ''
    const outcome = await confirmEmailChange(c, token)
    if (outcome.kind === 'invalid_token') {
      return linkProblemPage(c, 'The link is invalid, has expired or was already used.', 400)
    }
    if (outcome.kind === 'email_taken') {
      return linkProblemPage(c, 'Another account took that address in the meantime.', 409)
    }
    return sendPage(
      c,
      'Email changed',
      html`<h1>Email address changed</h1>
        <div class="notice" role="status" data-testid="email-changed">You now sign in with <strong>${outcome.email}</strong>.</div>
        <div class="links"><a href="/account">Your account</a></div>`,
    )
  })
