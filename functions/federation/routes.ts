import { type Context, Hono } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { html } from 'hono/html'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { HttpDb } from '../../db/client'
import { sqlState, UNIQUE_VIOLATION } from '../../db/errors'
import {
  consumeLoginStateStatement,
  insertIdentityStatement,
  insertLoginStateStatement,
  insertMembershipStatement,
  selectAllowlistMatch,
  selectIdentityWithUser,
  updateIdentityTokensStatement,
} from '../../db/queries/federation'
import { selectUsableProviderStatement } from '../../db/queries/identity-providers'
import { findLiveSession, insertSessionStatement } from '../../db/queries/sessions'
import {
  insertUserStatement,
  recordLoginStatement,
  selectUserByEmail,
  type UserRow,
} from '../../db/queries/users'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { type AuditEvent, auditStatement, recordAudit } from '../audit/record'
import { sessionTtlSeconds } from '../auth/login'
import { cookieName, readSessionToken, secureCookies, setSessionCookie } from '../auth/session-cookie'
import type { Config } from '../config'
import { secretsEqual } from '../crypto/compare'
import { sha256Hex } from '../crypto/hash'
import { signWithMasterKey } from '../crypto/hmac'
import { randomToken } from '../crypto/random'
import type { AppEnv } from '../env'
import { errorForLog, log } from '../log'
import { clientIp } from '../middleware/client-ip'
import { documentRoute } from '../openapi/registry'
import { PAGE_HEADERS, renderPage } from '../pages/layout'
import { safeReturnTo } from '../pages/return-to'
import { secondFactorDue, secondFactorPage } from '../pages/second-factor-gate'
import { allowlistCandidates } from './allowlist'
import { type FederatedProvider, PROVIDER_ID } from './config'
import { configProvider, operatorTrusted, resolveProvider, storedProvider } from './providers'
import { sealTokens } from './tokens'
import {
  authorizationUrl,
  completeUpstream,
  type FlowSecrets,
  type UpstreamIdentity,
  type UpstreamTokens,
} from './upstream'

/**
 * Stored instead of a password hash for accounts created by a federated sign-in: not a PHC string
 * nor bcrypt, so no password ever verifies against it (until a password reset sets one).
 */
export const NO_PASSWORD = '!federated'

/** Binds a flow to the browser that started it (login CSRF): holds the state until the callback. */
const FLOW_COOKIE = 'portcullis_federated'

const STATE_PATTERN = /^[A-Za-z0-9_-]{43}$/

function redirectUri(config: Config, provider: FederatedProvider): string {
  return `${config.issuer}/federated/${provider.id}/callback`
}

/** The PKCE verifier and nonce of a flow: HMACs of its state, so neither is ever stored. */
async function flowSecrets(config: Config, state: string): Promise<FlowSecrets> {
  const [codeVerifier, nonce] = await Promise.all([
    signWithMasterKey(config.masterKeys, 'federation', `pkce:${state}`),
    signWithMasterKey(config.masterKeys, 'federation', `nonce:${state}`),
  ])
  return { state, codeVerifier, nonce }
}

/** The HTML answer of a federated sign-in that cannot go on: what happened, and the way back. */
export async function page(c: Context<AppEnv>, title: string, message: string, status: ContentfulStatusCode) {
  return c.html(
    await renderPage(
      title,
      html`<h1>${title}</h1>
        <div class="error" role="alert">${message}</div>
        <p><a href="/login">Back to sign in</a></p>`,
    ),
    status,
    PAGE_HEADERS,
  )
}

function notEnabled(c: Context<AppEnv>) {
  return page(c, 'Sign-in unavailable', 'This sign-in provider is not enabled.', 404)
}

function pendingPage(c: Context<AppEnv>) {
  return page(
    c,
    'Waiting for approval',
    'Your account is waiting for approval by an administrator. You can sign in once it is approved.',
    403,
  )
}

documentRoute({
  method: 'get',
  path: '/federated/{provider}/start',
  summary: 'Start a federated sign-in (302 to the provider); signed in, it connects the provider instead',
  tags: ['pages'],
  responses: {
    302: { description: 'To the provider, with state, PKCE (S256) and, for OpenID providers, a nonce' },
    404: { description: 'No such provider enabled (HTML)', contentType: 'text/html' },
    502: { description: 'The provider could not be reached (HTML)', contentType: 'text/html' },
  },
})
documentRoute({
  method: 'get',
  path: '/federated/{provider}/callback',
  summary: 'The provider sends the browser back here; signs in (or connects) and 303s to return_to',
  tags: ['pages'],
  responses: {
    303: { description: 'Signed in: to the same-origin return_to of the start' },
    400: {
      description: 'Unknown, expired or replayed state; or the provider answered error (HTML)',
      contentType: 'text/html',
    },
    403: { description: 'Account pending approval or suspended (HTML)', contentType: 'text/html' },
    409: {
      description: 'The email belongs to an account that must connect the provider itself (HTML)',
      contentType: 'text/html',
    },
    502: {
      description: 'The provider failed, timed out or sent an invalid ID token (HTML)',
      contentType: 'text/html',
    },
  },
})

