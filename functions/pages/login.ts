import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import { loginProblem, signIn, signInSecondStep } from '../auth/login-edge'
import { PASSWORD_MAX_LENGTH } from '../auth/password-policy'
import { EMAIL_MAX_LENGTH, normalizeEmail } from '../auth/schemas'
import type { AppEnv } from '../env'
import { loginTenant, providerButtons } from '../federation/login-buttons'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'
import { loginEnrolPage, startEnrolStep } from './login-enrol'
import { passkeySecondStepBlock, passkeySignInBlock } from './passkey-blocks'
import { pendingSignInForm } from './pending-sign-in-form'
import { safeReturnTo } from './return-to'

type FailureStatus = 400 | 401 | 403 | 429

interface LoginFormState {
  email: string
  returnTo: string
  remember: boolean
  error?: string
  /** The account waits for its address to be confirmed: offer a new link. */
  offerResend?: boolean
}

/**
 * The sign-in page again, empty, for a second step that cannot go on: its form expired (403)
 * or the pending sign-in did (401).
 */
export function signInAgain(c: Context<AppEnv>, returnTo: string, why: 'form_expired' | 'too_slow') {
  return why === 'form_expired'
    ? renderLogin(
        c,
        { email: '', remember: false, returnTo, error: 'This form expired. Please sign in again.' },
        403,
      )
    : renderLogin(
        c,
        { email: '', remember: false, returnTo, error: 'That took too long. Please sign in again.' },
        401,
      )
}

export async function renderLogin(
  c: Context<AppEnv>,
  state: LoginFormState,
  status: 200 | FailureStatus = 200,
) {
  const buttons = await providerButtons(c, state.returnTo)
  const csrf = await issueCsrfToken(c)
  if (!c.var.config.federation.passwordLogin) {
    // PASSWORD_LOGIN=off: the providers (and passkeys, which are no password) are the only way in.
    const passkey = passkeySignInBlock(c, { csrf, returnTo: state.returnTo })
    return sendPage(
      c,
      'Sign in',
      html`<h1>Sign in</h1>
        <p class="lead">Use one of these to continue to ${c.var.config.brand.name}.</p>
        ${state.error === undefined ? '' : html`<div class="error" role="alert">${state.error}</div>`}
        ${
          buttons === '' && passkey === ''
            ? html`<div class="error" role="alert">No way to sign in is enabled.</div>`
            : html`${passkey}${buttons}`
        }`,
      status,
    )
  }
  const tenant = loginTenant(c)
  return sendPage(
    c,
    'Sign in',
    html`<h1>Sign in</h1>
      <p class="lead">Use your ${c.var.config.brand.name} account to continue.</p>
      ${state.error === undefined ? '' : html`<div class="error" role="alert">${state.error}</div>`}
      ${state.offerResend === true ? html`<p><a href="/signup/resend">Send me a new confirmation link</a></p>` : ''}
      <form method="post" action="/login${tenant === undefined ? '' : `?tenant=${tenant}`}" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="return_to" value="${state.returnTo}" />
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required maxlength="${EMAIL_MAX_LENGTH}"
          value="${state.email}" ${state.email === '' ? 'autofocus' : ''} />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required
          maxlength="${PASSWORD_MAX_LENGTH}" ${state.email === '' ? '' : 'autofocus'} />
        <label class="check"><input type="checkbox" name="remember" value="1" ${state.remember ? 'checked' : ''} /> Keep me signed in</label>
        <div class="row"><button type="submit">Sign in</button></div>
      </form>
      ${passkeySignInBlock(c, { csrf, returnTo: state.returnTo })}
      ${buttons}
      <div class="links">
        <a href="/forgot-password">Forgot your password?</a>
        <a href="/signup?return_to=${encodeURIComponent(state.returnTo)}">Create an account</a>
      </div>`,
    status,
  )
}

interface SecondStepState {
  mfaToken: string
  returnTo: string
  error?: string
}

/** The second page of a two-step sign-in: the pending sign-in's token rides a hidden field. */
export async function renderSecondStep(
  c: Context<AppEnv>,
  state: SecondStepState,
  status: 200 | FailureStatus = 200,
) {
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Two-factor code',
    html`<h1>Enter your code</h1>
      <p class="lead">Open your authenticator app and enter the 6-digit code for ${c.var.config.brand.name},
        or one of your recovery codes.</p>
      ${state.error === undefined ? '' : html`<div class="error" role="alert">${state.error}</div>`}
      <form method="post" action="/login/mfa" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="return_to" value="${state.returnTo}" />
        <input type="hidden" name="mfa_token" value="${state.mfaToken}" />
        <label for="code">Code</label>
        <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required
          maxlength="32" autofocus />
        <div class="row"><button type="submit">Continue</button></div>
      </form>
      ${passkeySecondStepBlock(c, { csrf, returnTo: state.returnTo, mfaToken: state.mfaToken })}
      <div class="links"><a href="/login?return_to=${encodeURIComponent(state.returnTo)}">Start over</a></div>`,
    status,
  )
}

