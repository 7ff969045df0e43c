import type { MiddlewareHandler } from 'hono'
import { bodyLimit as honoBodyLimit } from 'hono/body-limit'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'

export const MAX_BODY_BYTES = 64 * 1024

/** 413 for bodies over the limit, checked on Content-Length and while streaming. */
export function bodyLimit(maxBytes = MAX_BODY_BYTES): MiddlewareHandler<AppEnv> {
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError('bodyLimit: maxBytes must be a positive integer')
  }
  return honoBodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ProblemError('payload_too_large', {
        detail: `Request bodies are limited to ${maxBytes} bytes`,
      })
    },
  })
}
