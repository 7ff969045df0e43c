import { type Context, Hono } from 'hono'
import { getCookie } from 'hono/cookie'
import { html } from 'hono/html'
import * as v from 'valibot'
import { decideDeviceCode, findPendingDeviceCode } from '../../db/queries/oauth-grants'
import { findLiveSession, type LiveSession } from '../../db/queries/sessions'
import { recordAudit } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { SESSION_COOKIE } from '../middleware/authenticate'
import { normalizeUserCode } from '../oauth/device-authorization'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'

async function session(c: Context<AppEnv>): Promise<LiveSession | undefined> {
  const cookie = getCookie(c, SESSION_COOKIE)
  if (cookie === undefined || cookie.length === 0 || cookie.length > 128) {
    return undefined
  }
  const found = await findLiveSession(c.var.db.http, await sha256Hex(cookie), new Date())
  return found?.status === 'active' ? found : undefined
}

function loginRedirect(c: Context<AppEnv>, userCode: string | undefined): Response {
  const back = userCode === undefined ? '/device' : `/device?user_code=${encodeURIComponent(userCode)}`
  return c.body(null, 302, {
    location: `/login?return_to=${encodeURIComponent(back)}`,
    'cache-control': 'no-store',
  })
}

function devicePage(
  c: Context<AppEnv>,
  options: { userCode: string; client?: { name: string; scope: string }; error?: string },
  status: 200 | 400 = 200,
): Promise<Response> {
  const csrf = issueCsrfToken(c)
  return sendPage(
    c,
    'Connect a device',
    html`<h1>Connect a device</h1>
      <p class="lead">Enter the code shown on your device.</p>
      ${options.error === undefined ? '' : html`<div class="error">${options.error}</div>`}
      ${
        options.client === undefined
          ? ''
          : html`<p><strong>${options.client.name}</strong> asks for: ${options.client.scope || 'basic access'}</p>`
      }
      <form method="post" action="/device">
        <label for="user_code">Code</label>
        <input type="text" id="user_code" name="user_code" value="${options.userCode}" autocomplete="off" autocapitalize="characters" required />
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <div class="row">
          <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
          <button type="submit" name="decision" value="approve">Approve</button>
        </div>
      </form>`,
    status,
  )
}

/** GET/POST /device (RFC 8628 §3.3): a signed-in user enters the code and approves or denies. */
export const devicePages = new Hono<AppEnv>()
  .get('/', async (c) => {
    const userCode = c.req.query('user_code')?.slice(0, 32)
    const user = await session(c)
    if (user === undefined) {
      return loginRedirect(c, userCode)
    }
    const pending =
      userCode === undefined
        ? undefined
        : await findPendingDeviceCode(c.var.db.http, await sha256Hex(normalizeUserCode(userCode)), new Date())
    return devicePage(c, {
      userCode: userCode ?? '',
      ...(pending === undefined
        ? {}
        : { client: { name: pending.client_name ?? pending.client_id, scope: pending.scope } }),
    })
  })
  .post('/', async (c) => {
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const userCode = typeof form.user_code === 'string' ? form.user_code.slice(0, 32) : ''
    const decision = form.decision
    if (decision !== 'approve' && decision !== 'deny') {
      throw new ProblemError('validation_failed', {
        detail: 'decision: must be approve or deny',
        errors: [{ field: 'decision', message: 'must be approve or deny' }],
      })
    }
    const user = await session(c)
    if (user === undefined) {
      return loginRedirect(c, userCode)
    }
    const decided = await decideDeviceCode(
      c.var.db.http,
      await sha256Hex(normalizeUserCode(userCode)),
      user.userId,
      decision === 'approve',
      new Date(),
    )
    if (decided === undefined) {
      return devicePage(c, { userCode, error: 'That code is not valid or has expired.' }, 400)
    }
    recordAudit(c, {
      type: decision === 'approve' ? 'device_code_approved' : 'device_code_denied',
      actor: `user:${user.userId}`,
      userId: user.userId,
      tenantId: user.tenantId,
      metadata: { device_code_id: decided.id },
    })
    return sendPage(
      c,
      decision === 'approve' ? 'Device connected' : 'Request denied',
      html`<h1>${decision === 'approve' ? 'Device connected' : 'Request denied'}</h1>
        <p class="lead">You can return to your device.</p>`,
    )
  })

documentRoute({
  method: 'get',
  path: '/device',
  summary: 'Device verification page',
  tags: ['pages'],
  security: ['sessionCookie'],
  responses: { 200: { description: 'Form', contentType: 'text/html' } },
})
documentRoute({
  method: 'post',
  path: '/device',
  summary: 'Approve or deny a device',
  tags: ['pages'],
  security: ['sessionCookie'],
  requestBody: {
    schema: v.object({
      user_code: v.string(),
      csrf_token: v.string(),
      decision: v.picklist(['approve', 'deny']),
    }),
    contentTypes: ['application/x-www-form-urlencoded'],
  },
  responses: { 200: { description: 'Result page', contentType: 'text/html' } },
})
