import type { Context } from 'hono'
import type { NewOutboxMessage } from '../../db/queries/email-outbox'
import type { AppEnv } from '../env'
import { errorForLog, log } from '../log'
import { deliverPendingEmail } from './deliver'
import type { RenderedEmail } from './templates'

/** Delivers just-queued messages after the response; the cron retries whatever fails. */
export function deliverSoon(c: Context<AppEnv>, ids: readonly string[]): void {
  if (ids.length === 0) {
    return
  }
  const work = deliverPendingEmail(c.var.db.http, c.var.config, new Date(), { ids }).catch(
    (error: unknown) => {
      log('error', 'email_delivery_crashed', {
        requestId: c.var.requestId,
        error: errorForLog(error),
      })
    },
  )
  c.executionCtx.waitUntil(work)
}

/** The link a message carries: ISSUER + path + the raw token. */
export function accountLink(issuer: string, path: string, token: string): string {
  return `${issuer}${path}?token=${encodeURIComponent(token)}`
}

/** The outbox row for a rendered message to `to`, due now. */
export function outboxMessage(to: string, message: RenderedEmail, now: Date): NewOutboxMessage {
  return {
    toAddress: to,
    template: message.template,
    subject: message.subject,
    bodyText: message.text,
    bodyHtml: message.html,
    createdAt: now,
    nextAttemptAt: now,
  }
}
