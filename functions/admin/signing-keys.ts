import { Hono } from 'hono'
import * as v from 'valibot'
import type { AppEnv } from '../env'
import { ProblemError } from '../errors/problem'
import { clientIp } from '../middleware/client-ip'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { KEY_PUBLISH_LEAD_SECONDS, rotateSigningKey } from '../tokens/keys'
import { parseOrThrow } from '../validation/issues'

const ROTATE_BODY = v.optional(
  v.object({
    alg: v.optional(v.picklist(['ES256', 'RS256', 'EdDSA'])),
    /** Seconds until the new key signs; 0 for an emergency rotation (a compromised key). */
    activate_in_seconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(30 * 86_400))),
  }),
  {},
)

/** POST /admin/signing-keys/rotate: publishes a new key now; it signs after the publish lead. */
export const signingKeysAdmin = new Hono<AppEnv>().post('/rotate', requireAdmin(), async (c) => {
  // The body is optional: an empty POST rotates the ES256 access-token key.
  const text = await c.req.text()
  let raw: unknown = {}
  if (text.trim() !== '') {
    try {
      raw = JSON.parse(text)
    } catch {
      throw new ProblemError('malformed_json', { detail: 'The body could not be parsed' })
    }
  }
  // valibot's object() accepts an array; a rotation must not start from `[]`.
  if (Array.isArray(raw)) {
    throw new ProblemError('validation_failed', {
      detail: 'body: must be a JSON object',
      errors: [{ field: 'body', message: 'must be a JSON object' }],
    })
  }
  const body = parseOrThrow(ROTATE_BODY, raw)
  const alg = body.alg ?? 'ES256'
  // The key and its `signing_key_rotated` audit row commit in one batch.
  const report = await rotateSigningKey(
    c.var.db,
    c.var.config,
    alg,
    body.activate_in_seconds ?? KEY_PUBLISH_LEAD_SECONDS,
    new Date(),
    {
      actor: c.var.principal.kind === 'user' ? `user:${c.var.principal.userId}` : 'admin',
      ip: clientIp(c),
    },
  )
  return c.json(
    {
      kid: report.kid,
      alg: report.alg,
      activates_at: report.activatesAt.toISOString(),
      retiring: report.retiring,
      retired: report.retired,
    },
    201,
  )
})

documentRoute({
  method: 'post',
  path: '/admin/signing-keys/rotate',
  summary: 'Rotate a signing key (published now, signs after the publish lead)',
  tags: ['admin'],
  security: ['adminToken'],
  requestBody: { schema: ROTATE_BODY },
  responses: {
    201: {
      description: 'New key',
      schema: v.object({ kid: v.string(), alg: v.string(), activates_at: v.string() }),
    },
  },
})
