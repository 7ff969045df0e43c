import { validator } from 'hono/validator'
import type { GenericSchema, InferOutput } from 'valibot'
import { parseOrThrow } from './issues'

/**
 * Validates a JSON body against a valibot schema; the handler reads it typed with
 * `c.req.valid('json')`. Malformed JSON → 400 `malformed_json`; a non-JSON content type → 415;
 * a schema failure → 400 `validation_failed` naming the field.
 */
export function jsonBody<S extends GenericSchema>(schema: S) {
  return validator('json', (value): InferOutput<S> => parseOrThrow(schema, value))
}

/** The same for the query string (single values; repeated keys take the last). */
export function queryParams<S extends GenericSchema>(schema: S) {
  return validator('query', (value): InferOutput<S> => {
    const single: Record<string, string> = {}
    for (const [key, entry] of Object.entries(value)) {
      const last = Array.isArray(entry) ? entry.at(-1) : entry
      if (last !== undefined) {
        single[key] = last
      }
    }
    return parseOrThrow(schema, single)
  })
}