/** `/federated/{provider}/start` and `/callback`: sign-in with GitHub or an OpenID provider. */
export const federation = new Hono<AppEnv>()
  .get('/:provider/start', async (c) => {
    const config = c.var.config
    const db = c.var.db.http
    const sessionToken = readSessionToken(c)
    const now = new Date()
    // The provider (a database one: one round trip) and the session, side by side.
    const [provider, session] = await Promise.all([
      resolveProvider(db, config, c.req.param('provider')),
      sessionToken === undefined
        ? undefined
        : sha256Hex(sessionToken).then((h) => findLiveSession(db, h, now)),
    ])
    if (provider === undefined) {
      return notEnabled(c)
    }
    const state = randomToken(32)
    const secrets = await flowSecrets(config, state)
    let target: URL
    try {
      target = await authorizationUrl(
        provider,
        redirectUri(config, provider),
        secrets,
        config.federation.timeoutMs,
      )
    } catch (error) {
      log('warn', 'federation_start_failed', {
        requestId: c.var.requestId,
        provider: provider.id,
        error: errorForLog(error),
      })
      return page(c, 'Sign-in unavailable', `${provider.name} could not be reached. Try again later.`, 502)
    }
    // Signed in: this flow connects the provider to the account instead of signing in.
    await insertLoginStateStatement(db, {
      stateHash: await sha256Hex(state),
      provider: provider.id,
      returnTo: safeReturnTo(c.req.query('return_to'), config.issuer),
      linkUserId: session?.status === 'active' ? session.userId : null,
      expiresAt: new Date(now.getTime() + config.federation.stateTtlSeconds * 1000),
      createdAt: now,
    })
    setCookie(c, cookieName(config, FLOW_COOKIE), state, {
      httpOnly: true,
      sameSite: 'Lax',
      secure: secureCookies(config),
      path: '/',
      maxAge: config.federation.stateTtlSeconds,
    })
    c.header('cache-control', 'no-store')
    return c.redirect(target.toString(), 302)
  })
  .get('/:provider/callback', async (c) => {
    const config = c.var.config
    const db = c.var.db.http
    const providerId = c.req.param('provider')
    const fromConfig = configProvider(config, providerId)
    if (fromConfig === undefined && !PROVIDER_ID.test(providerId)) {
      return notEnabled(c)
    }
    const state = c.req.query('state') ?? ''
    const cookieState = getCookie(c, cookieName(config, FLOW_COOKIE)) ?? ''
    deleteCookie(c, cookieName(config, FLOW_COOKIE), { path: '/', secure: secureCookies(config) })
    const expired = () =>
      page(
        c,
        'Sign-in expired',
        'This sign-in link expired or was already used. Start again from the sign-in page.',
        400,
      )
    if (!STATE_PATTERN.test(state) || !(await secretsEqual(state, cookieState))) {
      return expired()
    }
    const now = new Date()
    // Round trip 1: the flow is consumed whatever happens next (single use), and a provider the
    // deployment does not configure is read from identity_providers in the same batch.
    const consume = consumeLoginStateStatement(db, await sha256Hex(state), now)
    let flow: Awaited<typeof consume>[number] | undefined
    let provider = fromConfig
    if (fromConfig === undefined) {
      const [flows, rows] = await db.batch([consume, selectUsableProviderStatement(db, providerId)])
      flow = flows[0]
      provider = rows[0] === undefined ? undefined : await storedProvider(config, rows[0].provider)
    } else {
      flow = (await consume)[0]
    }
    if (provider === undefined) {
      return notEnabled(c)
    }
    if (flow === undefined || flow.provider !== provider.id) {
      return expired()
    }
    const outcome = await completeUpstream(
      provider,
      new URL(c.req.url),
      redirectUri(config, provider),
      await flowSecrets(config, state),
      config.federation.timeoutMs,
    )
    const refuse = (reason: string) =>
      recordAudit(c, {
        type: 'user_login_failed',
        actor: 'anonymous',
        tenantId: DEFAULT_TENANT_ID,
        metadata: { via: 'federated', provider: provider.id, reason },
      })
    if (outcome.kind === 'provider_error') {
      refuse(`provider_error:${outcome.error.slice(0, 64)}`)
      const message =
        outcome.error === 'access_denied'
          ? `You cancelled signing in with ${provider.name}.`
          : `${provider.name} refused the sign-in request.`
      return page(c, 'Sign-in failed', message, 400)
    }
    if (outcome.kind === 'no_verified_email') {
      refuse('no_verified_email')
      return page(
        c,
        'Sign-in failed',
        `Your ${provider.name} account has no verified primary email address. Verify one with ${provider.name}, then try again.`,
        400,
      )
    }
    if (outcome.kind === 'failed') {
      log('warn', 'federation_callback_failed', {
        requestId: c.var.requestId,
        provider: provider.id,
        reason: outcome.reason,
      })
      refuse(outcome.reason.slice(0, 120))
      return page(c, 'Sign-in failed', `Signing in with ${provider.name} did not work. Try again later.`, 502)
    }
    return finishSignIn(c, db, provider, flow, outcome.identity, outcome.tokens, now)
  })

