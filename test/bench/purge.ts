import pg from 'pg'
import { withClient } from './seed'

/**
 * The purge scenario: a million expired sessions inserted with one `generate_series`
 * statement, then `POST /admin/purge` (the Worker, its HTTP driver, the real batches) called
 * until it reports `done` and no expired session is left. The longest single statement is
 * watched from a separate connection in `pg_stat_activity` (pg_stat_statements is not loaded
 * on a stock server), polled every few milliseconds, so it is exact to the poll interval.
 */

export interface PurgeBenchResult {
  rows: number
  seedSeconds: number
  purgeSeconds: number
  rowsPerSecond: number
  calls: number
  longestStatementMs: number
  pollIntervalMs: number
  left: number
}

const POLL_INTERVAL_MS = 5
const MAX_CALLS = 200

export async function seedExpiredSessions(databaseUrl: string, rows: number): Promise<{ seconds: number }> {
  const started = performance.now()
  await withClient(databaseUrl, async (client) => {
    // Bench rows only: no need to wait for the WAL flush of this session's commits.
    await client.query('set synchronous_commit = off')
    const tenant = await client.query<{ id: string }>('select id from tenants order by created_at limit 1')
    const user = await client.query<{ id: string }>(
      `insert into users (tenant_id, email, password_hash, status)
       values ($1, $2, 'unusable', 'active') returning id`,
      [tenant.rows[0]?.id, `bench-purge-${Date.now()}@bench.example`],
    )
    await client.query(
      `insert into sessions (token_hash, user_id, expires_at, created_at, last_seen_at)
       select md5($2 || g::text), $1, now() - interval '1 day', now() - interval '2 days', now() - interval '2 days'
       from generate_series(1, $3::int) as g`,
      [user.rows[0]?.id, `bench-${Date.now()}-`, rows],
    )
    await client.query('analyze sessions')
  })
  return { seconds: (performance.now() - started) / 1000 }
}

export async function countExpiredSessions(databaseUrl: string): Promise<number> {
  return withClient(databaseUrl, async (client) => {
    const result = await client.query<{ n: number }>(
      'select count(*)::int as n from sessions where expires_at < now()',
    )
    return result.rows[0]?.n ?? 0
  })
}

// Longest `delete` observed running in this database, from a dedicated connection.
function watchLongestDelete(databaseUrl: string): { stop(): Promise<number> } {
  let longest = 0
  let running = true
  const done = (async () => {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    try {
      while (running) {
        const result = await client.query<{ ms: number | null }>(
          `select max(extract(epoch from clock_timestamp() - query_start) * 1000)::float8 as ms
             from pg_stat_activity
            where datname = current_database() and state = 'active' and pid <> pg_backend_pid()
              and query ilike '%delete from%'`,
        )
        longest = Math.max(longest, result.rows[0]?.ms ?? 0)
        await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS))
      }
    } finally {
      await client.end()
    }
  })()
  return {
    async stop() {
      running = false
      await done
      return longest
    },
  }
}

export async function runPurgeBench(
  baseUrl: string,
  adminToken: string,
  databaseUrl: string,
  rows: number,
): Promise<PurgeBenchResult | { na: string }> {
  const probe = await fetch(`${baseUrl}/admin/purge`, { method: 'OPTIONS' })
  await probe.body?.cancel()
  if (probe.status === 404) {
    return { na: 'not implemented' }
  }
  // Start from no expired sessions so the figure is this run's million and nothing else.
  await drainPurge(baseUrl, adminToken)
  const seed = await seedExpiredSessions(databaseUrl, rows)
  const watcher = watchLongestDelete(databaseUrl)
  const started = performance.now()
  let calls = 0
  let failure: string | undefined
  try {
    while (calls < MAX_CALLS) {
      calls++
      const res = await fetch(`${baseUrl}/admin/purge`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}` },
      })
      const body = (await res.json().catch(() => ({}))) as { done?: unknown }
      if (res.status !== 200) {
        failure = `POST /admin/purge answered ${res.status}`
        break
      }
      if (body.done === true) {
        break
      }
    }
  } catch (error) {
    failure = error instanceof Error ? error.message : String(error)
  }
  const purgeSeconds = (performance.now() - started) / 1000
  const longestStatementMs = await watcher.stop()
  if (failure !== undefined) {
    return { na: failure }
  }
  return {
    rows,
    seedSeconds: seed.seconds,
    purgeSeconds,
    rowsPerSecond: rows / purgeSeconds,
    calls,
    longestStatementMs,
    pollIntervalMs: POLL_INTERVAL_MS,
    left: await countExpiredSessions(databaseUrl),
  }
}

async function drainPurge(baseUrl: string, adminToken: string): Promise<void> {
  for (let i = 0; i < MAX_CALLS; i++) {
    const res = await fetch(`${baseUrl}/admin/purge`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}` },
    })
    const body = (await res.json().catch(() => ({}))) as { done?: unknown }
    if (res.status !== 200 || body.done === true) {
      return
    }
  }
}
