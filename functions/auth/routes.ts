import { type Context, Hono } from 'hono'
import * as v from 'valibot'
import { endSessionAudited, findLiveSessionWithUser } from '../../db/queries/sessions'
import { updateDisplayNameStatement } from '../../db/queries/users'
import { auditRow, auditStatement } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { authenticate } from '../middleware/authenticate'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { jsonBody } from '../validation/json-body'
import { changePassword, registerAccount, requestPasswordReset, resendVerification } from './account-actions'
import { confirmPasswordReset, verifyEmailToken } from './account-tokens'
import { endUserAccess } from './end-user-access'
import { resetPasswordForm, resetPasswordPage, verifyEmailForm, verifyEmailPage } from './link-pages'
import { loginProblem, mfaProblem, signIn, signInSecondStep } from './login-edge'
import {
  ChangePasswordBody,
  EmailOnlyBody,
  LoginBody,
  LoginMfaBody,
  MfaRequiredResponse,
  RegisterBody,
  ResetConfirmBody,
  SessionResponse,
  UpdateMeBody,
  UserResponse,
  VerifyEmailBody,
} from './schemas'
import { clearSessionCookie, readSessionToken, sameOriginOnly, slideSession } from './session-cookie'
import { toUserJson } from './user-view'

const NO_STORE = { 'cache-control': 'no-store' }

const sessionOnly = authenticate({ accept: ['session'] })

function principalUserId(c: Context<AppEnv>): string {
  const principal = c.var.principal
  if (principal.kind !== 'user') {
    throw new ProblemError('forbidden', { detail: 'This endpoint acts on a signed-in user' })
  }
  return principal.userId
}

function sessionJson(session: { expiresAt: Date; remember: boolean; createdAt: Date }) {
  return {
    expires_at: session.expiresAt.toISOString(),
    remember: session.remember,
    created_at: session.createdAt.toISOString(),
  }
}

const POST_DOCS: {
  path: string
  summary: string
  body?: v.GenericSchema
  ok: number
  response?: v.GenericSchema
}[] = [
  {
    path: '/auth/register',
    summary: 'Create an account',
    body: RegisterBody,
    ok: 201,
    response: UserResponse,
  },
  {
    path: '/auth/login',
    summary: 'Sign in with email and password (a TOTP account answers mfa_required and an mfa_token)',
    body: LoginBody,
    ok: 200,
    response: v.union([SessionResponse, MfaRequiredResponse]),
  },
  {
    path: '/auth/login/mfa',
    summary: 'Finish a two-step sign-in with a TOTP or recovery code',
    body: LoginMfaBody,
    ok: 200,
    response: SessionResponse,
  },
  { path: '/auth/logout', summary: 'End this session', ok: 204 },
  { path: '/auth/logout-all', summary: 'End every session and refresh token of the user', ok: 204 },
  { path: '/auth/change-password', summary: 'Change the password', body: ChangePasswordBody, ok: 204 },
  {
    path: '/auth/verify-email',
    summary: 'Confirm an email address with its token',
    body: VerifyEmailBody,
    ok: 200,
    response: UserResponse,
  },
  {
    path: '/auth/verify-email/resend',
    summary: 'Send a new verification link',
    body: v.object({ email: v.optional(v.string()) }),
    ok: 202,
  },
  {
    path: '/auth/password-reset',
    summary: 'Send a password-reset link (always 202)',
    body: EmailOnlyBody,
    ok: 202,
  },
  {
    path: '/auth/password-reset/confirm',
    summary: 'Set a new password with a reset token',
    body: ResetConfirmBody,
    ok: 200,
    response: UserResponse,
  },
]
for (const doc of POST_DOCS) {
  documentRoute({
    method: 'post',
    path: doc.path,
    summary: doc.summary,
    tags: ['accounts'],
    ...(doc.body === undefined ? {} : { requestBody: { schema: doc.body } }),
    responses: {
      [doc.ok]: { description: doc.summary, ...(doc.response === undefined ? {} : { schema: doc.response }) },
    },
  })
}
documentRoute({
  method: 'get',
  path: '/auth/session',
  summary: 'The signed-in user and session',
  tags: ['accounts'],
  security: ['sessionCookie'],
  responses: { 200: { description: 'Signed in', schema: SessionResponse } },
})
documentRoute({
  method: 'patch',
  path: '/auth/me',
  summary: 'Update the display name',
  tags: ['accounts'],
  security: ['sessionCookie'],
  requestBody: { schema: UpdateMeBody },
  responses: { 200: { description: 'The updated user', schema: UserResponse } },
})

/**
 * The caller's live session with its full user row, in one round trip; 401 without one, 403 for
 * a suspended or pending account.
 */
export async function liveSession(c: Context<AppEnv>, now: Date) {
  const token = readSessionToken(c)
  const found =
    token === undefined
      ? undefined
      : await findLiveSessionWithUser(c.var.db.http, await sha256Hex(token), now)
  if (found === undefined) {
    throw new ProblemError('unauthenticated', { detail: 'No live session; sign in' })
  }
  if (found.user.status === 'suspended') {
    throw new ProblemError('account_suspended')
  }
  if (found.user.status === 'pending') {
    throw new ProblemError('account_pending')
  }
  return found
}

const OptionalEmailBody = v.object({ email: v.optional(EmailOnlyBody.entries.email) })

