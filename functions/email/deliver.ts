import type { Executor } from '../../db/client'
import { claimDueEmail, markEmailFailed, markEmailSent, type OutboxRow } from '../../db/queries/email-outbox'
import type { Config } from '../config'
import { log } from '../log'

export const EMAIL_BATCH_SIZE = 25
export const EMAIL_MAX_ATTEMPTS = 8
const EMAIL_LEASE_SECONDS = 120
const WEBHOOK_TIMEOUT_MS = 10_000
/** Backoff after failed attempt n: 1, 2, 4, ... minutes, at most 2 hours. */
const BACKOFF_BASE_SECONDS = 60
const BACKOFF_MAX_SECONDS = 7200

export interface EmailDeliveryReport {
  sent: number
  failed: number
}

export interface DeliverOptions {
  /** Deliver only these messages (right after the request that queued them). */
  ids?: readonly string[]
}

function isLoopbackIssuer(issuer: string): boolean {
  const host = new URL(issuer).hostname
  return host === 'localhost' || host === '127.0.0.1' || host === '[::1]' || host.endsWith('.localhost')
}

async function postToWebhook(url: string, config: Config, message: OutboxRow): Promise<string | undefined> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: message.id,
        from: config.mailFrom,
        to: message.toAddress,
        subject: message.subject,
        text: message.bodyText,
        html: message.bodyHtml,
        template: message.template,
      }),
      signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
    })
    await response.body?.cancel()
    return response.ok ? undefined : `webhook answered HTTP ${response.status}`
  } catch (error) {
    return error instanceof Error ? `${error.name}: ${error.message}` : 'webhook request failed'
  }
}

/**
 * Sends due messages from the outbox: POSTs JSON to MAIL_WEBHOOK_URL, or, without one, logs the
 * message when the issuer is a loopback address (development), so the developer can follow the
 * link. Either way the body, and the token in it, is cleared once handled. Failures are retried
 * with exponential backoff by later runs (the cron calls this after the purge).
 * Round trips: one claim, then one per message.
 */
export async function deliverPendingEmail(
  x: Executor,
  config: Config,
  now: Date,
  options: DeliverOptions = {},
): Promise<EmailDeliveryReport> {
  const claimed = await claimDueEmail(x, {
    now,
    limit: EMAIL_BATCH_SIZE,
    leaseSeconds: EMAIL_LEASE_SECONDS,
    maxAttempts: EMAIL_MAX_ATTEMPTS,
    ...(options.ids === undefined ? {} : { ids: options.ids }),
  })
  const report: EmailDeliveryReport = { sent: 0, failed: 0 }
  for (const message of claimed) {
    let failure: string | undefined
    if (config.mailWebhookUrl !== undefined) {
      failure = await postToWebhook(config.mailWebhookUrl, config, message)
    } else if (isLoopbackIssuer(config.issuer)) {
      // Development only (loopback issuer, no webhook): the message itself is the log line.
      log('info', 'email_logged', {
        id: message.id,
        to: message.toAddress,
        subject: message.subject,
        text: message.bodyText,
      })
    } else {
      failure = 'MAIL_WEBHOOK_URL is not set'
    }
    if (failure === undefined) {
      await markEmailSent(x, message.id, new Date())
      report.sent++
      continue
    }
    const abandon = message.attempts >= EMAIL_MAX_ATTEMPTS
    const delaySeconds = Math.min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (message.attempts - 1))
    await markEmailFailed(x, message.id, new Date(now.getTime() + delaySeconds * 1000), failure, abandon)
    log('warn', 'email_delivery_failed', {
      id: message.id,
      template: message.template,
      attempts: message.attempts,
      abandoned: abandon,
      reason: failure,
    })
    report.failed++
  }
  return report
}
