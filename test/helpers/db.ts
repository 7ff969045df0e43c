import { createDb, type HttpDb } from '../../db/client'
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
