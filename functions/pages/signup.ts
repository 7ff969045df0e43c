import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import * as v from 'valibot'
import { registerAccount, resendVerification } from '../auth/account-actions'
import { signIn } from '../auth/login-edge'
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../auth/password-policy'
import { DISPLAY_NAME_MAX_LENGTH, DisplayName, EMAIL_MAX_LENGTH, Email } from '../auth/schemas'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'
import { safeReturnTo } from './return-to'
import { weakPasswordText } from './words'

interface SignupState {
  email: string
  displayName: string
  returnTo: string
  error?: string
}

type FailureStatus = 400 | 403 | 409 | 429

function formField(form: Record<string, unknown>, name: string): string {
  const value = form[name]
  return typeof value === 'string' ? value : ''
}

async function renderSignup(c: Context<AppEnv>, state: SignupState, status: 200 | FailureStatus = 200) {
  const csrf = await issueCsrfToken(c)
  const brand = c.var.config.brand
  return sendPage(
    c,
    'Create an account',
    html`<h1>Create an account</h1>
      <p class="lead">One account for everything that signs in with ${brand.name}.</p>
      ${state.error === undefined ? '' : html`<div class="error" role="alert">${state.error}</div>`}
      <form method="post" action="/signup" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="return_to" value="${state.returnTo}" />
        <label for="display_name">Name <span class="muted">(optional)</span></label>
        <input id="display_name" name="display_name" type="text" autocomplete="name" maxlength="${DISPLAY_NAME_MAX_LENGTH}"
          value="${state.displayName}" />
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="email" required maxlength="${EMAIL_MAX_LENGTH}"
          value="${state.email}" />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="new-password" required
          minlength="${PASSWORD_MIN_LENGTH}" maxlength="${PASSWORD_MAX_LENGTH}" aria-describedby="password-hint" />
        <p class="muted" id="password-hint">At least ${PASSWORD_MIN_LENGTH} characters. A short sentence is easy to remember.</p>
        <div class="row"><button type="submit">Create account</button></div>
      </form>
      <div class="links">
        <span>Already have an account? <a href="/login?return_to=${encodeURIComponent(state.returnTo)}">Sign in</a></span>
      </div>`,
    status,
  )
}

/** What the person sees once the account exists, one page per state the account can be in. */
function createdPage(c: Context<AppEnv>, email: string, state: 'pending' | 'unverified') {
  if (state === 'pending') {
    return sendPage(
      c,
      'Waiting for approval',
      html`<h1>Thanks, your account is waiting for approval</h1>
        <div class="notice" role="status" data-testid="signup-state">An administrator has to approve new accounts.</div>
        <p class="lead">We will let you sign in as soon as that happens. Meanwhile, confirm your address:
          we sent a link to <strong>${email}</strong>.</p>
        <div class="row"><a href="/login" style="flex:1"><button type="button" class="secondary">Back to sign in</button></a></div>`,
    )
  }
  return sendPage(
    c,
    'Check your email',
    html`<h1>Check your email</h1>
      <div class="notice" role="status" data-testid="signup-state">We sent a link to <strong>${email}</strong>.</div>
      <p class="lead">Open it to confirm your address, then sign in. Nothing there? Look in spam, or <a href="/signup/resend">ask for a new link</a> in a minute.</p>
      <div class="row"><a href="/login" style="flex:1"><button type="button" class="secondary">Back to sign in</button></a></div>`,
  )
}

/** `GET/POST /signup/resend`: a new confirmation link, the HTML face of /auth/verify-email/resend. */
async function renderResend(
  c: Context<AppEnv>,
  email: string,
  error?: string,
  status: 200 | 400 | 403 = 200,
) {
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Confirm your email',
    html`<h1>Get a new confirmation link</h1>
      <p class="lead">Enter the address you signed up with.</p>
      ${error === undefined ? '' : html`<div class="error" role="alert">${error}</div>`}
      <form method="post" action="/signup/resend" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="email" required maxlength="${EMAIL_MAX_LENGTH}"
          value="${email}" />
        <div class="row"><button type="submit">Send a new link</button></div>
      </form>
      <div class="links"><a href="/login">Back to sign in</a></div>`,
    status,
  )
}

