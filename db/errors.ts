/**
 * Failures of the database itself (unreachable, overloaded, shutting down), as opposed to a
 * statement Postgres rejected. The HTTP edge answers them with 503 and Retry-After.
 */
export class DatabaseUnavailableError extends Error {
  override name = this.constructor.name
  readonly code = 'database_unavailable'
}

// SQLSTATE classes that mean "the server, not the statement": connection exceptions (08),
// insufficient resources (53), operator intervention (57, e.g. admin shutdown).
const UNAVAILABLE_SQLSTATE = /^(08|53|57)/

interface ErrorLike {
  code?: unknown
  cause?: unknown
  sourceError?: unknown
}

function* errorChain(error: unknown): Generator<ErrorLike> {
  let current: unknown = error
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const e = current as ErrorLike
    yield e
    current = e.cause ?? e.sourceError
  }
}

/** The SQLSTATE code Postgres attached to this error (or to what it wraps), if any. */
export function sqlState(error: unknown): string | undefined {
  for (const e of errorChain(error)) {
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
      return e.code
    }
  }
  return undefined
}

/** True when the error means the database could not be reached or could not serve. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (const e of errorChain(error)) {
    if (e instanceof DatabaseUnavailableError) {
      return true
    }
  }
  const state = sqlState(error)
  return state !== undefined && UNAVAILABLE_SQLSTATE.test(state)
}

export const UNIQUE_VIOLATION = '23505'
export const FOREIGN_KEY_VIOLATION = '23503'
