import { type Context, Hono } from 'hono'
import { getCookie } from 'hono/cookie'
import { html } from 'hono/html'
import * as v from 'valibot'
import { decideDeviceCode, findPendingDeviceCode } from '../../db/queries/oauth-grants'
import { findLiveSession, type LiveSession } from '../../db/queries/sessions'
import {
  type AttemptClaim,
  claimAttempts,
  releaseAttemptsStatement,
  retryAfterSeconds,
} from '../../db/queries/throttle'
import { meetsTwoFactorPolicy } from '../auth/acr'
import { sessionCookieName } from '../auth/session-cookie'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { normalizeUserCode } from '../oauth/device-authorization'
import { documentRoute } from '../openapi/registry'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from './csrf'
import { sendPage } from './layout'
import { scopeList } from './words'

async function session(c: Context<AppEnv>): Promise<LiveSession | undefined> {
  const cookie = getCookie(c, sessionCookieName(c.var.config))
  if (cookie === undefined || cookie.length === 0 || cookie.length > 128) {
    return undefined
  }
  const found = await findLiveSession(c.var.db.http, await sha256Hex(cookie), new Date())
  return found?.status === 'active' && meetsTwoFactorPolicy(c.var.config, found.amr) ? found : undefined
}

function loginRedirect(c: Context<AppEnv>, userCode: string | undefined): Response {
  const back = userCode === undefined ? '/device' : `/device?user_code=${encodeURIComponent(userCode)}`
  return c.body(null, 302, {
    location: `/login?return_to=${encodeURIComponent(back)}`,
    'cache-control': 'no-store',
  })
}

interface DevicePageOptions {
  userCode: string
  /** Set once a throttled POST found the code live: the request is shown with Approve / Deny. */
  client?: { name: string; scope: string }
  error?: string
}

async function devicePage(
  c: Context<AppEnv>,
  options: DevicePageOptions,
  status: 200 | 400 | 429 = 200,
): Promise<Response> {
  const csrf = await issueCsrfToken(c)
  const client = options.client
  return sendPage(
    c,
    'Connect a device',
    html`<h1>Connect a device</h1>
      <p class="lead">Enter the code shown on your device.</p>
      ${options.error === undefined ? '' : html`<div class="error">${options.error}</div>`}
      ${
        client === undefined
          ? ''
          : html`<p><strong>${client.name}</strong> wants to:</p>
              <ul class="scopes" data-testid="device-scopes">
                ${scopeList(client.scope).map((line) => html`<li>${line}</li>`)}
              </ul>`
      }
      <form method="post" action="/device">
        <label for="user_code">Code</label>
        <input type="text" id="user_code" name="user_code" value="${options.userCode}" autocomplete="off" autocapitalize="characters" required />
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <div class="row">
          ${
            client === undefined
              ? html`<button type="submit">Continue</button>`
              : html`<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
                <button type="submit" name="decision" value="approve">Approve</button>`
          }
        </div>
      </form>`,
    status,
  )
}

/**
 * RFC 8628 §5.1: user codes are short enough to guess, so every code entered is an attempt,
 * claimed per user (all of their sessions) and per address in one upsert before the code is
 * looked up; over DEVICE_MAX_ATTEMPTS_PER_USER / _PER_IP the page answers 429 and looks nothing
 * up. A code that turns out live gives its claims back (only wrong codes use up the allowance).
 * The claims, or a refusal page.
 */
async function claimCodeEntry(
  c: Context<AppEnv>,
  user: LiveSession,
  userCode: string,
  now: Date,
): Promise<AttemptClaim[] | Response> {
  const config = c.var.config
  const ip = clientIp(c)
  const subjects = [`device-user:${user.userId}`, ...(ip === null ? [] : [`device-ip:${ip}`])]
  const claims = await claimAttempts(c.var.db.http, subjects, now, config.deviceAttemptWindowSeconds)
  const blocked = claims.filter(
    (claim) =>
      claim.count >
      (claim.subject.startsWith('device-ip:')
        ? config.deviceMaxAttemptsPerIp
        : config.deviceMaxAttemptsPerUser),
  )
  if (blocked.length === 0) {
    return claims
  }
  const retryAfter = retryAfterSeconds(blocked, now)
  c.header('retry-after', String(retryAfter))
  return devicePage(
    c,
    {
      userCode,
      error: `Too many codes tried. Wait ${Math.ceil(retryAfter / 60)} minutes, then enter the code again.`,
    },
    429,
  )
}

async function releaseCodeEntry(c: Context<AppEnv>, claims: readonly AttemptClaim[]): Promise<void> {
  const db = c.var.db.http
  const [first, ...rest] = claims.map((claim) => releaseAttemptsStatement(db, claim, 1))
  if (first !== undefined) {
    await db.batch([first, ...rest])
  }
}

/**
 * GET/POST /device (RFC 8628 §3.3): a signed-in user enters the code, sees which client asks,
 * and approves or denies. GET only fills the form in: whether a code is live is told only by
 * the throttled POST.
 */
export const devicePages = new Hono<AppEnv>()
  .get('/', async (c) => {
    const userCode = c.req.query('user_code')?.slice(0, 32)
    const user = await session(c)
    if (user === undefined) {
      return loginRedirect(c, userCode)
    }
    return devicePage(c, { userCode: userCode ?? '' })
  })
  .post('/', async (c) => {
    const form = await c.req.parseBody()
    await verifyCsrf(c, form[CSRF_FIELD])
    const userCode = typeof form.user_code === 'string' ? form.user_code.slice(0, 32) : ''
    const decision = form.decision
    if (decision !== undefined && decision !== 'approve' && decision !== 'deny') {
      throw new ProblemError('validation_failed', {
        detail: 'decision: must be approve or deny',
        errors: [{ field: 'decision', message: 'must be approve or deny' }],
      })
    }
    const user = await session(c)
    if (user === undefined) {
      return loginRedirect(c, userCode)
    }
    const now = new Date()
    const claims = await claimCodeEntry(c, user, userCode, now)
    if (claims instanceof Response) {
      return claims
    }
    const userCodeHash = await sha256Hex(normalizeUserCode(userCode))
    if (decision === undefined) {
      const pending = await findPendingDeviceCode(c.var.db.http, userCodeHash, now)
      if (pending === undefined) {
        return devicePage(c, { userCode, error: 'That code is not valid or has expired.' }, 400)
      }
      await releaseCodeEntry(c, claims)
      return devicePage(c, {
        userCode,
        client: { name: pending.client_name ?? pending.client_id, scope: pending.scope },
      })
    }
    const decided = await decideDeviceCode(c.var.db.http, {
      userCodeHash,
      userId: user.userId,
      tenantId: user.tenantId,
      approve: decision === 'approve',
      ip: clientIp(c),
      now,
    })
    if (decided === undefined) {
      return devicePage(c, { userCode, error: 'That code is not valid or has expired.' }, 400)
    }
    await releaseCodeEntry(c, claims)
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
  summary:
    'Check a user code (no decision: shows the asking client) or approve / deny it; throttled (RFC 8628 §5.1)',
  tags: ['pages'],
  security: ['sessionCookie'],
  requestBody: {
    schema: v.object({
      user_code: v.string(),
      csrf_token: v.string(),
      decision: v.optional(v.picklist(['approve', 'deny'])),
    }),
    contentTypes: ['application/x-www-form-urlencoded'],
  },
  responses: {
    200: { description: 'The asking client, or the result', contentType: 'text/html' },
    400: { description: 'Unknown or expired code', contentType: 'text/html' },
    429: { description: 'Too many codes tried; Retry-After', contentType: 'text/html' },
  },
})
