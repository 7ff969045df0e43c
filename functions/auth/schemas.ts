import * as v from 'valibot'
import { PASSWORD_MAX_LENGTH } from './password-policy'

export const EMAIL_MAX_LENGTH = 254
export const DISPLAY_NAME_MAX_LENGTH = 100
/** Account tokens are 32 random bytes in base64url (43 characters); anything far off is forged. */
const TOKEN_MAX_LENGTH = 128

/**
 * The one normalisation of a typed email address, at the edge (the JSON schemas and the sign-in
 * form): surrounding space trimmed, Unicode NFC so a composed and a decomposed `é` are one address.
 * Case is folded only in Postgres (`emailKey`), never here.
 */
export function normalizeEmail(text: string): string {
  return text.trim().normalize('NFC')
}

/** Normalised, at most 254 characters, one `@` with something on both sides, no spaces or controls. */
export const Email = v.pipe(
  v.string('must be a string'),
  v.transform(normalizeEmail),
  v.nonEmpty('is required'),
  v.maxLength(EMAIL_MAX_LENGTH, `must be at most ${EMAIL_MAX_LENGTH} characters`),
  v.regex(/^[^\s@\p{Cc}]+@[^\s@\p{Cc}]+$/u, 'must be an email address'),
)

/** Length only: strength is the password policy's call (400 weak_password, not validation_failed). */
export const Password = v.pipe(
  v.string('must be a string'),
  v.maxLength(PASSWORD_MAX_LENGTH, `must be at most ${PASSWORD_MAX_LENGTH} characters`),
)

export const DisplayName = v.nullable(
  v.pipe(
    v.string('must be a string'),
    v.trim(),
    v.maxLength(DISPLAY_NAME_MAX_LENGTH, `must be at most ${DISPLAY_NAME_MAX_LENGTH} characters`),
    v.regex(/^[^\p{Cc}]*$/u, 'must not contain control characters'),
  ),
)

export const AccountToken = v.pipe(
  v.string('must be a string'),
  v.nonEmpty('is required'),
  v.maxLength(TOKEN_MAX_LENGTH, 'is not a valid token'),
)

export const RegisterBody = v.object({
  email: Email,
  password: Password,
  display_name: v.optional(DisplayName),
})

export const LoginBody = v.object({
  email: Email,
  password: v.pipe(Password, v.nonEmpty('is required')),
  remember: v.optional(v.boolean('must be true or false'), false),
})

export const LoginMfaBody = v.object({
  mfa_token: v.pipe(v.string('must be a string'), v.nonEmpty('is required'), v.maxLength(128, 'is too long')),
  code: v.pipe(v.string('must be a string'), v.nonEmpty('is required'), v.maxLength(32, 'is too long')),
})

/** `POST /auth/login` for an account with TOTP: no session yet; finish with `POST /auth/login/mfa`. */
export const MfaRequiredResponse = v.object({
  mfa_required: v.literal(true),
  mfa_token: v.string(),
  expires_at: v.string(),
})

export const UpdateMeBody = v.object({ display_name: DisplayName })

export const ChangePasswordBody = v.object({
  current_password: v.pipe(Password, v.nonEmpty('is required')),
  new_password: Password,
})

export const VerifyEmailBody = v.object({ token: AccountToken })
export const EmailOnlyBody = v.object({ email: Email })
export const ResetConfirmBody = v.object({ token: AccountToken, password: Password })

const SessionJson = v.object({ expires_at: v.string(), remember: v.boolean(), created_at: v.string() })

export const UserJsonSchema = v.object({
  id: v.string(),
  email: v.string(),
  display_name: v.nullable(v.string()),
  status: v.picklist(['pending', 'active', 'suspended']),
  email_verified: v.boolean(),
  is_admin: v.boolean(),
  created_at: v.string(),
})
export const UserResponse = v.object({ user: UserJsonSchema })
export const SessionResponse = v.object({ user: UserJsonSchema, session: SessionJson })
