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
