import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose'
import { accessTokenHash } from '../../functions/tokens/dpop'

/** A DPoP key pair (RFC 9449) with its public JWK and RFC 7638 thumbprint. */
export interface DpopKey {
  privateKey: CryptoKey
  publicJwk: JWK
  jkt: string
  alg: string
}

export async function dpopKey(alg = 'ES256'): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = await exportJWK(publicKey)
  return { privateKey, publicJwk, jkt: await calculateJwkThumbprint(publicJwk, 'sha256'), alg }
}

export interface ProofOptions {
  htm?: string
  /** The full URI the proof names (defaults to the issuer's token endpoint). */
  htu: string
  accessToken?: string
  /** Seconds added to now for `iat`. */
  iatOffset?: number
  jti?: string | null
  typ?: string
  /** Replaces the header's jwk (e.g. one that carries the private part). */
  jwk?: JWK
  nonce?: string
}

/** A signed DPoP proof; every field can be bent to build the bad cases. */
export async function dpopProof(key: DpopKey, options: ProofOptions): Promise<string> {
  const claims: Record<string, unknown> = {
    htm: options.htm ?? 'POST',
    htu: options.htu,
    iat: Math.floor(Date.now() / 1000) + (options.iatOffset ?? 0),
  }
  if (options.jti !== null) {
    claims.jti = options.jti ?? crypto.randomUUID()
  }
  if (options.accessToken !== undefined) {
    claims.ath = await accessTokenHash(options.accessToken)
  }
  if (options.nonce !== undefined) {
    claims.nonce = options.nonce
  }
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, typ: options.typ ?? 'dpop+jwt', jwk: options.jwk ?? key.publicJwk })
    .sign(key.privateKey)
}
