import { ProblemError } from '../errors/problem'

/**
 * Admission control for password hashing (argon2id, bcrypt) in one isolate.
 *
 * A hash is synchronous WebAssembly: while it runs nothing else in the isolate does, so
 * "concurrent" hashes are requests waiting their turn on the event loop. Each admitted request
 * registers, yields once to the event loop (so other requests' I/O interleaves between hashes
 * instead of queueing behind a burst of them), hashes on the pooled core, and leaves. When
 * `limit` requests are already waiting, the next one is refused at once with 503 `overloaded` and
 * a Retry-After estimated from the recent hash time, rather than queued behind them for seconds.
 *
 * An entry whose request was cancelled while it waited (workerd drops such continuations, so its
 * `finally` never runs) would hold a place forever; entries older than ENTRY_LEASE_MS are
 * therefore presumed lost and pruned.
 */
const ENTRY_LEASE_MS = 30_000
const INITIAL_HASH_ESTIMATE_MS = 100
// Weight of the newest sample in the moving average of hash durations.
const HASH_TIME_SMOOTHING = 0.2

const waiting = new Map<symbol, number>()
let averageHashMs = INITIAL_HASH_ESTIMATE_MS

/**
 * Runs `work` (a synchronous password hash or check) once admitted; see the module comment.
 * `limit` is ARGON2_MAX_QUEUE: the most requests that may wait for or run a hash at once.
 */
export async function withPasswordSlot<T>(limit: number, work: () => T, now = Date.now): Promise<T> {
  assertPasswordSlotFree(limit, now)
  const entry = Symbol('password-slot')
  waiting.set(entry, now())
  try {
    // Our own timer (never another request's promise: workerd cancels continuations on a promise
    // whose creating request has ended).
    await new Promise<void>((resolve) => setTimeout(resolve, 0))
    const started = performance.now()
    const result = work()
    recordHashTime(performance.now() - started)
    return result
  } finally {
    waiting.delete(entry)
  }
}

/**
 * Refuses with 503 `overloaded` when `limit` requests already wait for a hash. Called before any
 * other work of a request that will hash (a sign-in's attempt claim), so a refused request has
 * changed nothing.
 */
export function assertPasswordSlotFree(limit: number, now = Date.now): void {
  pruneLost(now())
  if (waiting.size >= limit) {
    throw new ProblemError('overloaded', {
      detail: 'Too many sign-ins are being checked right now; retry shortly',
      log: `password_gate_full waiting=${waiting.size}`,
      retryAfterSeconds: Math.max(1, Math.ceil((waiting.size * averageHashMs) / 1000)),
    })
  }
}

/** Requests currently waiting for or running a hash in this isolate (tests, diagnostics). */
export function passwordGateDepth(): number {
  return waiting.size
}

function pruneLost(now: number): void {
  for (const [entry, since] of waiting) {
    if (now - since > ENTRY_LEASE_MS) {
      waiting.delete(entry)
    }
  }
}

function recordHashTime(ms: number): void {
  // workerd's clock only advances across I/O, so a synchronous hash can measure as 0 there.
  if (ms > 0) {
    averageHashMs = averageHashMs * (1 - HASH_TIME_SMOOTHING) + ms * HASH_TIME_SMOOTHING
  }
}
