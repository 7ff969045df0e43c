import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../db/client'
import { PURGE_RULES, type PurgeRule, type PurgeWindow } from './rules'

/** Rows deleted per statement: small enough that no statement holds its locks for long. */
export const PURGE_BATCH_ROWS = 5000
/** Wall-clock budget for one run, well inside a cron Worker's limits. */
export const PURGE_TIME_BUDGET_MS = 20_000

export interface PurgeOptions extends PurgeWindow {
  batchRows?: number
  timeBudgetMs?: number
  /** Milliseconds clock for the budget (tests replace it). */
  clock?: () => number
}

export interface PurgeReport {
  deleted: Record<string, number>
  durationMs: number
  /** False when the time budget ran out with expired rows possibly left for the next run. */
  done: boolean
}

/**
 * Deletes expired rows table by table in batches of `batchRows`, each batch one statement
 * (one round trip) that locks only the rows it deletes and skips rows another run holds, so
 * concurrent runs neither block each other nor count a row twice.
 */
export async function purgeExpired(x: Executor, options: PurgeOptions): Promise<PurgeReport> {
  const batchRows = options.batchRows ?? PURGE_BATCH_ROWS
  const budgetMs = options.timeBudgetMs ?? PURGE_TIME_BUDGET_MS
  const clock = options.clock ?? Date.now
  const started = clock()
  const deleted: Record<string, number> = Object.fromEntries(PURGE_RULES.map((rule) => [rule.table, 0]))
  let done = true
  for (const rule of PURGE_RULES) {
    for (;;) {
      if (clock() - started >= budgetMs) {
        done = false
        break
      }
      const count = await deleteBatch(x, rule, options, batchRows)
      deleted[rule.table] = (deleted[rule.table] ?? 0) + count
      if (count < batchRows) {
        break
      }
    }
    if (!done) {
      break
    }
  }
  return { deleted, durationMs: clock() - started, done }
}

async function deleteBatch(
  x: Executor,
  rule: PurgeRule,
  window: PurgeWindow,
  batchRows: number,
): Promise<number> {
  const table = sql.identifier(rule.table)
  const [row] = await queryRows<{ n: number }>(
    x,
    sql`with doomed as (
          delete from ${table} where ctid = any(array(
            select ctid from ${table} where ${rule.expired(window)}
            limit ${batchRows} for update skip locked))
          returning 1)
        select count(*)::int as n from doomed`,
  )
  return row?.n ?? 0
}
