import * as v from 'valibot'
import { isUuid } from '../../db/uuid'
import { fromBase64Url, toBase64Url, utf8 } from '../crypto/encoding'
import { invalidField } from '../errors/problem'

export const DEFAULT_PAGE_SIZE = 20
export const MAX_PAGE_SIZE = 100

export interface Cursor {
  /** created_at with microseconds, ISO 8601 UTC. */
  createdAt: string
  id: string
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

/** Opaque to clients: base64url of `[created_at, id]`. */
export function encodeCursor(cursor: Cursor): string {
  return toBase64Url(utf8(JSON.stringify([cursor.createdAt, cursor.id])))
}

/** The cursor, or 400 `validation_failed` on `cursor` for anything we did not issue. */
export function decodeCursor(raw: string | undefined): Cursor | undefined {
  if (raw === undefined || raw === '') {
    return undefined
  }
  const bytes = raw.length <= 200 ? fromBase64Url(raw) : undefined
  try {
    const parsed: unknown = bytes === undefined ? undefined : JSON.parse(new TextDecoder().decode(bytes))
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'string' &&
      TIMESTAMP.test(parsed[0]) &&
      typeof parsed[1] === 'string' &&
      isUuid(parsed[1])
    ) {
      return { createdAt: parsed[0], id: parsed[1] }
    }
  } catch {
    // falls through to the 400
  }
  throw invalidField('cursor', 'is not a cursor this API issued')
}

/** `?limit=` as a string: 1..100, default 20. */
export const PageLimit = v.optional(
  v.pipe(
    v.string(),
    v.regex(/^\d{1,3}$/, `must be an integer from 1 to ${MAX_PAGE_SIZE}`),
    v.transform(Number),
    v.minValue(1, `must be an integer from 1 to ${MAX_PAGE_SIZE}`),
    v.maxValue(MAX_PAGE_SIZE, `must be an integer from 1 to ${MAX_PAGE_SIZE}`),
  ),
  String(DEFAULT_PAGE_SIZE),
)

/** Splits a `limit + 1` fetch into the page and the next cursor. */
export function paginate<T>(
  rows: readonly T[],
  limit: number,
  cursorOf: (row: T) => Cursor,
): { page: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit)
  const last = page.at(-1)
  return {
    page,
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(cursorOf(last)) : null,
  }
}
