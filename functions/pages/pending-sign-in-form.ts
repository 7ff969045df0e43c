import type { Context } from 'hono'
import type { AppEnv } from '../env'
import { CSRF_FIELD, verifyCsrf } from './csrf'
import { safeReturnTo } from './return-to'

const MFA_TOKEN_MAX_LENGTH = 128

/**
 * The posted form of a sign-in's later page (the code, the required enrolment): its string
 * fields, the same-origin return_to, the pending sign-in's token, and whether the CSRF check passed.
 */
export async function pendingSignInForm(c: Context<AppEnv>) {
  const form = await c.req.parseBody()
  const field = (name: string): string => {
    const value = form[name]
    return typeof value === 'string' ? value : ''
  }
  const csrfOk = await verifyCsrf(c, form[CSRF_FIELD]).then(
    () => true,
    () => false,
  )
  return {
    field,
    returnTo: safeReturnTo(field('return_to'), c.var.config.issuer),
    mfaToken: field('mfa_token').slice(0, MFA_TOKEN_MAX_LENGTH),
    csrfOk,
  }
}