/** `/auth/*`: the account API (JSON). Cookie-authenticated writes refuse cross-site callers. */
export const auth = new Hono<AppEnv>()
  .use(sameOriginOnly())
  .post('/register', jsonBody(RegisterBody), async (c) => {
    const body = c.req.valid('json')
    const user = await registerAccount(c, {
      email: body.email,
      password: body.password,
      displayName: body.display_name ?? null,
    })
    return c.json({ user: toUserJson(user) }, 201, NO_STORE)
  })
  .post('/login/mfa', jsonBody(LoginMfaBody), async (c) => {
    const body = c.req.valid('json')
    const outcome = await signInSecondStep(c, { mfaToken: body.mfa_token, code: body.code })
    if (outcome.kind !== 'ok') {
      throw mfaProblem(outcome)
    }
    return c.json(
      {
        user: toUserJson(outcome.user),
        session: sessionJson({
          expiresAt: outcome.session.expiresAt,
          remember: outcome.session.remember,
          createdAt: new Date(),
        }),
      },
      200,
      NO_STORE,
    )
  })
  .post('/login', jsonBody(LoginBody), async (c) => {
    const outcome = await signIn(c, c.req.valid('json'), 'api')
    if (outcome.kind === 'mfa_required') {
      return c.json(
        { mfa_required: true, mfa_token: outcome.mfaToken, expires_at: outcome.expiresAt.toISOString() },
        200,
        NO_STORE,
      )
    }
    if (outcome.kind !== 'ok') {
      throw loginProblem(outcome)
    }
    return c.json(
      {
        user: toUserJson(outcome.user),
        session: sessionJson({
          expiresAt: outcome.session.expiresAt,
          remember: outcome.session.remember,
          createdAt: new Date(),
        }),
      },
      200,
      NO_STORE,
    )
  })
  .post('/logout', async (c) => {
    const token = readSessionToken(c)
    if (token !== undefined) {
      await endSessionAudited(c.var.db.http, await sha256Hex(token), {
        ip: clientIp(c),
        metadata: { all: false },
      })
    }
    clearSessionCookie(c)
    return c.body(null, 204, NO_STORE)
  })
  .post('/logout-all', sessionOnly, async (c) => {
    const userId = principalUserId(c)
    await endUserAccess(c.var.db.http, userId, new Date(), {
      row: auditRow(
        { type: 'user_logout', actor: `user:${userId}`, userId, metadata: { all: true } },
        clientIp(c),
      ),
      sessionsKey: 'sessions',
      refreshTokensKey: 'refresh_tokens',
    })
    clearSessionCookie(c)
    return c.body(null, 204, NO_STORE)
  })
  .get('/session', async (c) => {
    const now = new Date()
    const found = await liveSession(c, now)
    slideSession(c, found.session, now)
    return c.json({ user: toUserJson(found.user), session: sessionJson(found.session) }, 200, NO_STORE)
  })
  .patch('/me', sessionOnly, jsonBody(UpdateMeBody), async (c) => {
    const userId = principalUserId(c)
    const displayName = c.req.valid('json').display_name
    const db = c.var.db.http
    const [updated] = await db.batch([
      updateDisplayNameStatement(db, userId, displayName === '' ? null : displayName, new Date()),
      auditStatement(db, clientIp(c), {
        type: 'user_updated',
        actor: `user:${userId}`,
        userId,
        metadata: { fields: ['display_name'] },
      }),
    ])
    const user = updated[0]
    if (user === undefined) {
      throw new ProblemError('unauthenticated', { detail: 'The account no longer exists' })
    }
    return c.json({ user: toUserJson(user) }, 200, NO_STORE)
  })
  .post('/change-password', jsonBody(ChangePasswordBody), async (c) => {
    const body = c.req.valid('json')
    const current = await liveSession(c, new Date())
    await changePassword(c, current, body.current_password, body.new_password)
    return c.body(null, 204, NO_STORE)
  })
  .post('/verify-email', verifyEmailForm(), jsonBody(VerifyEmailBody), async (c) => {
    const user = await verifyEmailToken(c, c.req.valid('json').token)
    if (user === undefined) {
      throw new ProblemError('invalid_token', {
        detail: 'The verification link is invalid, expired or already used',
      })
    }
    return c.json({ user: toUserJson(user) }, 200, NO_STORE)
  })
  .post('/verify-email/resend', jsonBody(OptionalEmailBody), async (c) => {
    let email = c.req.valid('json').email
    if (email === undefined) {
      const token = readSessionToken(c)
      const found =
        token === undefined
          ? undefined
          : await findLiveSessionWithUser(c.var.db.http, await sha256Hex(token), new Date())
      if (found === undefined) {
        throw new ProblemError('validation_failed', {
          detail: 'email: is required unless signed in',
          errors: [{ field: 'email', message: 'is required unless signed in' }],
        })
      }
      email = found.user.email
    }
    await resendVerification(c, email)
    // 202 whatever happened: the answer never tells whether the address has an account.
    return c.body(null, 202, NO_STORE)
  })
  .post('/password-reset', jsonBody(EmailOnlyBody), async (c) => {
    await requestPasswordReset(c, c.req.valid('json').email)
    return c.body(null, 202, NO_STORE)
  })
  .post('/password-reset/confirm', resetPasswordForm(), jsonBody(ResetConfirmBody), async (c) => {
    const body = c.req.valid('json')
    const user = await confirmPasswordReset(c, body.token, body.password)
    clearSessionCookie(c)
    return c.json({ user: toUserJson(user) }, 200, NO_STORE)
  })
  .get('/verify-email', verifyEmailPage)
  .get('/password-reset/confirm', resetPasswordPage)
