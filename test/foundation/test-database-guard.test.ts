import { describe, expect, it } from 'vitest'
import { assertDisposableTestDatabase, UnsafeTestDatabaseError } from '../setup/database-guard'

// global-setup.ts calls this before it opens a connection: a refusal here means no statement
// (least of all `drop schema public cascade`) ever reaches the named server.
describe('the test-database guard refuses before any statement', () => {
  it.each([
    ['a remote host', 'postgres://user@db.example.com/x'],
    ['a remote host whose database is named test', 'postgres://user:pw@db.example.com:5432/test'],
    ['a Neon URL', 'postgresql://app:secret@ep-cool-1234.eu-central-1.aws.neon.tech/neondb?sslmode=require'],
    ['a loopback-looking subdomain', 'postgres://postgres@127.0.0.1.example.com/test'],
    ['a private-network address', 'postgres://postgres@10.0.0.5/test'],
    ['a loopback authority overridden by ?host=', 'postgres://postgres@127.0.0.1/test?host=db.example.com'],
    ['a Unix socket via ?host=', 'postgres://postgres@localhost/test?host=/var/run/postgresql'],
    ['a loopback database not named as a test one', 'postgres://postgres@127.0.0.1:5432/portcullis'],
    ['the default database', 'postgres://postgres@127.0.0.1:5432/postgres'],
    ['no database at all', 'postgres://postgres@127.0.0.1:5432'],
    ['a loopback URL whose ?dbname= is not a test one', 'postgres://postgres@127.0.0.1/test?dbname=prod'],
    ['something that is not a URL', 'host=127.0.0.1 dbname=test'],
    ['another scheme', 'mysql://root@127.0.0.1/test'],
  ])('refuses %s', (_what, url) => {
    expect(() => assertDisposableTestDatabase(url)).toThrow(UnsafeTestDatabaseError)
  })

  it('names the host but never echoes credentials', () => {
    const url = 'postgres://app:hunter2-secret@db.example.com/x'
    expect(() => assertDisposableTestDatabase(url)).toThrow(/db\.example\.com/)
    try {
      assertDisposableTestDatabase(url)
    } catch (error) {
      expect(String(error)).not.toContain('hunter2')
    }
  })

  it.each([
    'postgres://postgres@127.0.0.1:5432/test',
    'postgres://postgres@127.0.0.1:5432/test_h6',
    'postgresql://postgres@localhost/portcullis_test',
    'postgres://postgres@[::1]:5432/TEST_ci',
  ])('accepts the local test database %s', (url) => {
    expect(() => assertDisposableTestDatabase(url)).not.toThrow()
  })
})
