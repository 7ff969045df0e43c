import type { Context, MiddlewareHandler } from 'hono'
import { fromBase64Url } from '../crypto/encoding'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import {
  decodeUtf8,
  findFormTextFault,
  findJsonTextFault,
  isValidText,
  percentDecode,
  type TextFault,
} from '../validation/text'

const encoder = new TextEncoder()

/**
 * Refuses, before any route runs, a request whose path, query string, Basic credentials or body
 * carries text that `isValidText` rejects (NUL, other C0 controls but TAB/LF/CR, lone surrogates)
 * or that is not UTF-8: 400 `validation_failed`, which `/oauth/*` answers as `invalid_request`. Bodies are
 * read once here (Hono caches them for the route): form and multipart fields by name and value;
 * anything else must be UTF-8 and, when it is JSON, every string and key at any depth is checked.
 */
export function validText(): MiddlewareHandler<AppEnv> {
  return async function validText(c, next) {
    const fault =
      findUrlFault(c.req.url) ??
      findBasicCredentialsFault(c.req.header('authorization')) ??
      (await findBodyFault(c))
    if (fault !== undefined) {
      const message =
        'must be UTF-8 text without NUL, control characters (other than tab and newline) or lone surrogates'
      throw new ProblemError('validation_failed', {
        detail: `${fault.field} ${message}`,
        errors: [{ field: fault.field, message }],
      })
    }
    await next()
  }
}

// Printable ASCII but `%`. A URL of only these has nothing to decode and nothing to refuse: the
// URL parser percent-encodes every control character and non-ASCII code point in the path and
// query, so only what a `%` encodes needs the full check.
const PLAIN_URL = /^[\x21-\x24\x26-\x7e]*$/

function findUrlFault(href: string): TextFault | undefined {
  if (PLAIN_URL.test(href)) {
    return undefined
  }
  const url = new URL(href)
  const path = percentDecode(encoder.encode(url.pathname), false)
  if (path === undefined || !isValidText(path)) {
    return { field: 'path' }
  }
  return findFormTextFault(encoder.encode(url.search.slice(1)), 'query')
}

/**
 * HTTP Basic client credentials (RFC 6749 §2.3.1: form-encoded, then base64): a NUL there would
 * otherwise reach the client lookup. Malformed base64 is left to client authentication.
 */
function findBasicCredentialsFault(header: string | undefined): TextFault | undefined {
  const encoded = /^Basic +([A-Za-z0-9+/=_-]+) *$/i.exec(header ?? '')?.[1]
  const bytes = encoded === undefined ? undefined : fromBase64Url(encoded)
  if (bytes === undefined) {
    return undefined
  }
  const colon = bytes.indexOf(0x3a)
  const parts = colon === -1 ? [bytes] : [bytes.subarray(0, colon), bytes.subarray(colon + 1)]
  return parts.every((part) => {
    const text = percentDecode(part, true)
    return text !== undefined && isValidText(text)
  })
    ? undefined
    : { field: 'authorization' }
}

async function findBodyFault(c: Context<AppEnv>): Promise<TextFault | undefined> {
  if (c.req.raw.body === null) {
    return undefined
  }
  const type = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase()
  const bytes = new Uint8Array(await c.req.arrayBuffer())
  if (type === 'multipart/form-data') {
    return findMultipartFault(bytes, c.req.header('content-type') ?? '')
  }
  if (type === 'application/x-www-form-urlencoded') {
    return findFormTextFault(bytes, 'body')
  }
  const decoded = decodeUtf8(bytes)
  if (decoded === undefined) {
    return { field: 'body' }
  }
  // The text the route will read: Request.text() drops a leading byte order mark (and so JSON
  // behind one parses there), so the check reads the same text. Handed to Hono's body cache, the
  // route's text() and json() take it as it is instead of decoding the bytes again through a new
  // Response. The cache holds promises (HonoRequest stores `raw.text()` itself there), whatever
  // its declared type says.
  const text = decoded.charCodeAt(0) === 0xfeff ? decoded.slice(1) : decoded
  ;(c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(text)
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    // Not JSON: the route answers with its own malformed_json / unsupported_media_type.
    return undefined
  }
  return findJsonTextFault(parsed, 'body')
}

async function findMultipartFault(bytes: Uint8Array, contentType: string): Promise<TextFault | undefined> {
  let form: FormData
  try {
    form = await new Response(bytes, { headers: { 'content-type': contentType } }).formData()
  } catch {
    // Malformed multipart: the route's own parsing answers it.
    return undefined
  }
  for (const [name, value] of form) {
    if (!isValidText(name)) {
      return { field: 'body' }
    }
    const text = typeof value === 'string' ? value : value.name
    if (!isValidText(text)) {
      return { field: `body.${name}` }
    }
  }
  return undefined
}
