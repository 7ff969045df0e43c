import { calculateJwkThumbprint, EmbeddedJWK, type JWK, errors as joseErrors, jwtVerify } from 'jose'
import { toBase64Url } from '../crypto/encoding'
import { sha256Bytes, sha256Hex } from '../crypto/hash'

/** RFC 9449 §4.2: asymmetric algorithms only (never `none`, never a MAC). */
export const DPOP_SIGNING_ALGS = ['ES256', 'RS256', 'PS256', 'EdDSA'] as const
/** How far a proof's `iat` may be from our clock, either way (RFC 9449 §11.1). */
export const DPOP_IAT_WINDOW_SECONDS = 60
const MAX_PROOF_LENGTH = 4096
const MAX_JTI_LENGTH = 200
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/** A proof that checked out: the key's thumbprint and the replay-table row that spends its `jti`. */
export interface DpopProof {
  /** RFC 7638 SHA-256 thumbprint of the proof's public key (`cnf.jkt`, RFC 9449 §6.1). */
  jkt: string
  /** SHA-256 of the key's thumbprint and the `jti`: the row that makes the proof single use. */
  jtiHash: string
  /** When the proof stops being acceptable anyway (its `iat` leaves the window). */
  expiresAt: Date
}

export type DpopCheck =
  | { ok: true; proof: DpopProof }
  /** `useNonce`: only the server nonce was missing or stale (RFC 9449 §8: `use_dpop_nonce`). */
  | { ok: false; reason: string; useNonce?: true }

export interface DpopExpectation {
  method: string
  /** The request's URI as we may be addressed (query and fragment ignored, RFC 9449 §4.3). */
  urls: readonly string[]
  now: Date
  /** On a resource request: the access token the proof must be bound to (`ath`, RFC 9449 §4.3). */
  accessToken?: string
  /** When a server nonce is required: whether the proof's `nonce` is one we issued. */
  checkNonce?: (nonce: unknown) => Promise<boolean>
}

/** A URI without query and fragment, normalised by the URL parser; undefined if not a URI. */
export function htuOf(uri: string): string | undefined {
  try {
    const url = new URL(uri)
    url.search = ''
    url.hash = ''
    return url.href
  } catch {
    return undefined
  }
}

/** base64url(SHA-256(token)): the `ath` of a proof sent with an access token (RFC 9449 §4.2). */
export async function accessTokenHash(token: string): Promise<string> {
  return toBase64Url(await sha256Bytes(token))
}

/**
 * RFC 9449 §4.3 checks of one `DPoP` header value, with no database: a single compact JWS with
 * `typ: dpop+jwt`, an asymmetric `alg`, a public `jwk` that verifies it, `jti`, `htm` equal to the
 * method, `htu` equal to one of our URIs for this request, `iat` within the window and, on a
 * resource request, `ath` over the presented token. Spending the `jti` is the caller's statement.
 */
export async function checkDpopProof(
  header: string | undefined,
  expect: DpopExpectation,
): Promise<DpopCheck> {
  if (header === undefined || header.length === 0) {
    return { ok: false, reason: 'missing' }
  }
  if (header.length > MAX_PROOF_LENGTH || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(header)) {
    return { ok: false, reason: 'not one compact JWS' }
  }
  let jwk: JWK
  let payload: Record<string, unknown>
  try {
    const verified = await jwtVerify(header, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: [...DPOP_SIGNING_ALGS],
      currentDate: expect.now,
    })
    payload = verified.payload
    const embedded = verified.protectedHeader.jwk
    if (embedded === undefined) {
      return { ok: false, reason: 'no jwk' }
    }
    jwk = embedded
  } catch (error) {
    if (error instanceof joseErrors.JOSEError || error instanceof TypeError || error instanceof SyntaxError) {
      return { ok: false, reason: error instanceof joseErrors.JOSEError ? error.code : 'malformed' }
    }
    throw error
  }
  if (PRIVATE_JWK_MEMBERS.some((member) => Object.hasOwn(jwk, member))) {
    return { ok: false, reason: 'jwk carries private or symmetric key material' }
  }
  const { jti, htm, htu, iat, ath } = payload
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI_LENGTH) {
    return { ok: false, reason: 'bad jti' }
  }
  if (htm !== expect.method) {
    return { ok: false, reason: 'htm mismatch' }
  }
  const claimed = typeof htu === 'string' ? htuOf(htu) : undefined
  if (claimed === undefined || !expect.urls.some((url) => htuOf(url) === claimed)) {
    return { ok: false, reason: 'htu mismatch' }
  }
  const nowSeconds = Math.floor(expect.now.getTime() / 1000)
  if (
    typeof iat !== 'number' ||
    !Number.isFinite(iat) ||
    Math.abs(nowSeconds - iat) > DPOP_IAT_WINDOW_SECONDS
  ) {
    return { ok: false, reason: 'iat outside the window' }
  }
  if (expect.accessToken !== undefined) {
    if (typeof ath !== 'string' || ath !== (await accessTokenHash(expect.accessToken))) {
      return { ok: false, reason: 'ath mismatch' }
    }
  }
  if (expect.checkNonce !== undefined && !(await expect.checkNonce(payload.nonce))) {
    return { ok: false, reason: 'nonce missing or stale', useNonce: true }
  }
  const jkt = await calculateJwkThumbprint(jwk, 'sha256')
  return {
    ok: true,
    proof: {
      jkt,
      jtiHash: await sha256Hex(`dpop:${jkt}:${jti}`),
      expiresAt: new Date((Math.floor(iat) + DPOP_IAT_WINDOW_SECONDS) * 1000),
    },
  }
}
