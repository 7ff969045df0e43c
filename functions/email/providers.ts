import type { OutboxRow } from '../../db/queries/email-outbox'
import type { MailConfig } from '../config'
import { hmacSha256Hex } from '../crypto/hash'

/** Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` on webhook POSTs. */
export const MAIL_SIGNATURE_HEADER = 'Portcullis-Signature'
const MAIL_REQUEST_TIMEOUT_MS = 10_000

/** The JSON body POSTed to MAIL_WEBHOOK_URL (documented in the README, "Mail"). */
export interface MailWebhookPayload {
  /** The outbox id: the same message retried carries the same id (deduplicate on it). */
  id: string
  template: string
  from: string
  to: string
  subject: string
  text: string
  html: string
}

/** A message to send: exactly what the webhook provider POSTs (resend gets a subset). */
export type OutgoingMail = MailWebhookPayload

/** The outbox row as a message to send (the body columns are cleared once sent). */
export function outgoingMail(message: OutboxRow, from: string): OutgoingMail {
  return {
    id: message.id,
    template: message.template,
    from,
    to: message.toAddress,
    subject: message.subject,
    text: message.bodyText ?? '',
    html: message.bodyHtml ?? '',
  }
}

/**
 * The signature header for `body` at `timestampSeconds`, Stripe-style, so a receiver can
 * reject replays by age: `t=1767225600,v1=5f0c…`.
 */
export async function signMailWebhook(
  secret: string,
  body: string,
  timestampSeconds: number,
): Promise<string> {
  return `t=${timestampSeconds},v1=${await hmacSha256Hex(secret, `${timestampSeconds}.${body}`)}`
}

/**
 * Hands one message to the configured provider. Returns undefined when it was accepted, else a
 * reason for the log (never a secret). One outbound request with a deadline; none for `log`.
 */
export async function sendMail(
  mail: MailConfig,
  message: OutgoingMail,
  now: Date,
): Promise<string | undefined> {
  switch (mail.provider) {
    case 'webhook': {
      const body = JSON.stringify(message)
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (mail.secret !== undefined) {
        headers[MAIL_SIGNATURE_HEADER] = await signMailWebhook(
          mail.secret,
          body,
          Math.floor(now.getTime() / 1000),
        )
      }
      return post('webhook', mail.url, headers, body)
    }
    case 'resend':
      // https://resend.com/docs/api-reference/emails/send-email; the idempotency key makes a
      // retry after a lost answer a no-op on their side.
      return post(
        'resend',
        `${mail.baseUrl}/emails`,
        {
          'content-type': 'application/json',
          authorization: `Bearer ${mail.apiKey}`,
          'idempotency-key': message.id,
        },
        JSON.stringify({
          from: message.from,
          to: [message.to],
          subject: message.subject,
          text: message.text,
          html: message.html,
        }),
      )
    case 'log':
      return undefined
  }
}

async function post(
  provider: string,
  url: string,
  headers: Record<string, string>,
  body: string,
): Promise<string | undefined> {
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers,
      body,
      signal: AbortSignal.timeout(MAIL_REQUEST_TIMEOUT_MS),
    })
    await response.body?.cancel()
    return response.ok ? undefined : `${provider} answered HTTP ${response.status}`
  } catch (error) {
    return error instanceof Error
      ? `${provider}: ${error.name}: ${error.message}`
      : `${provider} request failed`
  }
}
