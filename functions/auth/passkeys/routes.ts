import { type Context, Hono } from 'hono'
import { listPasskeysStatement } from '../../../db/queries/passkeys'
import type { AppEnv } from '../../env'
import { ProblemError } from '../../errors/problem'
import { documentRoute, type RouteDoc } from '../../openapi/registry'
import { jsonBody } from '../../validation/json-body'
import { liveSession } from '../routes'
import { SessionResponse } from '../schemas'
import { sameOriginOnly } from '../session-cookie'
import { toUserJson } from '../user-view'
import {
  addPasskey,
  addPasskeyProblem,
  passkeySignInProblem,
  passkeysUnavailable,
  removePasskey,
  renamePasskey,
  secondStepWithPasskey,
  signInWithPasskey,
  toPasskeyJson,
} from './edge'
import { startRegistration } from './registration'
import {
  OptionsResponse,
  PasskeyListResponse,
  PasskeyResponse,
  PasskeySignInBody,
  RegisterPasskeyBody,
  RenamePasskeyBody,
  SecondFactorBody,
  SecondFactorOptionsBody,
  toAuthenticationResponse,
  toRegistrationResponse,
} from './schemas'
import { type PasskeySignInOutcome, startPasswordlessSignIn, startSecondFactor } from './sign-in'

const NO_STORE = { 'cache-control': 'no-store' }

const DOCS: RouteDoc[] = [
  {
    method: 'post',
    path: '/auth/passkeys/sign-in/options',
    summary: 'Options for navigator.credentials.get() to sign in with a passkey, no email needed',
    tags: ['passkeys'],
    responses: { 200: { description: 'PublicKeyCredentialRequestOptionsJSON', schema: OptionsResponse } },
  },
  {
    method: 'post',
    path: '/auth/passkeys/sign-in',
    summary: 'Sign in with a passkey (the assertion for the options above); amr ["hwk","user","mfa"]',
    tags: ['passkeys'],
    requestBody: { schema: PasskeySignInBody },
    responses: { 200: { description: 'Signed in; the session cookie is set', schema: SessionResponse } },
  },
  {
    method: 'post',
    path: '/auth/passkeys/second-factor/options',
    summary: "Options for the second step of a two-step sign-in: the pending sign-in's user's passkeys",
    tags: ['passkeys'],
    requestBody: { schema: SecondFactorOptionsBody },
    responses: { 200: { description: 'PublicKeyCredentialRequestOptionsJSON', schema: OptionsResponse } },
  },
  {
    method: 'post',
    path: '/auth/passkeys/second-factor',
    summary:
      'Finish a two-step sign-in with a passkey instead of a TOTP code; amr ["pwd","hwk","user","mfa"]',
    tags: ['passkeys'],
    requestBody: { schema: SecondFactorBody },
    responses: { 200: { description: 'Signed in; the session cookie is set', schema: SessionResponse } },
  },
  {
    method: 'post',
    path: '/auth/passkeys/registration/options',
    summary: 'Options for navigator.credentials.create() to add a passkey (a sign-in within 15 minutes)',
    tags: ['passkeys'],
    security: ['sessionCookie'],
    responses: { 200: { description: 'PublicKeyCredentialCreationOptionsJSON', schema: OptionsResponse } },
  },
  {
    method: 'post',
    path: '/auth/passkeys',
    summary: 'Add a passkey: the attestation for the registration options (a sign-in within 15 minutes)',
    tags: ['passkeys'],
    security: ['sessionCookie'],
    requestBody: { schema: RegisterPasskeyBody },
    responses: { 201: { description: 'The new passkey', schema: PasskeyResponse } },
  },
  {
    method: 'get',
    path: '/auth/passkeys',
    summary: "The signed-in user's passkeys",
    tags: ['passkeys'],
    security: ['sessionCookie'],
    responses: { 200: { description: 'Passkeys, oldest first', schema: PasskeyListResponse } },
  },
  {
    method: 'patch',
    path: '/auth/passkeys/{id}',
    summary: 'Rename a passkey',
    tags: ['passkeys'],
    security: ['sessionCookie'],
    requestBody: { schema: RenamePasskeyBody },
    responses: { 200: { description: 'The renamed passkey', schema: PasskeyResponse } },
  },
  {
    method: 'delete',
    path: '/auth/passkeys/{id}',
    summary: "Remove a passkey (409 when it is the account's last way to sign in)",
    tags: ['passkeys'],
    security: ['sessionCookie'],
    responses: { 204: { description: 'Removed' } },
  },
]
for (const doc of DOCS) {
  documentRoute(doc)
}

