import { fileURLToPath } from 'node:url'
import { drizzle } from 'drizzle-orm/node-postgres'
import { migrate } from 'drizzle-orm/node-postgres/migrator'
import pg from 'pg'

export const MIGRATIONS_FOLDER = fileURLToPath(new URL('./migrations', import.meta.url))

/**
 * Applies every committed migration not yet applied (drizzle's journal table makes this
 * idempotent). Runs on Node over a direct Postgres connection: Neon, local or embedded.
 */
export async function migrateDatabase(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    // Several migrators at once (two `npm start`s, parallel CI jobs) must not interleave.
    await client.query('select pg_advisory_lock(7474501)')
    await migrate(drizzle(client), { migrationsFolder: MIGRATIONS_FOLDER })
  } finally {
    await client.query('select pg_advisory_unlock(7474501)').catch(() => {})
    await client.end()
  }
}
