/**
 * The one rule for text Portcullis accepts: no NUL or other C0 control except TAB, LF and CR, and
 * no lone UTF-16 surrogate. Postgres refuses NUL in `text` (a 500 before this check existed), a
 * lone surrogate cannot be encoded as UTF-8 and would be silently replaced, and the other C0
 * controls only serve to forge log lines or terminal output.
 */
export function isValidText(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20) {
      if (code !== 0x09 && code !== 0x0a && code !== 0x0d) {
        return false
      }
    } else if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1)
      if (!(next >= 0xdc00 && next <= 0xdfff)) {
        return false
      }
      i++
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      return false
    }
  }
  return true
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** `bytes` as UTF-8, or undefined when they are not valid UTF-8 (overlong forms, encoded surrogates…). */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return STRICT_UTF8.decode(bytes)
  } catch {
    return undefined
  }
}

function hexValue(byte: number | undefined): number {
  if (byte === undefined) {
    return -1
  }
  if (byte >= 0x30 && byte <= 0x39) {
    return byte - 0x30
  }
  const lower = byte | 0x20
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1
}

/**
 * WHATWG percent-decoding (a `%` not followed by two hex digits stays as it is), optionally with
 * `+` as space, then strict UTF-8: undefined where URLSearchParams would have put U+FFFD.
 */
export function percentDecode(bytes: Uint8Array, plusAsSpace: boolean): string | undefined {
  const out = new Uint8Array(bytes.length)
  let length = 0
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i] ?? 0
    if (byte === 0x25) {
      const high = hexValue(bytes[i + 1])
      const low = hexValue(bytes[i + 2])
      if (high >= 0 && low >= 0) {
        out[length++] = high * 16 + low
        i += 2
        continue
      }
    }
    out[length++] = plusAsSpace && byte === 0x2b ? 0x20 : byte
  }
  return decodeUtf8(out.subarray(0, length))
}

/** Where invalid text was found, for the 400's detail and `errors[].field`. */
export interface TextFault {
  field: string
}

/**
 * The first fault in an `application/x-www-form-urlencoded` byte sequence (a query string or a
 * form body): a name or value that is not UTF-8 once percent-decoded, or that fails `isValidText`.
 */
export function findFormTextFault(bytes: Uint8Array, where: string): TextFault | undefined {
  let start = 0
  while (start <= bytes.length) {
    let end = bytes.indexOf(0x26, start)
    if (end === -1) {
      end = bytes.length
    }
    const pair = bytes.subarray(start, end)
    start = end + 1
    if (pair.length === 0) {
      continue
    }
    const equals = pair.indexOf(0x3d)
    const name = percentDecode(equals === -1 ? pair : pair.subarray(0, equals), true)
    const value = equals === -1 ? '' : percentDecode(pair.subarray(equals + 1), true)
    if (name === undefined || !isValidText(name)) {
      return { field: where }
    }
    if (value === undefined || !isValidText(value)) {
      return { field: `${where}.${name}` }
    }
  }
  return undefined
}

/**
 * The first string (value or object key, at any depth) of a parsed JSON value that fails
 * `isValidText`, as a dotted path. Iterative, so a deeply nested body cannot overflow the stack.
 */
export function findJsonTextFault(value: unknown, where: string): TextFault | undefined {
  const stack: [unknown, string][] = [[value, where]]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [node, path] = item
    if (typeof node === 'string') {
      if (!isValidText(node)) {
        return { field: path }
      }
    } else if (Array.isArray(node)) {
      node.forEach((child: unknown, index) => {
        stack.push([child, `${path}.${index}`])
      })
    } else if (typeof node === 'object' && node !== null) {
      for (const [key, child] of Object.entries(node)) {
        if (!isValidText(key)) {
          return { field: path }
        }
        stack.push([child, `${path}.${key}`])
      }
    }
  }
  return undefined
}
