import type { Config } from '../../config'

/**
 * Where passkeys are valid (issue 14): the WebAuthn relying party is ISSUER itself. A browser
 * signs the origin it ran on and scopes each credential to an RP ID, which must be the page's
 * host or a registrable parent of it, or `localhost` (WebAuthn L3 §5.1.4.1, §13.4.9): an IP
 * address never is, so an issuer like http://127.0.0.1:8787 offers no passkeys.
 */
export interface RelyingParty {
  /** ISSUER's host name. */
  id: string
  /** ISSUER's origin: the only origin a ceremony's client data may name. */
  origin: string
  /** Shown by the authenticator: the brand's product name. */
  name: string
}

function isIpLiteral(host: string): boolean {
  return host.startsWith('[') || /^\d{1,3}(\.\d{1,3}){3}$/.test(host)
}

/** The relying party of this deployment, or undefined when ISSUER's host is an IP address. */
export function relyingParty(config: Config): RelyingParty | undefined {
  const url = new URL(config.issuer)
  return isIpLiteral(url.hostname)
    ? undefined
    : { id: url.hostname, origin: url.origin, name: config.brand.name }
}