async function finishSignIn(
  c: Context<AppEnv>,
  db: HttpDb,
  provider: FederatedProvider,
  flow: { linkUserId: string | null; returnTo: string },
  identity: UpstreamIdentity,
  tokens: UpstreamTokens,
  now: Date,
) {
  const config = c.var.config
  const ip = clientIp(c)
  // The identity's row id is chosen here so its tokens are sealed to it (associated data).
  const newIdentityId = crypto.randomUUID()
  // Round trip 2: the identity's account, the account that has its verified email, and the
  // allowlist entry it matches (read always: it costs no round trip).
  const [linked, byEmail, allowed] = await db.batch([
    selectIdentityWithUser(db, provider.id, identity.subject),
    selectUserByEmail(db, DEFAULT_TENANT_ID, identity.email ?? ''),
    selectAllowlistMatch(db, operatorTrusted(provider) ? allowlistCandidates(provider, identity) : []),
  ])
  const existing = linked[0]
  const sealed = await sealTokens(config, existing?.identity.id ?? newIdentityId, tokens, now)
  const identityRow = (userId: string) => ({
    id: newIdentityId,
    ...sealed,
    userId,
    provider: provider.id,
    subject: identity.subject,
    email: identity.email ?? null,
    username: identity.username ?? null,
    createdAt: now,
    lastLoginAt: now,
  })
  const linkedEvent = (user: { id: string; tenantId: string }, how: string): AuditEvent => ({
    type: 'identity_linked',
    actor: `user:${user.id}`,
    userId: user.id,
    tenantId: user.tenantId,
    metadata: { provider: provider.id, subject: identity.subject, how },
  })

  // Connecting a provider to the signed-in account that started the flow.
  if (flow.linkUserId !== null) {
    if (existing !== undefined) {
      if (existing.user.id !== flow.linkUserId) {
        return page(
          c,
          'Already connected',
          `This ${provider.name} account is connected to another account.`,
          409,
        )
      }
      await updateIdentityTokensStatement(db, existing.identity.id, sealed, now)
      return c.redirect(flow.returnTo, 303)
    }
    try {
      await db.batch([
        insertIdentityStatement(db, identityRow(flow.linkUserId)),
        auditStatement(
          db,
          ip,
          linkedEvent({ id: flow.linkUserId, tenantId: DEFAULT_TENANT_ID }, 'signed_in'),
        ),
      ])
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) {
        return page(
          c,
          'Already connected',
          `This ${provider.name} account is connected to another account.`,
          409,
        )
      }
      throw error
    }
    return c.redirect(flow.returnTo, 303)
  }

  if (existing !== undefined) {
    return startSession(
      c,
      db,
      provider,
      existing.user,
      [updateIdentityTokensStatement(db, existing.identity.id, sealed, now)],
      flow,
      now,
    )
  }
  const sameEmail = byEmail[0]
  if (sameEmail !== undefined) {
    if (!config.federation.autoLinkVerifiedEmail || !operatorTrusted(provider)) {
      recordAudit(c, {
        type: 'user_login_failed',
        actor: 'anonymous',
        userId: sameEmail.id,
        tenantId: sameEmail.tenantId,
        metadata: { via: 'federated', provider: provider.id, reason: 'email_in_use' },
      })
      return page(
        c,
        'Account already exists',
        `An account already uses the email of this ${provider.name} account. Sign in with your password, then sign in with ${provider.name} again to connect it.`,
        409,
      )
    }
    return startSession(
      c,
      db,
      provider,
      sameEmail,
      [
        insertIdentityStatement(db, identityRow(sameEmail.id)),
        auditStatement(db, ip, linkedEvent(sameEmail, 'verified_email')),
      ],
      flow,
      now,
    )
  }
  if (identity.email === undefined) {
    return page(c, 'Sign-in failed', `${provider.name} did not share a verified email address.`, 400)
  }
  // A new account, its identity and (unless it awaits approval) a session: one batch. With
  // FEDERATION_ALLOWLIST, an account matching no entry is created pending (an administrator
  // approves it with POST /admin/users/{id}/approve) and the user sees the waiting page.
  const allowlisted = allowed[0]?.kind
  const closed = config.requireApproval || (config.federation.allowlist && allowlisted === undefined)
  const user: UserRow = {
    id: crypto.randomUUID(),
    tenantId: DEFAULT_TENANT_ID,
    email: identity.email,
    passwordHash: NO_PASSWORD,
    displayName: identity.name ?? identity.username ?? null,
    status: closed ? 'pending' : 'active',
    emailVerifiedAt: now,
    isAdmin: false,
    profile: {},
    lastLoginAt: null,
    tokensValidAfter: null,
    createdAt: now,
    updatedAt: now,
  }
  return startSession(
    c,
    db,
    provider,
    user,
    [
      insertUserStatement(db, user),
      insertIdentityStatement(db, identityRow(user.id)),
      // Signed up through a tenant's own provider: a member of that tenant from the start.
      ...(provider.origin.kind === 'database' && provider.origin.tenantId !== null
        ? [insertMembershipStatement(db, provider.origin.tenantId, user.id, now)]
        : []),
      auditStatement(
        db,
        ip,
        {
          type: 'user_registered',
          actor: `user:${user.id}`,
          userId: user.id,
          tenantId: user.tenantId,
          metadata: {
            via: 'federated',
            provider: provider.id,
            status: user.status,
            ...(config.federation.allowlist ? { allowlist: allowlisted ?? 'miss' } : {}),
          },
        },
        linkedEvent(user, 'sign_up'),
      ),
    ],
    flow,
    now,
  )
}

