import type { ApplicationType } from '../../db/schema'

export const MAX_REDIRECT_URIS = 10
export const MAX_REDIRECT_URI_LENGTH = 2000

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost'])
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'vbscript:', 'file:', 'about:', 'blob:'])

function isLoopback(url: URL): boolean {
  return LOOPBACK_HOSTS.has(url.hostname)
}

/**
 * Why a redirect URI may not be registered, or undefined when it may (DESIGN, RFC 8252 §7,
 * RFC 9700 §4.1): web clients need https or loopback http; native clients may also use loopback
 * http on any port and private-use schemes (reverse domain, `com.example.app:/cb`); never a
 * fragment, credentials, wildcard, `javascript:` or `data:`.
 */
export function redirectUriProblem(uri: string, applicationType: ApplicationType): string | undefined {
  if (uri.length > MAX_REDIRECT_URI_LENGTH) {
    return `must be at most ${MAX_REDIRECT_URI_LENGTH} characters`
  }
  if (uri.includes('#')) {
    return 'must not contain a fragment'
  }
  if (uri.includes('*')) {
    return 'must not contain wildcards'
  }
  if (/[\s\\<>"]/.test(uri)) {
    return 'must not contain spaces, backslashes or angle brackets'
  }
  if (!URL.canParse(uri)) {
    return 'must be an absolute URI'
  }
  const url = new URL(uri)
  if (FORBIDDEN_SCHEMES.has(url.protocol)) {
    return `must not use the ${url.protocol} scheme`
  }
  if (url.username !== '' || url.password !== '') {
    return 'must not contain credentials'
  }
  if (url.protocol === 'https:') {
    return url.hostname === '' ? 'must name a host' : undefined
  }
  if (url.protocol === 'http:') {
    return isLoopback(url) ? undefined : 'must use https (http only on a loopback host)'
  }
  if (applicationType === 'native') {
    // RFC 8252 §7.1: private-use schemes are reverse domain names.
    return /^[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+:$/i.test(url.protocol)
      ? undefined
      : 'a private-use scheme must be a reverse domain name such as com.example.app'
  }
  return 'web clients must use https (or http on a loopback host)'
}

function withoutPort(url: URL): string {
  const copy = new URL(url.href)
  copy.port = ''
  return copy.href
}

/** Loopback IP literals: their port is the client's to choose at run time (RFC 8252 §7.3). */
const LOOPBACK_IPS = new Set(['127.0.0.1', '[::1]'])

/**
 * Whether `presented` is one of `registered`: exact string match, except that loopback http URIs
 * on an IP literal (`127.0.0.1`, `[::1]`) match on any port for every client (RFC 8252 §7.3,
 * OAuth 2.1 §4.1.1). `localhost` keeps its old rule: exact for web clients, any port for native ones.
 */
export function matchesRegisteredRedirectUri(
  registered: readonly string[],
  presented: string,
  applicationType: ApplicationType,
): boolean {
  if (registered.includes(presented)) {
    return true
  }
  if (!URL.canParse(presented)) {
    return false
  }
  const url = new URL(presented)
  if (url.protocol !== 'http:' || !isLoopback(url) || url.href !== presented) {
    return false
  }
  if (!LOOPBACK_IPS.has(url.hostname) && applicationType !== 'native') {
    return false
  }
  const target = withoutPort(url)
  return registered.some((r) => {
    if (!URL.canParse(r)) {
      return false
    }
    const candidate = new URL(r)
    return candidate.protocol === 'http:' && isLoopback(candidate) && withoutPort(candidate) === target
  })
}
