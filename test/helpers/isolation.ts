import { inject } from 'vitest'

/**
 * Scopes whose tests mutate state every file shares (signing keys, a purge or outbox run on
 * the real clock). Each gets a database of its own from the global setup, so the rest of the
 * suite can run in parallel without seeing those changes. Embedded runs share one database.
 */
export type IsolationScope = 'keys' | 'routes' | 'purge' | 'reseal'

/** The DATABASE_URL of the scope's own database. */
export function isolatedDatabaseUrl(scope: IsolationScope): string {
  const url = inject('isolatedDatabaseUrls')[scope]
  if (url === undefined) {
    throw new Error(`no isolated database for scope ${scope}`)
  }
  return url
}
