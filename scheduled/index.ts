import { createDb } from '../db/client'
import { loadConfig } from '../functions/config'
import { deliverPendingEmail } from '../functions/email/deliver'
import type { Bindings } from '../functions/env'
import { errorForLog, log } from '../functions/log'
import { resealUnderNewestKey } from '../functions/master-key/reseal'
import { rotateDueSigningKeys } from '../functions/tokens/keys'
import { runPurge } from './run'

/** The cron trigger: purge what has expired. Errors are logged, never thrown into the void. */
export async function scheduled(
  controller: ScheduledController,
  env: Bindings,
  ctx: ExecutionContext,
): Promise<void> {
  try {
    const config = loadConfig(env)
    const db = createDb({
      databaseUrl: config.databaseUrl,
      gatewayUrl: config.dbGatewayUrl,
      timeoutMs: config.dbTimeoutMs,
      waitUntil: (promise) => ctx.waitUntil(promise),
    })
    await runPurge(db.http, config, new Date(controller.scheduledTime))
    // Retries outbox messages whose first delivery failed (backoff per message).
    const email = await deliverPendingEmail(db.http, config, new Date())
    if (email.sent + email.failed > 0) {
      log('info', 'email_delivery_completed', { ...email })
    }
    // Key rotation is housekeeping: the request path only reads the key ring.
    for (const rotated of await rotateDueSigningKeys(db, config, new Date(controller.scheduledTime))) {
      log('info', 'signing_key_rotated', { kid: rotated.kid, alg: rotated.alg, retiring: rotated.retiring })
    }
    // After a MASTER_KEY rotation (more than one key listed): one bounded re-seal pass per run.
    if (config.masterKeys.length > 1) {
      await resealUnderNewestKey(db.http, config)
    }
  } catch (error) {
    log('error', 'purge_failed', {
      cron: controller.cron,
      error: errorForLog(error),
    })
    throw error
  }
}
