import type { Executor } from '../../db/client'
import { claimDueEmail, markEmailFailed, markEmailSent } from '../../db/queries/email-outbox'
import type { Config } from '../config'
import { log } from '../log'
import { outgoingMail, sendMail } from './providers'

export const EMAIL_BATCH_SIZE = 25
export const EMAIL_MAX_ATTEMPTS = 8
const EMAIL_LEASE_SECONDS = 120
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

/**
 * Sends due messages from the outbox through the configured provider (a signed webhook POST,
 * Resend's API) or, for a loopback issuer with MAIL_PROVIDER=log, logs the message so the
 * developer can follow the link. Either way the body, and the token in it, is cleared once handled. Failures are retried
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
    if (config.mail.provider === 'log') {
      // Development only (config refuses `log` for a non-loopback issuer): the message is the log line.
      log('info', 'email_logged', {
        id: message.id,
        to: message.toAddress,
        subject: message.subject,
        text: message.bodyText,
      })
    } else {
      failure = await sendMail(config.mail, outgoingMail(message, config.mailFrom), now)
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