type Statement = Parameters<HttpDb['batch']>[0][number]

/**
 * Round trip 3: whether a second factor is due (issue 14); round trip 4: `writes` (a new account
 * and identity, or the identity's login stamp) with, for an active account, the session, the
 * login stamp and `user_login`; then the cookie and 303. When a factor is due the writes commit
 * alone and the second step (or the required enrolment) is answered instead of a session.
 */
async function startSession(
  c: Context<AppEnv>,
  db: HttpDb,
  provider: FederatedProvider,
  user: UserRow,
  writes: Statement[],
  flow: { returnTo: string },
  now: Date,
) {
  const config = c.var.config
  const ip = clientIp(c)
  if (user.status !== 'active') {
    const reason = user.status === 'pending' ? 'account_pending' : 'account_suspended'
    const refusal = auditStatement(db, ip, {
      type: 'user_login_failed',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { via: 'federated', provider: provider.id, reason },
    })
    if (!(await runBatch(db, [...writes, refusal]))) {
      return page(c, 'Sign-in failed', 'Another sign-in for this account is in progress. Try again.', 409)
    }
    return user.status === 'pending'
      ? pendingPage(c)
      : page(c, 'Account suspended', 'This account is suspended.', 403)
  }
  // Issue 14: a provider's sign-in is one factor. TOTP on, or REQUIRE_TWO_FACTOR without a
  // factor: the account's writes commit, then the second step (or the enrolment) decides.
  const due = await secondFactorDue(c, user)
  if (due !== undefined) {
    if (writes.length > 0 && !(await runBatch(db, writes))) {
      return page(c, 'Sign-in failed', 'Another sign-in for this account is in progress. Try again.', 409)
    }
    return secondFactorPage(c, user, due, { via: 'federated', returnTo: flow.returnTo })
  }
  const token = randomToken(32)
  const expiresAt = new Date(now.getTime() + sessionTtlSeconds(config, false) * 1000)
  const ok = await runBatch(db, [
    ...writes,
    insertSessionStatement(db, {
      tokenHash: await sha256Hex(token),
      userId: user.id,
      remember: false,
      expiresAt,
      createdAt: now,
      lastSeenAt: now,
      userAgent: c.req.header('user-agent')?.slice(0, 512) ?? null,
      ip,
    }),
    recordLoginStatement(db, user.id, now, undefined),
    auditStatement(db, ip, {
      type: 'user_login',
      actor: `user:${user.id}`,
      userId: user.id,
      tenantId: user.tenantId,
      metadata: { via: 'federated', provider: provider.id },
    }),
  ])
  if (!ok) {
    return page(c, 'Sign-in failed', 'Another sign-in for this account is in progress. Try again.', 409)
  }
  setSessionCookie(c, { token, id: '', expiresAt, remember: false })
  return c.redirect(flow.returnTo, 303)
}

/** Runs a batch; false when a concurrent sign-in created the same account or identity first. */
async function runBatch(db: HttpDb, statements: Statement[]): Promise<boolean> {
  try {
    await db.batch(statements as [Statement, ...Statement[]])
    return true
  } catch (error) {
    if (sqlState(error) === UNIQUE_VIOLATION) {
      return false
    }
    throw error
  }
}
