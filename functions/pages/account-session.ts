import type { Context } from 'hono'
import { findLiveSessionWithUser } from '../../db/queries/sessions'
import { meetsTwoFactorPolicy } from '../auth/acr'
import { readSessionToken } from '../auth/session-cookie'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { CSRF_FIELD, verifyCsrf } from './csrf'

// Who is signed in on an /account page, for every section's handlers (account.ts and the
// sections other modules add).

export type Signed = NonNullable<Awaited<ReturnType<typeof findLiveSessionWithUser>>>

export async function signedIn(c: Context<AppEnv>): Promise<Signed | undefined> {
  const token = readSessionToken(c)
  const found =
    token === undefined
      ? undefined
      : await findLiveSessionWithUser(c.var.db.http, await sha256Hex(token), new Date())
  return found === undefined ||
    found.user.status !== 'active' ||
    !meetsTwoFactorPolicy(c.var.config, found.session.amr)
    ? undefined
    : found
}

export function toLogin(c: Context<AppEnv>): Response {
  return c.redirect(`/login?return_to=${encodeURIComponent('/account')}`, 303)
}

export type Form = Awaited<ReturnType<Context<AppEnv>['req']['parseBody']>>

/** A form POST from the account page: the signed-in person and the CSRF-checked form, else the way to /login. */
export async function signedInForm(c: Context<AppEnv>): Promise<{ me: Signed; form: Form } | Response> {
  const me = await signedIn(c)
  if (me === undefined) {
    return toLogin(c)
  }
  const form = await c.req.parseBody()
  await verifyCsrf(c, form[CSRF_FIELD])
  return { me, form }
}
