import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import type { UserRow } from '../../db/queries/users'
import { completeEnrolmentLogin, enrolmentSignIn } from '../auth/enrol-login'
import { pendingEnrolment, startTotpEnrolment } from '../auth/totp-enrolment'
import type { AppEnv } from '../env'
import { documentRoute } from '../openapi/registry'
import { renderRecoveryCodes, totpQrBlock } from './account'
import { CSRF_FIELD, issueCsrfToken } from './csrf'
import { sendPage } from './layout'
import { pendingSignInForm } from './pending-sign-in-form'

interface EnrolStep {
  mfaToken: string
  returnTo: string
  setup: { secret: string; uri: string }
  error?: string
}

async function renderEnrolStep(c: Context<AppEnv>, step: EnrolStep, status: 200 | 400 = 200) {
  const csrf = await issueCsrfToken(c)
  const grouped = step.setup.secret.replace(/(.{4})/g, '$1 ').trim()
  return sendPage(
    c,
    'Set up two-factor sign-in',
    html`<h1>Set up two-factor sign-in</h1>
      <p class="lead">${c.var.config.brand.name} asks for a code from an authenticator app at every sign-in.
        Add your account to the app, then enter the code it shows to finish signing in.</p>
      ${step.error === undefined ? '' : html`<div class="error" role="alert">${step.error}</div>`}
      ${totpQrBlock(step.setup.uri)}
      <p><a href="${step.setup.uri}" data-testid="otpauth-uri">Open in an authenticator app on this device</a></p>
      <p>Or type this key: <code class="secret" data-testid="totp-secret">${grouped}</code></p>
      <form method="post" action="/login/enrol" novalidate>
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <input type="hidden" name="return_to" value="${step.returnTo}" />
        <input type="hidden" name="mfa_token" value="${step.mfaToken}" />
        <label for="code">Code from the app</label>
        <input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="6" autofocus />
        <div class="row"><button type="submit">Turn on and continue</button></div>
      </form>
      <div class="links"><a href="/login?return_to=${encodeURIComponent(step.returnTo)}">Start over</a></div>`,
    status,
  )
}

function startOver(c: Context<AppEnv>, returnTo: string, message: string) {
  return sendPage(
    c,
    'Sign in again',
    html`<h1>Sign in again</h1>
      <div class="error" role="alert">${message}</div>
      <div class="links"><a href="/login?return_to=${encodeURIComponent(returnTo)}">Sign in</a></div>`,
    401,
  )
}

/**
 * The page `POST /login` answers when REQUIRE_TWO_FACTOR applies to a user without a factor: a new
 * pending TOTP secret (sealed under MASTER_KEY) as a QR code and text, and the form for its first
 * code. No session exists yet.
 */
export async function startEnrolStep(
  c: Context<AppEnv>,
  user: UserRow,
  mfaToken: string,
  returnTo: string,
): Promise<Response> {
  const setup = await startTotpEnrolment(c, user)
  if (setup === undefined) {
    return startOver(c, returnTo, 'Two-factor sign-in is already set up for this account. Sign in again.')
  }
  return renderEnrolStep(c, { mfaToken, returnTo, setup })
}

documentRoute({
  method: 'post',
  path: '/login/enrol',
  summary:
    'Finish a sign-in that REQUIRE_TWO_FACTOR sent to set up TOTP: the first code (CSRF protected); answers the recovery codes page',
  tags: ['pages'],
  responses: {
    200: { description: 'Signed in: the recovery codes, shown once', contentType: 'text/html' },
    400: { description: 'Wrong code: the setup page again', contentType: 'text/html' },
    401: {
      description: 'The pending sign-in expired, was used, or the form expired',
      contentType: 'text/html',
    },
  },
})

/** `POST /login/enrol`: the first code of a required enrolment finishes the sign-in. */
export const loginEnrolPage = new Hono<AppEnv>().post('/', async (c) => {
  const { field, returnTo, mfaToken, csrfOk } = await pendingSignInForm(c)
  if (!csrfOk) {
    return startOver(c, returnTo, 'This form expired. Please sign in again.')
  }
  const outcome = await completeEnrolmentLogin(c, { mfaToken, code: field('code').slice(0, 32) })
  if (outcome.kind === 'ok') {
    return renderRecoveryCodes(c, 'Two-factor sign-in is on', outcome.recoveryCodes, returnTo)
  }
  const pending = outcome.kind === 'invalid_mfa_code' ? await enrolmentSignIn(c, mfaToken) : undefined
  const setup = pending === undefined ? undefined : await pendingEnrolment(c, pending.user)
  if (setup === undefined) {
    return startOver(c, returnTo, 'That took too long. Please sign in again.')
  }
  return renderEnrolStep(
    c,
    {
      mfaToken,
      returnTo,
      setup,
      error: 'That code is not right. Check the time on your device and try the next one.',
    },
    400,
  )
})
