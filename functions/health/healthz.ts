import { Hono } from 'hono'
import * as v from 'valibot'
import { isDatabaseUnavailable } from '../../db/errors'
import { readMigrationState } from '../../db/queries/health'
import type { AppEnv } from '../env'
import { documentRoute } from '../openapi/registry'

const HealthReport = v.object({
  status: v.picklist(['ok', 'degraded', 'unavailable']),
  database: v.object({
    reachable: v.boolean(),
    latency_ms: v.nullable(v.number()),
    migration: v.nullable(
      v.object({ applied: v.nullable(v.string()), expected: v.string(), up_to_date: v.boolean() }),
    ),
  }),
})

documentRoute({
  method: 'get',
  path: '/healthz',
  summary: 'Liveness and database reachability, with the applied migration version',
  tags: ['health'],
  responses: {
    200: { description: 'Database reachable and migrated', schema: HealthReport },
    503: { description: 'Database unreachable or behind on migrations', schema: HealthReport },
  },
})

export const healthz = new Hono<AppEnv>().get('/', async (c) => {
  const started = Date.now()
  try {
    const migration = await readMigrationState(c.var.db.http)
    const report: v.InferOutput<typeof HealthReport> = {
      status: migration.upToDate ? 'ok' : 'degraded',
      database: {
        reachable: true,
        latency_ms: Date.now() - started,
        migration: {
          applied: migration.applied,
          expected: migration.expected,
          up_to_date: migration.upToDate,
        },
      },
    }
    return c.json(report, migration.upToDate ? 200 : 503, { 'cache-control': 'no-store' })
  } catch (error) {
    if (!isDatabaseUnavailable(error)) {
      throw error
    }
    const report: v.InferOutput<typeof HealthReport> = {
      status: 'unavailable',
      database: { reachable: false, latency_ms: null, migration: null },
    }
    return c.json(report, 503, { 'cache-control': 'no-store', 'retry-after': '5' })
  }
})