function signedInJson(c: Context<AppEnv>, outcome: PasskeySignInOutcome) {
  if (outcome.kind !== 'ok') {
    throw passkeySignInProblem(outcome)
  }
  return c.json(
    {
      user: toUserJson(outcome.user),
      session: {
        expires_at: outcome.session.expiresAt.toISOString(),
        remember: outcome.session.remember,
        created_at: new Date().toISOString(),
      },
    },
    200,
    NO_STORE,
  )
}

/** `/auth/passkeys/*`: WebAuthn ceremonies and the user's passkeys (JSON). Same-origin callers only. */
export const passkeyApi = new Hono<AppEnv>()
  .use(sameOriginOnly())
  .post('/sign-in/options', async (c) => {
    const options = await startPasswordlessSignIn(c.var.config, new Date())
    if (options === undefined) {
      throw passkeysUnavailable()
    }
    return c.json({ options }, 200, NO_STORE)
  })
  .post('/sign-in', jsonBody(PasskeySignInBody), async (c) => {
    const body = c.req.valid('json')
    const outcome = await signInWithPasskey(
      c,
      { response: toAuthenticationResponse(body.credential), remember: body.remember },
      'api',
    )
    return signedInJson(c, outcome)
  })
  .post('/second-factor/options', jsonBody(SecondFactorOptionsBody), async (c) => {
    const options = await startSecondFactor(
      c.var.db.http,
      c.var.config,
      c.req.valid('json').mfa_token,
      new Date(),
    )
    if (options === undefined) {
      throw new ProblemError('invalid_mfa_token', {
        detail: 'The sign-in expired, was finished, or its account has no passkey',
      })
    }
    return c.json({ options }, 200, NO_STORE)
  })
  .post('/second-factor', jsonBody(SecondFactorBody), async (c) => {
    const body = c.req.valid('json')
    const outcome = await secondStepWithPasskey(
      c,
      { mfaToken: body.mfa_token, response: toAuthenticationResponse(body.credential) },
      'api',
    )
    return signedInJson(c, outcome)
  })
  .post('/registration/options', async (c) => {
    const me = await liveSession(c, new Date())
    const started = await startRegistration(c.var.db.http, c.var.config, me.user, new Date())
    if (started.kind === 'unavailable') {
      throw passkeysUnavailable()
    }
    if (started.kind === 'too_many') {
      throw new ProblemError('conflict', { detail: 'Remove a passkey before adding another' })
    }
    return c.json({ options: started.options }, 200, NO_STORE)
  })
  .get('/', async (c) => {
    const me = await liveSession(c, new Date())
    const rows = await listPasskeysStatement(c.var.db.http, me.user.id)
    return c.json({ data: rows.map(toPasskeyJson), next_cursor: null }, 200, NO_STORE)
  })
  .post('/', jsonBody(RegisterPasskeyBody), async (c) => {
    const body = c.req.valid('json')
    const me = await liveSession(c, new Date())
    const added = await addPasskey(c, me, {
      response: toRegistrationResponse(body.credential),
      name: body.name,
    })
    if (added.kind !== 'ok') {
      throw addPasskeyProblem(added)
    }
    return c.json({ passkey: toPasskeyJson(added.passkey) }, 201, NO_STORE)
  })
  .patch('/:id', jsonBody(RenamePasskeyBody), async (c) => {
    const name = c.req.valid('json').name
    const me = await liveSession(c, new Date())
    const id = c.req.param('id')
    if (!(await renamePasskey(c, me.user, id, name, 'api'))) {
      throw new ProblemError('not_found', { detail: 'No such passkey' })
    }
    const row = (await listPasskeysStatement(c.var.db.http, me.user.id)).find((p) => p.id === id)
    if (row === undefined) {
      throw new ProblemError('not_found', { detail: 'No such passkey' })
    }
    return c.json({ passkey: toPasskeyJson(row) }, 200, NO_STORE)
  })
  .delete('/:id', async (c) => {
    const me = await liveSession(c, new Date())
    const result = await removePasskey(c, me.user, c.req.param('id'), 'api')
    if (result === 'not_found') {
      throw new ProblemError('not_found', { detail: 'No such passkey' })
    }
    if (result === 'last_sign_in_method') {
      throw new ProblemError('conflict', {
        detail:
          'This is the last way to sign in to the account: add another passkey or a sign-in provider first',
      })
    }
    return c.body(null, 204, NO_STORE)
  })
