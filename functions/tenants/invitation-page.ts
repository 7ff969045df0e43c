import { type Context, Hono } from 'hono'
import { html } from 'hono/html'
import { findInvitationByToken, type InvitationView } from '../../db/queries/tenants'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { documentRoute } from '../openapi/registry'
import { signedIn } from '../pages/account-session'
import { CSRF_FIELD, issueCsrfToken, verifyCsrf } from '../pages/csrf'
import { sendPage } from '../pages/layout'
import { acceptInvitationAs } from './invitations'

/** Where the invitation mail links (`?token=`); the JSON API's POST shares the path. */
export const INVITATION_PAGE_PATH = '/tenants/invitations/accept'

const TOKEN = /^[A-Za-z0-9_-]{1,200}$/

documentRoute({
  method: 'get',
  path: INVITATION_PAGE_PATH,
  summary:
    'HTML page of the invitation mail link (?token=): signed in as the invited address → an Accept button (CSRF-protected form POST to the same path); signed out → a sign-in link that comes back; another account, expired, used or unknown → a page saying so',
  tags: ['pages', 'tenants'],
  security: ['sessionCookie'],
  responses: {
    200: { description: 'The invitation page', contentType: 'text/html' },
    400: { description: 'Unknown, expired or used invitation', contentType: 'text/html' },
    403: { description: 'Signed in with another account', contentType: 'text/html' },
  },
})

function isForm(c: Context<AppEnv>): boolean {
  const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  return type === 'application/x-www-form-urlencoded' || type === 'multipart/form-data'
}

/** This page again, for the sign-in (or sign-up) to come back to. */
function returnTo(token: string): string {
  return `${INVITATION_PAGE_PATH}?token=${encodeURIComponent(token)}`
}

const ROLE_WORDS: Record<InvitationView['role'], string> = {
  owner: 'an owner',
  admin: 'an admin',
  member: 'a member',
}

/** The page for a token that cannot be accepted (or none), with the reason in words. */
function deadPage(c: Context<AppEnv>, invitation: InvitationView | undefined, signedInUser: boolean) {
  const [title, text] =
    invitation === undefined
      ? [
          'Invitation not found',
          'This invitation link is not valid: it was mistyped, or the invitation was withdrawn.',
        ]
      : invitation.state === 'used'
        ? invitation.acceptedByUser
          ? ['Already accepted', `You are already in ${invitation.tenantName}.`]
          : [
              'Invitation already used',
              `This invitation to ${invitation.tenantName} has already been accepted.`,
            ]
        : invitation.state === 'expired'
          ? [
              'Invitation expired',
              `This invitation to ${invitation.tenantName} has expired. Ask one of its admins for a new one.`,
            ]
          : ['Invitation unavailable', `${invitation.tenantName} is not accepting members at the moment.`]
  return sendPage(
    c,
    title,
    html`<h1>${title}</h1>
      <p class="lead" data-testid="invitation-state">${text}</p>
      <div class="links"><a href="${signedInUser ? '/account' : '/login'}">${signedInUser ? 'Your account' : 'Sign in'}</a></div>`,
    invitation?.state === 'used' && invitation.acceptedByUser ? 200 : 400,
  )
}

async function invitationPage(c: Context<AppEnv>, token: string, error?: string): Promise<Response> {
  const me = await signedIn(c)
  const invitation = TOKEN.test(token)
    ? await findInvitationByToken(c.var.db.http, await sha256Hex(token), me?.user.id, new Date())
    : undefined
  if (invitation === undefined || invitation.state !== 'pending') {
    return deadPage(c, invitation, me !== undefined)
  }
  const heading = html`<h1>Join ${invitation.tenantName}</h1>
    <p class="lead">You are invited to join <strong>${invitation.tenantName}</strong> as ${ROLE_WORDS[invitation.role]}.</p>`
  if (me === undefined) {
    return sendPage(
      c,
      'Invitation',
      html`${heading}
        <p>Sign in as <strong>${invitation.email}</strong> to accept it.</p>
        <form method="get" action="/login">
          <input type="hidden" name="return_to" value="${returnTo(token)}" />
          <div class="row"><button type="submit" data-testid="invitation-sign-in">Sign in to accept</button></div>
        </form>
        <p class="muted">No account for that address yet? <a href="/signup?return_to=${encodeURIComponent(returnTo(token))}">Create one</a>, then come back to this link.</p>`,
    )
  }
  if (!invitation.forUser) {
    return sendPage(
      c,
      'Another account',
      html`${heading}
        <div class="error" data-testid="invitation-wrong-account">This invitation is for <strong>${invitation.email}</strong>, but you are signed in as <strong>${me.user.email}</strong>.</div>
        <p>Sign out, then sign in as ${invitation.email} and open the link again.</p>
        <div class="links"><a href="/account">Your account (sign out there)</a></div>`,
      403,
    )
  }
  const csrf = await issueCsrfToken(c)
  return sendPage(
    c,
    'Invitation',
    html`${heading}
      ${error === undefined ? '' : html`<div class="error">${error}</div>`}
      <p class="muted">Signed in as ${me.user.email}.</p>
      <form method="post" action="${INVITATION_PAGE_PATH}">
        <input type="hidden" name="token" value="${token}" />
        <input type="hidden" name="${CSRF_FIELD}" value="${csrf}" />
        <div class="row"><button type="submit" data-testid="invitation-accept">Accept and join</button></div>
      </form>`,
  )
}

/**
 * The invitation mail's link in a browser (GET), and its Accept form (a form POST, CSRF-checked,
 * signed in as the invited address). A JSON POST passes through to the API in routes.ts.
 * Mounted before `/tenants`, whose API answers signed-out callers with JSON 401s.
 */
export const invitationPages = new Hono<AppEnv>()
  .get('/', (c) => invitationPage(c, c.req.query('token') ?? ''))
  .post('/', async (c, next) => {
    if (!isForm(c)) {
      await next()
      return
    }
    const form = await c.req.parseBody()
    const token = typeof form.token === 'string' ? form.token : ''
    const me = await signedIn(c)
    if (me === undefined) {
      return c.redirect(`/login?return_to=${encodeURIComponent(returnTo(token))}`, 303)
    }
    await verifyCsrf(c, form[CSRF_FIELD])
    const outcome = TOKEN.test(token)
      ? await acceptInvitationAs(c, token, me.user.id)
      : { kind: 'invalid' as const }
    if (outcome.kind !== 'accepted') {
      // The page says why: used meanwhile, expired, withdrawn, or another account.
      return invitationPage(c, token)
    }
    return sendPage(
      c,
      'Welcome',
      html`<h1>You joined ${outcome.tenant.name}</h1>
        <div class="notice" data-testid="invitation-done">${
          outcome.alreadyMember
            ? `You were already in ${outcome.tenant.name}; your role there is unchanged.`
            : `You are now ${ROLE_WORDS[outcome.role]} of ${outcome.tenant.name}.`
        }</div>
        <div class="links"><a href="/account">Your account</a></div>`,
    )
  })
