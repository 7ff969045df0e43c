import { and, asc, eq, inArray, isNull, lt, lte, type SQL, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { emailOutbox } from '../schema'

export type OutboxRow = typeof emailOutbox.$inferSelect
export type NewOutboxMessage = typeof emailOutbox.$inferInsert

export function insertOutboxStatement(x: Executor, message: NewOutboxMessage) {
  return x.insert(emailOutbox).values(message).returning({ id: emailOutbox.id })
}

export interface ClaimOptions {
  now: Date
  limit: number
  /** How long a claimed message is hidden from other senders while this one tries it. */
  leaseSeconds: number
  maxAttempts: number
  /** Only these messages (delivery right after a request); else any that are due. */
  ids?: readonly string[]
}

/**
 * Claims due, undelivered messages for sending: one atomic statement (`FOR UPDATE SKIP LOCKED`)
 * that counts the attempt and leases the row, so the cron run and a request's own delivery never
 * send the same message twice. One round trip.
 */
export async function claimDueEmail(x: Executor, options: ClaimOptions): Promise<OutboxRow[]> {
  const conditions: SQL[] = [
    isNull(emailOutbox.sentAt),
    lte(emailOutbox.nextAttemptAt, options.now),
    lt(emailOutbox.attempts, options.maxAttempts),
    sql`${emailOutbox.bodyText} is not null`,
  ]
  if (options.ids !== undefined) {
    conditions.push(inArray(emailOutbox.id, [...options.ids]))
  }
  const due = x
    .select({ id: emailOutbox.id })
    .from(emailOutbox)
    .where(and(...conditions))
    .orderBy(asc(emailOutbox.nextAttemptAt))
    .limit(options.limit)
    .for('update', { skipLocked: true })
  return x
    .update(emailOutbox)
    .set({
      attempts: sql`${emailOutbox.attempts} + 1`,
      nextAttemptAt: new Date(options.now.getTime() + options.leaseSeconds * 1000),
    })
    .where(inArray(emailOutbox.id, due))
    .returning()
}

/** Delivered (or logged): the bodies, and with them the raw link token, are cleared. */
export async function markEmailSent(x: Executor, id: string, now: Date): Promise<void> {
  await x
    .update(emailOutbox)
    .set({ sentAt: now, bodyText: null, bodyHtml: null, lastError: null })
    .where(eq(emailOutbox.id, id))
}

/**
 * A failed attempt: retried at `nextAttemptAt`; when `abandon` (attempts exhausted) the bodies
 * are cleared so the token does not linger in a message that will never be sent.
 */
export async function markEmailFailed(
  x: Executor,
  id: string,
  nextAttemptAt: Date,
  error: string,
  abandon: boolean,
): Promise<void> {
  await x
    .update(emailOutbox)
    .set(
      abandon
        ? { nextAttemptAt, lastError: error, bodyText: null, bodyHtml: null }
        : { nextAttemptAt, lastError: error },
    )
    .where(eq(emailOutbox.id, id))
}
