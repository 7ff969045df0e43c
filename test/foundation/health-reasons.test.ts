import { beforeAll, describe, expect, it } from 'vitest'
import { siblingDatabase } from '../helpers/db'
import { callWith, realPostgres } from '../helpers/worker'

/**
 * Issue 12: `/healthz` gives a reason code for every failure. database_unreachable and
 * config_invalid are tested in failure-modes.test.ts, database_timeout (a check past its own
 * deadline) and signing_key_undecryptable in database-faults.test.ts and
 * security/master-key-change.test.ts; this is the one a database that answers can still cause.
 */
describe.skipIf(!realPostgres)('/healthz against a database that answers but is not ready', () => {
  // A database of this file's own beside the test database, never migrated.
  const unmigrated = siblingDatabase('unmigrated')

  beforeAll(() => unmigrated.create())

  it('names migrations_pending: reachable, degraded, nothing applied', async () => {
    const res = await callWith({ DATABASE_URL: unmigrated.url }, '/healthz')
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toMatchObject({
      status: 'degraded',
      reasons: ['migrations_pending'],
      database: { reachable: true, migration: { applied: null, up_to_date: false } },
      signing_keys: null,
    })
  })
})
