/**
 * The suite drops and recreates the schema of TEST_DATABASE_URL. Before any statement is
 * sent, the URL must name a Postgres on this machine and a database that says it is
 * disposable: its name contains "test" (e.g. `test`, `portcullis_test`, `test_ci`).
 * Pure (no I/O), so it runs before a connection is even opened and can be tested anywhere.
 */

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', '[::1]', 'localhost'])
const TEST_DATABASE_NAME = /test/i

export class UnsafeTestDatabaseError extends Error {
  override name = 'UnsafeTestDatabaseError'
}

/** Throws UnsafeTestDatabaseError unless `databaseUrl` is a loopback Postgres test database. */
export function assertDisposableTestDatabase(databaseUrl: string): void {
  let url: URL
  try {
    url = new URL(databaseUrl)
  } catch {
    throw new UnsafeTestDatabaseError(
      'TEST_DATABASE_URL is not a valid postgres:// URL; refusing to reset it',
    )
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new UnsafeTestDatabaseError('TEST_DATABASE_URL must be a postgres:// URL; refusing to reset it')
  }
  // libpq lets `?host=` override the authority (including a Unix socket path): check every host.
  const hosts = [url.hostname, ...url.searchParams.getAll('host'), ...url.searchParams.getAll('hostaddr')]
  for (const host of hosts) {
    if (!LOOPBACK_HOSTS.has(host.toLowerCase())) {
      throw new UnsafeTestDatabaseError(
        `TEST_DATABASE_URL host "${host || '(none)'}" is not loopback (127.0.0.1, ::1, localhost); ` +
          'the suite drops the schema of that database, so it only runs against a local one',
      )
    }
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''))
  const named = url.searchParams.get('dbname') ?? database
  if (
    named === '' ||
    !TEST_DATABASE_NAME.test(named) ||
    (database !== '' && !TEST_DATABASE_NAME.test(database))
  ) {
    throw new UnsafeTestDatabaseError(
      `TEST_DATABASE_URL database "${named}" is not marked as a test database (its name must contain "test"); ` +
        'the suite drops its schema, so it refuses any other database',
    )
  }
}