documentRoute({
  method: 'post',
  path: '/login/mfa',
  summary: 'Submit the two-factor code of a two-step sign-in (CSRF protected); 303 to return_to on success',
  tags: ['pages'],
  responses: { 303: { description: 'Signed in; redirect to a same-origin return_to, else /' } },
})
documentRoute({
  method: 'get',
  path: '/login',
  summary: 'The sign-in page (HTML)',
  tags: ['pages'],
  responses: { 200: { description: 'An HTML form', contentType: 'text/html' } },
})
documentRoute({
  method: 'post',
  path: '/login',
  summary: 'Submit the sign-in form (CSRF protected); 303 to return_to on success',
  tags: ['pages'],
  responses: { 303: { description: 'Signed in; redirect to a same-origin return_to, else /' } },
})

/** `GET /login` and `POST /login`: the HTML sign-in form the authorize flow sends people to. */
export const loginPage = new Hono<AppEnv>()
  .route('/enrol', loginEnrolPage)
  .get('/', (c) =>
    renderLogin(c, {
      email: '',
      remember: false,
      returnTo: safeReturnTo(c.req.query('return_to'), c.var.config.issuer),
    }),
  )
  .post('/mfa', async (c) => {
    const { field, returnTo, mfaToken, csrfOk } = await pendingSignInForm(c)
    if (!csrfOk) {
      return signInAgain(c, returnTo, 'form_expired')
    }
    const code = field('code').trim()
    if (code === '' || code.length > 32) {
      return renderSecondStep(c, { mfaToken, returnTo, error: 'Enter the code from your app.' }, 400)
    }
    const outcome = await signInSecondStep(c, { mfaToken, code })
    if (outcome.kind === 'ok') {
      return c.redirect(returnTo, 303)
    }
    if (outcome.kind === 'invalid_mfa_token') {
      return signInAgain(c, returnTo, 'too_slow')
    }
    if (outcome.kind === 'throttled') {
      c.header('retry-after', String(outcome.retryAfterSeconds))
    }
    const error =
      outcome.kind === 'throttled'
        ? 'Too many failed attempts. Wait a few minutes, then try again.'
        : 'That code is not right, or it was already used.'
    return renderSecondStep(c, { mfaToken, returnTo, error }, outcome.kind === 'throttled' ? 429 : 401)
  })
  .post('/', async (c) => {
    const form = await c.req.parseBody()
    const field = (name: string): string => {
      const value = form[name]
      return typeof value === 'string' ? value : ''
    }
    const state: LoginFormState = {
      email: normalizeEmail(field('email')).slice(0, EMAIL_MAX_LENGTH),
      returnTo: safeReturnTo(field('return_to'), c.var.config.issuer),
      remember: field('remember') !== '',
    }
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return renderLogin(c, { ...state, error: 'This form expired. Please sign in again.' }, 403)
    }
    const email = normalizeEmail(field('email'))
    const password = field('password')
    if (
      email === '' ||
      password === '' ||
      email.length > EMAIL_MAX_LENGTH ||
      password.length > PASSWORD_MAX_LENGTH
    ) {
      return renderLogin(c, { ...state, error: 'Enter your email and password.' }, 400)
    }
    const outcome = await signIn(c, { email, password, remember: state.remember }, 'form')
    if (outcome.kind === 'ok') {
      return c.redirect(state.returnTo, 303)
    }
    if (outcome.kind === 'mfa_required') {
      return renderSecondStep(c, { mfaToken: outcome.mfaToken, returnTo: state.returnTo })
    }
    if (outcome.kind === 'mfa_enrolment_required') {
      return startEnrolStep(c, outcome.user, outcome.mfaToken, state.returnTo)
    }
    const problem = loginProblem(outcome)
    if (problem.options.retryAfterSeconds !== undefined) {
      c.header('retry-after', String(problem.options.retryAfterSeconds))
    }
    const messages: Record<typeof outcome.kind, string> = {
      invalid_credentials: 'The email or password is incorrect.',
      throttled: 'Too many failed attempts. Wait a few minutes, then try again.',
      account_pending: 'Your account is waiting for approval by an administrator.',
      account_suspended: 'This account is suspended.',
      email_unverified: 'Confirm your email address first: follow the link we sent you.',
    }
    return renderLogin(
      c,
      { ...state, error: messages[outcome.kind], offerResend: outcome.kind === 'email_unverified' },
      problem.status as FailureStatus,
    )
  })
