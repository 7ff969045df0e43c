import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { TestProject } from 'vitest/node'
import { launchLocalDatabase } from '../../db/local/launch'
import { migrateDatabase } from '../../db/migrate'
import { assertDisposableTestDatabase } from './database-guard'
import { commitWithoutFlush, freshTestDatabase } from './fresh-database'

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string
    gatewayUrl: string
    realPostgres: boolean
    /** Per isolation scope, the URL of a database of its own (the main one when embedded). */
    isolatedDatabaseUrls: Record<string, string>
  }
}

/**
 * Brings up the database for the suite: the real Postgres named by TEST_DATABASE_URL (its
 * schema reset, then migrated), else an embedded one in a temporary directory; then the
 * local gateway the Worker reaches it through. Tests isolate by seeding their own rows.
 *
 * The URL is checked (loopback host, database name containing "test") before any
 * connection is opened. With REQUIRE_REAL_POSTGRES=1 (CI) a missing TEST_DATABASE_URL is an
 * error, so the race and lock tests cannot be skipped there without failing the run.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const realUrl = process.env.TEST_DATABASE_URL?.trim() || undefined
  if (realUrl !== undefined) {
    assertDisposableTestDatabase(realUrl)
  } else if (process.env.REQUIRE_REAL_POSTGRES === '1') {
    throw new Error(
      'REQUIRE_REAL_POSTGRES=1 but TEST_DATABASE_URL is not set: the real-Postgres tests would be skipped',
    )
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'portcullis-test-'))
  if (realUrl !== undefined) {
    await resetSchema(realUrl)
    await commitWithoutFlush(realUrl)
  }
  const database = await launchLocalDatabase({ databaseUrl: realUrl, dataDir })
  const isolated: Record<string, string> = {}
  await Promise.all([
    migrateDatabase(database.databaseUrl),
    ...ISOLATION_SCOPES.map(async (scope) => {
      isolated[scope] = realUrl === undefined ? database.databaseUrl : await isolatedDatabase(realUrl, scope)
    }),
  ])
  project.provide('isolatedDatabaseUrls', isolated)
  project.provide('databaseUrl', database.databaseUrl)
  project.provide('gatewayUrl', database.gateway.url)
  project.provide('realPostgres', !database.embedded)
  if (database.embedded) {
    console.warn(
      '[portcullis] TEST_DATABASE_URL is not set: using the embedded database. ' +
        'Race and lock tests need a real Postgres server and are reported as skipped.',
    )
  }
  return async () => {
    await database.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

/**
 * Tests that change state every other file sees (signing-key rotation, a purge or outbox
 * delivery with the real clock), or that flood the database with hundreds of concurrent
 * statements, run against a database of their own so files can run in parallel.
 * test/helpers/isolation.ts names the scope a file uses.
 */
export const ISOLATION_SCOPES = ['keys', 'routes', 'purge', 'reseal', 'bursts'] as const

async function isolatedDatabase(realUrl: string, scope: string): Promise<string> {
  const url = await freshTestDatabase(realUrl, `iso_${scope}`)
  await commitWithoutFlush(url)
  return url
}

async function resetSchema(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query(
      'drop schema if exists drizzle cascade; drop schema if exists public cascade; create schema public',
    )
  } finally {
    await client.end()
  }
}