documentRoute({
  method: 'get',
  path: '/signup',
  summary: 'The sign-up page (HTML)',
  tags: ['pages'],
  responses: { 200: { description: 'An HTML form', contentType: 'text/html' } },
})
documentRoute({
  method: 'post',
  path: '/signup',
  summary:
    'Submit the sign-up form (CSRF protected): a page for the new account state, or 303 when signed in',
  tags: ['pages'],
  responses: { 303: { description: 'Created and signed in; redirect to a same-origin return_to, else /' } },
})

/**
 * `GET /signup`, `POST /signup`: the HTML face of `POST /auth/register` (same limits, same audit).
 * An account that may sign in straight away is signed in; one that waits for approval or for its
 * address to be confirmed gets a page saying so.
 */
export const signupPage = new Hono<AppEnv>()
  .get('/', (c) =>
    renderSignup(c, {
      email: '',
      displayName: '',
      returnTo: safeReturnTo(c.req.query('return_to'), c.var.config.issuer),
    }),
  )
  .post('/', async (c) => {
    const form = await c.req.parseBody()
    const state: SignupState = {
      email: formField(form, 'email').slice(0, EMAIL_MAX_LENGTH),
      displayName: formField(form, 'display_name').slice(0, DISPLAY_NAME_MAX_LENGTH),
      returnTo: safeReturnTo(formField(form, 'return_to'), c.var.config.issuer),
    }
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return renderSignup(c, { ...state, error: 'This form expired. Please try again.' }, 403)
    }
    const email = v.safeParse(Email, formField(form, 'email'))
    if (!email.success) {
      return renderSignup(c, { ...state, error: 'Enter a valid email address.' }, 400)
    }
    const name = v.safeParse(DisplayName, formField(form, 'display_name'))
    if (!name.success) {
      return renderSignup(c, { ...state, error: 'Use a shorter name without control characters.' }, 400)
    }
    const password = formField(form, 'password')
    if (password.length > PASSWORD_MAX_LENGTH) {
      return renderSignup(c, { ...state, error: `Use at most ${PASSWORD_MAX_LENGTH} characters.` }, 400)
    }
    const config = c.var.config
    try {
      await registerAccount(c, {
        email: email.output,
        password,
        displayName: name.output === null || name.output === '' ? null : name.output,
      })
    } catch (error) {
      if (error instanceof ProblemError) {
        const messages: Partial<Record<string, [string, FailureStatus]>> = {
          weak_password: [weakPasswordText(error.options.errors?.[0]?.message), 400],
          email_taken: ['An account with this email already exists. Sign in, or reset your password.', 409],
          rate_limited: ['Too many sign-ups from your network. Try again later.', 429],
        }
        const known = messages[error.code]
        if (known !== undefined) {
          if (error.options.retryAfterSeconds !== undefined) {
            c.header('retry-after', String(error.options.retryAfterSeconds))
          }
          return renderSignup(c, { ...state, error: known[0] }, known[1])
        }
      }
      throw error
    }
    if (config.requireApproval) {
      return createdPage(c, email.output, 'pending')
    }
    if (config.requireEmailVerification) {
      return createdPage(c, email.output, 'unverified')
    }
    // Nothing to wait for: sign in through the one sign-in path (throttle, audit, session).
    const outcome = await signIn(c, { email: email.output, password, remember: false }, 'form')
    return outcome.kind === 'ok' ? c.redirect(state.returnTo, 303) : c.redirect('/login', 303)
  })
  .get('/resend', (c) => renderResend(c, ''))
  .post('/resend', async (c) => {
    const form = await c.req.parseBody()
    const raw = formField(form, 'email').slice(0, EMAIL_MAX_LENGTH)
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return renderResend(c, raw, 'This form expired. Please try again.', 403)
    }
    const email = v.safeParse(Email, raw)
    if (!email.success) {
      return renderResend(c, raw, 'Enter a valid email address.', 400)
    }
    await resendVerification(c, email.output)
    // The same page whether or not the address has an unverified account.
    return sendPage(
      c,
      'Check your email',
      html`<h1>Check your email</h1>
        <div class="notice" role="status" data-testid="resend-sent">
          If <strong>${email.output}</strong> has an account waiting for confirmation, we sent it a new link.
        </div>
        <div class="links"><a href="/login">Back to sign in</a></div>`,
    )
  })
