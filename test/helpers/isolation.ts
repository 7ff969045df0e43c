import { inject } from 'vitest'
import type { ISOLATION_SCOPES } from '../setup/global-setup'

/**
 * Scopes whose tests mutate state every file shares (signing keys, a purge or outbox run on
 * the real clock), or flood the database with hundreds of concurrent statements (`bursts`: the
 * local gateway's pool is per database, so a burst queued there cannot push another file's
 * statements past their deadline). Each gets a database of its own from the global setup, so
 * the rest of the suite can run in parallel without seeing those changes. Embedded runs share
 * one database.
 */
export type IsolationScope = (typeof ISOLATION_SCOPES)[number]

/** The DATABASE_URL of the scope's own database. */
export function isolatedDatabaseUrl(scope: IsolationScope): string {
  const url = inject('isolatedDatabaseUrls')[scope]
  if (url === undefined) {
    throw new Error(`no isolated database for scope ${scope}`)
  }
  return url
}
