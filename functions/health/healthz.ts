import { Hono } from 'hono'
import * as v from 'valibot'
import { withDatabaseDeadline } from '../../db/client'
import { databaseUnavailableReason } from '../../db/errors'
import { readMigrationState } from '../../db/queries/health'
import type { ConfigError } from '../config'
import type { AppEnv } from '../env'
import { documentRoute } from '../openapi/registry'
import { undecryptableSigningKeys } from '../tokens/keys'

/** The health check's own deadline per database call: it must answer well before a prober gives up. */
export const HEALTHZ_DB_TIMEOUT_MS = 2_000
const RETRY_AFTER_SECONDS = '5'

/** Why /healthz is not 200, one code per failed check, most fundamental first. */
export const HEALTH_REASONS = [
  'config_invalid',
  'database_unreachable',
  'database_timeout',
  'migrations_pending',
  'signing_key_undecryptable',
] as const
export type HealthReason = (typeof HEALTH_REASONS)[number]

const HealthReport = v.object({
  status: v.picklist(['ok', 'degraded', 'unavailable']),
  reasons: v.array(v.picklist(HEALTH_REASONS)),
  database: v.object({
    reachable: v.boolean(),
    latency_ms: v.nullable(v.number()),
    migration: v.nullable(
      v.object({ applied: v.nullable(v.string()), expected: v.string(), up_to_date: v.boolean() }),
    ),
  }),
  signing_keys: v.nullable(v.object({ undecryptable: v.array(v.string()) })),
  config: v.optional(v.object({ variable: v.string() })),
})
type HealthReport = v.InferOutput<typeof HealthReport>

documentRoute({
  method: 'get',
  path: '/healthz',
  summary: 'Liveness, database reachability and migrations, signing keys usable with the master key',
  tags: ['health'],
  responses: {
    200: { description: 'Everything a request needs works', schema: HealthReport },
    503: {
      description:
        'Something does not; `reasons` lists a code per failed check (config_invalid, database_unreachable, ' +
        'database_timeout, migrations_pending, signing_key_undecryptable)',
      schema: HealthReport,
    },
  },
})

const NO_STORE = { 'cache-control': 'no-store' }

export const healthz = new Hono<AppEnv>().get('/', async (c) => {
  const deadlineMs = Math.min(HEALTHZ_DB_TIMEOUT_MS, c.var.config.dbTimeoutMs)
  const started = Date.now()
  const report: HealthReport = {
    status: 'ok',
    reasons: [],
    database: { reachable: false, latency_ms: null, migration: null },
    signing_keys: null,
  }
  try {
    const migration = await withDatabaseDeadline(deadlineMs, () => readMigrationState(c.var.db.http))
    report.database = {
      reachable: true,
      latency_ms: Date.now() - started,
      migration: { applied: migration.applied, expected: migration.expected, up_to_date: migration.upToDate },
    }
    if (!migration.upToDate) {
      report.reasons.push('migrations_pending')
    } else {
      // Decrypts every key that may sign (once per isolate, then cached): a changed MASTER_KEY
      // shows here, naming the key ids, instead of as failing token requests.
      const undecryptable = await withDatabaseDeadline(deadlineMs, () =>
        undecryptableSigningKeys(c.var.db, c.var.config),
      )
      report.signing_keys = { undecryptable }
      if (undecryptable.length > 0) {
        report.reasons.push('signing_key_undecryptable')
      }
    }
  } catch (error) {
    const reason = databaseUnavailableReason(error)
    if (reason === undefined) {
      throw error
    }
    report.reasons.push(reason === 'timeout' ? 'database_timeout' : 'database_unreachable')
  }
  if (report.reasons.length === 0) {
    return c.json(report, 200, NO_STORE)
  }
  report.status = report.database.reachable ? 'degraded' : 'unavailable'
  return c.json(report, 503, { ...NO_STORE, 'retry-after': RETRY_AFTER_SECONDS })
})

/**
 * The /healthz answer when the configuration itself is invalid (the request never reaches the
 * route): names the variable, never its value.
 */
export function configInvalidHealthResponse(error: ConfigError): Response {
  const report: HealthReport = {
    status: 'unavailable',
    reasons: ['config_invalid'],
    database: { reachable: false, latency_ms: null, migration: null },
    signing_keys: null,
    config: { variable: error.variable },
  }
  return new Response(JSON.stringify(report), {
    status: 503,
    headers: { 'content-type': 'application/json', ...NO_STORE, 'retry-after': RETRY_AFTER_SECONDS },
  })
}
