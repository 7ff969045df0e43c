import type { Executor } from '../db/client'
import type { Config } from '../functions/config'
import { log } from '../functions/log'
import { type PurgeReport, purgeExpired } from './purge'

/** One purge run with the configured retention, logged as a single structured line. */
export async function runPurge(x: Executor, config: Config, now: Date): Promise<PurgeReport> {
  const report = await purgeExpired(x, {
    now,
    usageRetentionDays: config.usageRetentionDays,
    usageDetailRetentionDays: config.usageDetailRetentionDays,
    auditRetentionDays: config.auditRetentionDays,
  })
  log('info', 'purge_completed', { ...report })
  return report
}
