import { sql } from 'drizzle-orm'
import { createDb, type HttpDb, queryRows } from '../../db/client'
import { fileEnv } from './worker'

/**
 * The database the Worker under test uses, for seeding rows and asserting on what was
 * written. Same driver and gateway as the Worker; the file's own database under
 * useIsolatedDatabase.
 */
export function testDb(): HttpDb {
  return createDb({
    databaseUrl: fileEnv().DATABASE_URL ?? '',
    gatewayUrl: fileEnv().DB_GATEWAY_URL,
    waitUntil: () => {},
  }).http
}

/** A value unique to this test, for emails, names and client ids. */
export function unique(prefix = 't'): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 12)}`
}

/**
 * A database of the suite's own beside the test database (`<name>_<suffix>`), for tests that
 * need one in a state the shared one must never be in (closed to connections, locked, never
 * migrated). `url` is known at once; `create()` makes it if no earlier run did, and is safe
 * when another file or run creates it at the same moment. It needs a Postgres server: the
 * embedded database serves one database whatever the URL names, so callers skip unless
 * `realPostgres`.
 */
export function siblingDatabase(suffix: string): { name: string; url: string; create(): Promise<void> } {
  const base = new URL(fileEnv().DATABASE_URL ?? '')
  const name = `${decodeURIComponent(base.pathname.slice(1))}_${suffix}`
  const url = Object.assign(new URL(base), { pathname: `/${encodeURIComponent(name)}` }).toString()
  return {
    name,
    url,
    async create() {
      const exists = await queryRows(testDb(), sql`select 1 from pg_database where datname = ${name}`)
      if (exists.length > 0) {
        return
      }
      await testDb()
        .execute(sql.raw(`create database "${name.replaceAll('"', '""')}"`))
        .catch((error: unknown) => {
          // Created by someone else in between (42P04 duplicate_database).
          if (!String((error as { code?: string }).code).startsWith('42P04')) {
            throw error
          }
        })
    },
  }
}
