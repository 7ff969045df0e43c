/**
 * Failures of the database itself (unreachable, overloaded, shutting down), as opposed to a
 * statement Postgres rejected. The HTTP edge answers them with 503 and Retry-After.
 */
export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError'
  readonly code = 'database_unavailable'
  /** `timeout`: the call outlived its deadline; `unreachable`: it failed to connect or stay connected. */
  readonly reason: DatabaseUnavailableReason

  constructor(message: string, options: { cause?: unknown; reason?: DatabaseUnavailableReason } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.reason = options.reason ?? 'unreachable'
  }
}

export type DatabaseUnavailableReason = 'unreachable' | 'timeout'

// SQLSTATE classes that mean "the server, not the statement": connection exceptions (08),
// insufficient resources (53, e.g. 53300 too many connections), operator intervention (57,
// e.g. 57P01 admin shutdown).
const UNAVAILABLE_SQLSTATE = /^(08|53|57)/

interface ErrorLike {
  code?: unknown
  cause?: unknown
  sourceError?: unknown
  severity?: unknown
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
  return databaseUnavailableReason(error) !== undefined
}

/**
 * Why the database could not serve, or undefined when the error is something else (a statement
 * Postgres rejected, a bug). A FATAL or PANIC error ends the session whatever its SQLSTATE
 * (55000 "database is not accepting connections" arrives that way while connecting).
 */
export function databaseUnavailableReason(error: unknown): DatabaseUnavailableReason | undefined {
  for (const e of errorChain(error)) {
    if (e instanceof DatabaseUnavailableError) {
      return e.reason
    }
    if (e.severity === 'FATAL' || e.severity === 'PANIC') {
      return 'unreachable'
    }
  }
  const state = sqlState(error)
  return state !== undefined && UNAVAILABLE_SQLSTATE.test(state) ? 'unreachable' : undefined
}

/**
 * True for SQLSTATE class 22 (data exception: a NUL byte in text, a value out of range, bad
 * encoding): the input was wrong, so the caller gets a 400, never a 500.
 */
export function isDataException(error: unknown): boolean {
  return sqlState(error)?.startsWith('22') === true
}

export const UNIQUE_VIOLATION = '23505'
export const FOREIGN_KEY_VIOLATION = '23503'

// deadlock_detected: Postgres aborted this statement (all of it) to break a lock cycle.
const DEADLOCK_SQLSTATE = '40P01'
const DEADLOCK_ATTEMPTS = 3

/**
 * Runs `statement` again when Postgres aborted it as a deadlock victim. Only for one
 * autocommit statement (or one batch): the abort rolled all of it back, so running it again
 * cannot apply anything twice. A retry costs a round trip, on that rare path only.
 */
export async function retryOnDeadlock<T>(statement: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await statement()
    } catch (error) {
      if (attempt >= DEADLOCK_ATTEMPTS || sqlState(error) !== DEADLOCK_SQLSTATE) {
        throw error
      }
    }
  }
}
