import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import {
  addPasskey,
  removePasskey,
  renamePasskey,
  secondStepWithPasskey,
  signInWithPasskey,
} from '../auth/passkeys/edge'
import {
  AssertionJson,
  AttestationJson,
  PasskeyName,
  parseCredentialField,
  toAuthenticationResponse,
  toRegistrationResponse,
} from '../auth/passkeys/schemas'
import type { PasskeySignInOutcome } from '../auth/passkeys/sign-in'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { documentRoute } from '../openapi/registry'
import { signedInForm } from './account-session'
import { CSRF_FIELD, verifyCsrf } from './csrf'
import { renderLogin, renderSecondStep, signInAgain } from './login'
import { PASSKEY_MESSAGES, PASSKEY_SCRIPT_PATH } from './passkey-blocks'
import { PASSKEYS_SCRIPT } from './passkeys-script'
import { safeReturnTo } from './return-to'

type Form = Awaited<ReturnType<Context<AppEnv>['req']['parseBody']>>

function field(form: Form, name: string): string {
  const value = form[name]
  return typeof value === 'string' ? value : ''
}

/** What a refused passkey sign-in says on the page, and its status. */
function refusal(c: Context<AppEnv>, outcome: Exclude<PasskeySignInOutcome, { kind: 'ok' }>) {
  if (outcome.kind === 'throttled') {
    c.header('retry-after', String(outcome.retryAfterSeconds))
    return { error: PASSKEY_MESSAGES.throttled, status: 429 as const }
  }
  if (
    outcome.kind === 'account_pending' ||
    outcome.kind === 'account_suspended' ||
    outcome.kind === 'email_unverified'
  ) {
    return { error: PASSKEY_MESSAGES.account, status: 403 as const }
  }
  return { error: PASSKEY_MESSAGES.failed, status: 401 as const }
}

function credentialOrUndefined<S extends typeof AssertionJson | typeof AttestationJson>(
  schema: S,
  text: unknown,
) {
  try {
    return parseCredentialField(schema, text)
  } catch (error) {
    if (error instanceof ProblemError) {
      return undefined
    }
    throw error
  }
}

/** Back to the account page's passkey section, saying what happened (post/redirect/get). */
function toAccount(c: Context<AppEnv>, notice: string): Response {
  return c.redirect(`/account?passkey=${notice}#passkeys`, 303)
}

const FORM_DOCS = [
  [
    '/login/passkey',
    'Sign in with a passkey (the page script posts the assertion; CSRF protected); 303 to return_to',
  ],
  ['/login/mfa/passkey', 'Finish a two-step sign-in with a passkey (CSRF protected); 303 to return_to'],
  ['/account/passkeys', 'Add a passkey from the account page (CSRF protected); 303 back to /account'],
  ['/account/passkeys/{id}/rename', 'Rename a passkey (CSRF protected); 303 back to /account'],
  ['/account/passkeys/{id}/remove', 'Remove a passkey (CSRF protected); 303 back to /account'],
] as const
for (const [path, summary] of FORM_DOCS) {
  documentRoute({
    method: 'post',
    path,
    summary,
    tags: ['pages'],
    responses: { 303: { description: summary } },
  })
}
documentRoute({
  method: 'get',
  path: PASSKEY_SCRIPT_PATH,
  summary: 'The pages’ passkey script (WebAuthn ceremonies in the browser)',
  tags: ['pages'],
  responses: { 200: { description: 'JavaScript', contentType: 'text/javascript' } },
})

/** The HTML side of passkeys: the sign-in and account forms /passkeys.js submits, and the script. */
export const passkeyPages = new Hono<AppEnv>()
  .get(PASSKEY_SCRIPT_PATH, (c) =>
    c.body(PASSKEYS_SCRIPT, 200, {
      'content-type': 'text/javascript; charset=utf-8',
      'cache-control': 'public, max-age=300',
      'x-content-type-options': 'nosniff',
    }),
  )
  .post('/login/passkey', async (c) => {
    const form = await c.req.parseBody()
    const state = {
      email: '',
      remember: false,
      returnTo: safeReturnTo(field(form, 'return_to'), c.var.config.issuer),
    }
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return renderLogin(c, { ...state, error: 'This form expired. Please sign in again.' }, 403)
    }
    const credential = credentialOrUndefined(AssertionJson, form.credential)
    if (credential === undefined) {
      return renderLogin(c, { ...state, error: PASSKEY_MESSAGES.failed }, 400)
    }
    const outcome = await signInWithPasskey(
      c,
      { response: toAuthenticationResponse(credential), remember: field(form, 'remember') !== '' },
      'form',
    )
    if (outcome.kind === 'ok') {
      return c.redirect(state.returnTo, 303)
    }
    const { error, status } = refusal(c, outcome)
    return renderLogin(c, { ...state, error }, status)
  })
  .post('/login/mfa/passkey', async (c) => {
    const form = await c.req.parseBody()
    const returnTo = safeReturnTo(field(form, 'return_to'), c.var.config.issuer)
    const mfaToken = field(form, 'mfa_token').slice(0, 128)
    try {
      await verifyCsrf(c, form[CSRF_FIELD])
    } catch {
      return signInAgain(c, returnTo, 'form_expired')
    }
    const credential = credentialOrUndefined(AssertionJson, form.credential)
    if (credential === undefined) {
      return renderSecondStep(c, { mfaToken, returnTo, error: PASSKEY_MESSAGES.failed }, 400)
    }
    const outcome = await secondStepWithPasskey(
      c,
      { mfaToken, response: toAuthenticationResponse(credential) },
      'form',
    )
    if (outcome.kind === 'ok') {
      return c.redirect(returnTo, 303)
    }
    if (outcome.kind === 'invalid_mfa_token') {
      return signInAgain(c, returnTo, 'too_slow')
    }
    const { error, status } = refusal(c, outcome)
    return renderSecondStep(c, { mfaToken, returnTo, error }, status)
  })
  .post('/account/passkeys', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const { me, form } = posted
    const credential = credentialOrUndefined(AttestationJson, form.credential)
    const name = field(form, 'name').trim()
    const parsedName = name === '' ? undefined : v.safeParse(PasskeyName, name)
    if (parsedName !== undefined && !parsedName.success) {
      return toAccount(c, 'name')
    }
    if (credential === undefined) {
      return toAccount(c, 'failed')
    }
    const added = await addPasskey(c, me, {
      response: toRegistrationResponse(credential),
      name: parsedName?.output,
    })
    const notices: Record<typeof added.kind, string> = {
      ok: 'added',
      stale_session: 'stale',
      unavailable: 'failed',
      invalid_response: 'failed',
      already_registered: 'exists',
      too_many: 'too_many',
    }
    return toAccount(c, notices[added.kind])
  })
  .post('/account/passkeys/:id/rename', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const parsed = v.safeParse(PasskeyName, field(posted.form, 'name'))
    if (!parsed.success) {
      return toAccount(c, 'name')
    }
    const renamed = await renamePasskey(c, posted.me.user, c.req.param('id'), parsed.output, 'account')
    return toAccount(c, renamed ? 'renamed' : 'missing')
  })
  .post('/account/passkeys/:id/remove', async (c) => {
    const posted = await signedInForm(c)
    if (posted instanceof Response) {
      return posted
    }
    const result = await removePasskey(c, posted.me.user, c.req.param('id'), 'account')
    return toAccount(
      c,
      result === 'removed' ? 'removed' : result === 'last_sign_in_method' ? 'last' : 'missing',
    )
  })
