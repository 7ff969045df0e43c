import * as v from 'valibot'
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '../../crypto/webauthn'
import { parseOrThrow } from '../../validation/issues'
import { PASSKEY_NAME_MAX_LENGTH } from './registration'

// The browser's PublicKeyCredential as JSON (WebAuthn L3 §5.1: RegistrationResponseJSON and
// AuthenticationResponseJSON): base64url fields, bounded well above what authenticators send.

function base64url(maxLength: number) {
  return v.pipe(
    v.string('must be a string'),
    v.maxLength(maxLength, 'is too long'),
    v.regex(/^[A-Za-z0-9_-]*$/, 'must be base64url'),
  )
}

/** Credential ids are at most 1023 bytes (WebAuthn L3 §4). */
const CredentialId = v.pipe(base64url(1400), v.nonEmpty('is required'))
const Common = {
  id: CredentialId,
  rawId: CredentialId,
  type: v.literal('public-key', 'must be public-key'),
  authenticatorAttachment: v.optional(v.nullable(v.picklist(['platform', 'cross-platform']))),
  clientExtensionResults: v.optional(v.record(v.string(), v.unknown()), {}),
}

export const AttestationJson = v.object({
  ...Common,
  response: v.object({
    clientDataJSON: v.pipe(base64url(4096), v.nonEmpty('is required')),
    attestationObject: v.pipe(base64url(32_768), v.nonEmpty('is required')),
    transports: v.optional(
      v.pipe(v.array(v.pipe(v.string(), v.maxLength(32), v.regex(/^[a-z-]+$/))), v.maxLength(8)),
      [],
    ),
  }),
})

export const AssertionJson = v.object({
  ...Common,
  response: v.object({
    clientDataJSON: v.pipe(base64url(4096), v.nonEmpty('is required')),
    authenticatorData: v.pipe(base64url(4096), v.nonEmpty('is required')),
    signature: v.pipe(base64url(2048), v.nonEmpty('is required')),
    userHandle: v.optional(v.nullable(base64url(128))),
  }),
})

export const PasskeyName = v.pipe(
  v.string('must be a string'),
  v.trim(),
  v.nonEmpty('is required'),
  v.maxLength(PASSKEY_NAME_MAX_LENGTH, `must be at most ${PASSKEY_NAME_MAX_LENGTH} characters`),
  v.regex(/^[^\p{Cc}]*$/u, 'must not contain control characters'),
)

const MfaToken = v.pipe(
  v.string('must be a string'),
  v.nonEmpty('is required'),
  v.maxLength(128, 'is too long'),
)

export const RegisterPasskeyBody = v.object({ credential: AttestationJson, name: v.optional(PasskeyName) })
export const RenamePasskeyBody = v.object({ name: PasskeyName })
export const PasskeySignInBody = v.object({
  credential: AssertionJson,
  remember: v.optional(v.boolean('must be true or false'), false),
})
export const SecondFactorOptionsBody = v.object({ mfa_token: MfaToken })
export const SecondFactorBody = v.object({ mfa_token: MfaToken, credential: AssertionJson })

export const PasskeyJson = v.object({
  id: v.string(),
  name: v.string(),
  synced: v.boolean(),
  transports: v.array(v.string()),
  created_at: v.string(),
  last_used_at: v.nullable(v.string()),
})
export const PasskeyResponse = v.object({ passkey: PasskeyJson })
export const PasskeyListResponse = v.object({ data: v.array(PasskeyJson), next_cursor: v.null() })
export const OptionsResponse = v.object({ options: v.record(v.string(), v.unknown()) })

/** The members every PublicKeyCredential JSON has, as the library types them. */
function commonMembers(input: v.InferOutput<typeof AssertionJson> | v.InferOutput<typeof AttestationJson>) {
  return {
    id: input.id,
    rawId: input.rawId,
    type: input.type,
    clientExtensionResults: input.clientExtensionResults,
    ...(input.authenticatorAttachment == null
      ? {}
      : { authenticatorAttachment: input.authenticatorAttachment }),
  }
}

export function toRegistrationResponse(
  input: v.InferOutput<typeof AttestationJson>,
): RegistrationResponseJSON {
  const { clientDataJSON, attestationObject, transports } = input.response
  return { ...commonMembers(input), response: { clientDataJSON, attestationObject, transports } }
}

export function toAuthenticationResponse(
  input: v.InferOutput<typeof AssertionJson>,
): AuthenticationResponseJSON {
  const { clientDataJSON, authenticatorData, signature, userHandle } = input.response
  return {
    ...commonMembers(input),
    response: { clientDataJSON, authenticatorData, signature, ...(userHandle == null ? {} : { userHandle }) },
  }
}

/**
 * A credential posted by the pages' script as JSON text in a form field: the same schema as the
 * JSON API, or a 400 `validation_failed` naming `credential`.
 */
export function parseCredentialField<S extends typeof AttestationJson | typeof AssertionJson>(
  schema: S,
  text: unknown,
): v.InferOutput<S> {
  let value: unknown
  try {
    value = typeof text === 'string' && text.length <= 48_000 ? JSON.parse(text) : undefined
  } catch {
    value = undefined
  }
  return parseOrThrow(v.object({ credential: schema }), { credential: value }).credential as v.InferOutput<S>
}
