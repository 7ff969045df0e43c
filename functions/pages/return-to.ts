/** Longest return_to kept: an authorize URL with its query fits comfortably. */
const RETURN_TO_MAX_LENGTH = 4000

/**
 * `return_to` as a same-origin path to redirect to, else `/`. The input must be a path (one
 * leading `/`, no backslash or control character); it is then normalised by URL resolution
 * against the issuer, and the *result* is checked again: same origin, one leading `/`, no
 * backslash. Dot segments can turn `/..//evil.example` or `/%2e%2e//evil.example` into
 * `//evil.example`, which a browser follows as a protocol-relative URL to another host
 * (RFC 3986 §5.2.4, §4.2).
 */
export function safeReturnTo(raw: unknown, issuer: string): string {
  if (typeof raw !== 'string' || raw.length > RETURN_TO_MAX_LENGTH || !isLocalPath(raw)) {
    return '/'
  }
  const origin = new URL(issuer).origin
  let resolved: URL
  try {
    resolved = new URL(raw, origin)
  } catch {
    return '/'
  }
  const path = `${resolved.pathname}${resolved.search}${resolved.hash}`
  if (resolved.origin !== origin || !isLocalPath(path) || new URL(path, origin).origin !== origin) {
    return '/'
  }
  return path
}

/** A single leading `/` (not `//` or `/\`), and no backslash or control character anywhere. */
function isLocalPath(text: string): boolean {
  if (!text.startsWith('/') || text.startsWith('//')) {
    return false
  }
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f || code === 0x5c) {
      return false
    }
  }
  return true
}
