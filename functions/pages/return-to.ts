/** Longest return_to kept: an authorize URL with its query fits comfortably. */
const RETURN_TO_MAX_LENGTH = 4000

/**
 * `return_to` when it is a same-origin path (a single leading `/`, not `//` or `/\`, no control
 * characters, resolving to the issuer's origin), else `/`. Off-origin targets are never followed.
 */
export function safeReturnTo(raw: unknown, issuer: string): string {
  if (
    typeof raw !== 'string' ||
    raw.length > RETURN_TO_MAX_LENGTH ||
    !raw.startsWith('/') ||
    raw.startsWith('//') ||
    raw.startsWith('/\\') ||
    hasControlOrBackslash(raw)
  ) {
    return '/'
  }
  const origin = new URL(issuer).origin
  let resolved: URL
  try {
    resolved = new URL(raw, origin)
  } catch {
    return '/'
  }
  return resolved.origin === origin ? `${resolved.pathname}${resolved.search}${resolved.hash}` : '/'
}

function hasControlOrBackslash(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || code === 0x7f || code === 0x5c) {
      return true
    }
  }
  return false
}
