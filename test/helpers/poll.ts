/**
 * The suite's one poller. Work a Worker defers with waitUntil (audit rows, usage rows, mail)
 * lands after the response; tests wait for it with a deadline and fail loudly when it never
 * comes, never by sleeping a fixed time.
 */

const INTERVAL_MS = 25

export class PollTimeoutError extends Error {
  override name = 'PollTimeoutError'
}

/**
 * Calls `probe` until `done` accepts its value; returns that value. Throws PollTimeoutError
 * (naming `what` and the last value seen) when `timeoutMs` passes first.
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (done(value)) {
      return value
    }
    if (Date.now() > deadline) {
      throw new PollTimeoutError(
        `eventually: ${what} not met within ${timeoutMs} ms; last value: ${describe(value)}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS))
  }
}

/** Calls `probe` until it returns something other than undefined; returns it (or throws on timeout). */
export async function until<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  what = 'value',
): Promise<T> {
  const value = await eventually(probe, (v) => v !== undefined, timeoutMs, what)
  return value as T
}

function describe(value: unknown): string {
  try {
    const text = JSON.stringify(value)
    return text === undefined ? String(value) : text.slice(0, 500)
  } catch {
    return String(value)
  }
}

/**
 * Asserts that `holds` stays true of `probe`'s value for `windowMs` (checked every poll):
 * the negative counterpart of `eventually`, for "nothing else is written later". Fails as
 * soon as the value changes; returns the last value.
 */
export async function consistently<T>(
  probe: () => Promise<T>,
  holds: (value: T) => boolean,
  windowMs = 300,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + windowMs
  for (;;) {
    const value = await probe()
    if (!holds(value)) {
      throw new PollTimeoutError(`consistently: ${what} stopped holding; value: ${describe(value)}`)
    }
    if (Date.now() > deadline) {
      return value
    }
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS))
  }
}
