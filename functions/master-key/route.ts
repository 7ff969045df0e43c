import { Hono } from 'hono'
import * as v from 'valibot'
import { SEALED_TABLES } from '../../db/queries/reseal'
import type { AppEnv } from '../env'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'
import { queryParams } from '../validation/json-body'
import { RESEAL_BATCH, resealUnderNewestKey } from './reseal'

const ResealQuery = v.object({
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,4}$/, 'must be an integer from 1 to 1000'),
      v.transform(Number),
      v.minValue(1, 'must be an integer from 1 to 1000'),
      v.maxValue(1000, 'must be an integer from 1 to 1000'),
    ),
    String(RESEAL_BATCH),
  ),
})

const PerTable = v.object(Object.fromEntries(SEALED_TABLES.map((t) => [t, v.number()])))

documentRoute({
  method: 'post',
  path: '/admin/master-key/reseal',
  summary:
    'One re-seal pass after a MASTER_KEY rotation: up to `limit` rows per table move from an older key to the newest (the cron runs the same pass)',
  tags: ['admin'],
  security: ['adminToken'],
  query: ResealQuery,
  responses: {
    200: {
      description:
        '`done` once no row is left under an older configured key (then the older keys may leave MASTER_KEY); `unreadable` counts rows under keys MASTER_KEY no longer lists',
      schema: v.object({ resealed: PerTable, remaining: PerTable, unreadable: PerTable, done: v.boolean() }),
    },
  },
})

/** `POST /admin/master-key/reseal`: what `npm run master-key:reseal` calls until `done`. */
export const masterKeyAdmin = new Hono<AppEnv>()
  .use(requireAdmin())
  .post('/reseal', queryParams(ResealQuery), async (c) => {
    const report = await resealUnderNewestKey(c.var.db.http, c.var.config, c.req.valid('query').limit)
    return c.json(report, 200, { 'cache-control': 'no-store' })
  })
