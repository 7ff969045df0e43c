import pg from 'pg'
import { migrateDatabase } from '../../db/migrate'
import { assertDisposableTestDatabase } from './database-guard'

/**
 * Drops and recreates `<test db>_<suffix>` next to the suite's database (its name still says
 * "test", and the guard checks it), then migrates it: a database of its own for a run that must
 * not share state with the rest (isolated vitest scopes, the browser harness, the fault suite).
 */
export async function freshTestDatabase(mainUrl: string, suffix: string): Promise<string> {
  assertDisposableTestDatabase(mainUrl)
  const url = new URL(mainUrl)
  const name = `${decodeURIComponent(url.pathname.slice(1))}_${suffix}`
  url.pathname = `/${encodeURIComponent(name)}`
  const freshUrl = url.toString()
  assertDisposableTestDatabase(freshUrl)
  const client = new pg.Client({ connectionString: mainUrl })
  await client.connect()
  try {
    await client.query(`drop database if exists "${name}" with (force)`)
    await client.query(`create database "${name}"`)
  } finally {
    await client.end()
  }
  await migrateDatabase(freshUrl)
  return freshUrl
}

/**
 * Lets the database's commits return before their WAL flush (`synchronous_commit = off`, for
 * new sessions). Every commit stays atomic and visible at once, and a statement that fails
 * still leaves nothing; only a crash of the Postgres server could lose the last commits, and no
 * test crashes it. The suite waited ~11 s of its ~80 s for flushes on this disk. The fault suite
 * does not use this: it keeps production's durability while it breaks things.
 */
export async function commitWithoutFlush(databaseUrl: string): Promise<void> {
  assertDisposableTestDatabase(databaseUrl)
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1))
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query(`alter database "${name.replaceAll('"', '""')}" set synchronous_commit = off`)
  } finally {
    await client.end()
  }
}
