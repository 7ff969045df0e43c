import type { Context } from 'hono'
import type { AppEnv } from '../env'
import { OAuthError } from '../errors/oauth'
import { checkDpopProof, DPOP_SIGNING_ALGS, type DpopProof } from '../tokens/dpop'
import { currentDpopNonce, isValidDpopNonce } from '../tokens/dpop-nonce'
import type { AccessTokenClaims } from '../tokens/verify-access-token'

/** An access token as presented: `Authorization: Bearer …` (RFC 6750) or `DPoP …` (RFC 9449 §7.1). */
export interface AccessCredential {
  token: string
  scheme: 'Bearer' | 'DPoP'
}

/** The token in `Authorization: Bearer …` or `Authorization: DPoP …`, or undefined. */
export function accessCredential(header: string | undefined): AccessCredential | undefined {
  const match = header?.match(/^(Bearer|DPoP)[ ]+([\x21-\x7E]+)[ ]*$/i)
  if (match?.[1] === undefined || match[2] === undefined) {
    return undefined
  }
  return { token: match[2], scheme: match[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer' }
}

/** RFC 9449 §7.1: the challenge a DPoP-protected resource answers with. */
export function dpopChallenge(
  error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce' | undefined,
): string {
  const algs = `algs="${DPOP_SIGNING_ALGS.join(' ')}"`
  return error === undefined ? `DPoP ${algs}` : `DPoP ${algs}, error="${error}"`
}

function refused(error: 'invalid_token' | 'invalid_dpop_proof', log: string): OAuthError {
  return new OAuthError('invalid_token', {
    description: error === 'invalid_token' ? 'The access token is not valid' : 'The DPoP proof is not valid',
    log,
    headers: { 'www-authenticate': dpopChallenge(error) },
  })
}

/** The refusal of a proof whose `jti` was already spent (RFC 9449 §11.1). */
export function dpopReplayed(): OAuthError {
  return refused('invalid_dpop_proof', 'dpop jti replayed')
}

/**
 * RFC 9449 §7, without the database: a token bound with `cnf.jkt` is accepted only under the DPoP
 * scheme with a proof for this method and URI, signed by the bound key, carrying `ath` for this
 * token; a DPoP-scheme request with an unbound token is refused too. Returns the checked proof,
 * whose `jti` the caller must spend in its own statement (refusing with `dpopReplayed` when that
 * spend loses), or null when the token is unbound and came as Bearer.
 */
export async function senderConstraintProof(
  c: Context<AppEnv>,
  credential: AccessCredential,
  claims: AccessTokenClaims,
  now = new Date(),
): Promise<DpopProof | null> {
  const jkt = claims.cnf?.jkt
  if (credential.scheme === 'Bearer') {
    if (jkt !== undefined) {
      throw refused('invalid_token', 'DPoP-bound token presented as Bearer')
    }
    return null
  }
  if (jkt === undefined) {
    throw refused('invalid_token', 'unbound token presented with the DPoP scheme')
  }
  const config = c.var.config
  const check = await checkDpopProof(c.req.header('dpop'), {
    method: c.req.method,
    urls: [`${config.issuer}${c.req.path}`, c.req.url],
    now,
    accessToken: credential.token,
    ...(config.dpopNonceRequired
      ? { checkNonce: (nonce: unknown) => isValidDpopNonce(config, nonce, now) }
      : {}),
  })
  if (!check.ok && check.useNonce) {
    // RFC 9449 §9: 401 with the use_dpop_nonce challenge and the nonce to use.
    throw new OAuthError('invalid_token', {
      description: 'Send the DPoP proof again with the nonce in DPoP-Nonce',
      log: check.reason,
      headers: {
        'www-authenticate': dpopChallenge('use_dpop_nonce'),
        'dpop-nonce': await currentDpopNonce(config, now),
      },
    })
  }
  if (!check.ok) {
    throw refused('invalid_dpop_proof', check.reason)
  }
  if (check.proof.jkt !== jkt) {
    throw refused('invalid_dpop_proof', 'proof signed by another key than the bound one')
  }
  return check.proof
}
