import { sql } from 'drizzle-orm'
import { type Executor, queryRows } from '../client'
import { sqlState } from '../errors'
import journal from '../migrations/meta/_journal.json'

export interface MigrationState {
  /** Tag of the newest migration applied, e.g. `0001_default_tenant`; null when none. */
  applied: string | null
  /** Tag of the newest migration this build ships. */
  expected: string
  upToDate: boolean
}

const UNDEFINED_TABLE = '42P01'

/** One round trip: which of our migrations the database has applied. */
export async function readMigrationState(x: Executor): Promise<MigrationState> {
  const entries = journal.entries
  const expected = entries.at(-1)?.tag ?? 'none'
  let newest: number | null = null
  try {
    const [row] = await queryRows<{ newest: string | null }>(
      x,
      sql`select max(created_at)::text as newest from drizzle.__drizzle_migrations`,
    )
    const value = row?.newest
    newest = value === null || value === undefined ? null : Number(value)
  } catch (error) {
    if (sqlState(error) !== UNDEFINED_TABLE) {
      throw error
    }
  }
  const applied = newest === null ? null : (entries.findLast((e) => e.when <= newest)?.tag ?? null)
  return { applied, expected, upToDate: applied === expected }
}
