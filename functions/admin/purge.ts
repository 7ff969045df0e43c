import { Hono } from 'hono'
import * as v from 'valibot'
import { runPurge } from '../../scheduled/run'
import type { AppEnv } from '../env'
import { requireAdmin } from '../middleware/require-admin'
import { documentRoute } from '../openapi/registry'

const PurgeResponse = v.object({
  deleted: v.record(v.string(), v.number()),
  duration_ms: v.number(),
  done: v.boolean(),
})

documentRoute({
  method: 'post',
  path: '/admin/purge',
  summary: 'Run the purge of expired data now',
  tags: ['admin'],
  security: ['adminToken'],
  responses: { 200: { description: 'Rows deleted per table', schema: PurgeResponse } },
})

export const purgeRoute = new Hono<AppEnv>().post('/', requireAdmin(), async (c) => {
  const report = await runPurge(c.var.db.http, c.var.config, new Date())
  return c.json({ deleted: report.deleted, duration_ms: report.durationMs, done: report.done }, 200, {
    'cache-control': 'no-store',
  })
})
