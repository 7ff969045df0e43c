import type pg from 'pg'
import type { SqlStatement } from '../../db/local/gateway'
import { withClient } from './seed'

/**
 * The bench's data-scale mode (`--scale`): users, API keys, refresh tokens, revoked access-token
 * jtis and usage (raw rows and the hourly counters) seeded by SQL with generate_series, so the hot
 * paths can be timed before and after and their statements EXPLAINed against the seeded tables.
 */

export interface ScaleCounts {
  users: number
  keys: number
  /** Half refresh tokens, half revoked access-token jtis. */
  tokens: number
  usageRows: number
}

export const FULL_SCALE: ScaleCounts = {
  users: 100_000,
  keys: 100_000,
  tokens: 1_000_000,
  usageRows: 10_000_000,
}

export interface ScaleSeedResult {
  counts: ScaleCounts
  /** Rows the tables hold after seeding (earlier scale runs on the same database are reused). */
  tableRows: Record<string, number>
  seedSeconds: number
  reused: boolean
  /** The seeded key that carries a tenth of the raw usage rows: the one whose month the bench reads. */
  readKeyId: string
  /** Raw usage rows of that key in the month the bench reads. */
  readKeyRows: number
}

// Every seeded row carries this marker so a second run on the same database reuses them.
const MARK = 'bench-scale'
const DAYS = 30

/** The seeded key with a tenth of the usage rows (deterministic, so a reused seed finds it). */
export async function scaleReadKeyId(databaseUrl: string): Promise<string> {
  return withClient(databaseUrl, async (client) => {
    const result = await client.query<{ id: string }>(`select md5('${MARK}-key-1')::uuid::text as id`)
    return result.rows[0]?.id ?? ''
  })
}

interface IndexDefinition {
  name: string
  /** `alter table … add constraint … primary key …` for the primary key, `create index …` otherwise. */
  create: string
  drop: string
}

/**
 * The indexes of `table`, to drop before a bulk insert and build again after it: building an
 * index once over 10M rows takes seconds, maintaining it row by row (a random uuid primary key
 * above all) takes most of an hour here.
 */
async function indexesOf(client: pg.Client, table: string): Promise<IndexDefinition[]> {
  const result = await client.query<{ name: string; def: string; constraint_def: string | null }>(
    `select i.relname as name, pg_get_indexdef(i.oid) as def, pg_get_constraintdef(c.oid) as constraint_def
       from pg_index x
       join pg_class i on i.oid = x.indexrelid
       left join pg_constraint c on c.conindid = x.indexrelid and c.contype in ('p', 'u')
      where x.indrelid = $1::regclass`,
    [table],
  )
  return result.rows.map((row) =>
    row.constraint_def === null
      ? { name: row.name, create: row.def, drop: `drop index "${row.name}"` }
      : {
          name: row.name,
          create: `alter table ${table} add constraint "${row.name}" ${row.constraint_def}`,
          drop: `alter table ${table} drop constraint "${row.name}"`,
        },
  )
}

/**
 * Seeds the counts, spreading usage over the last 30 days: a tenth of the raw rows on one
 * seeded key (the key whose month of usage the bench reads), the rest over the other seeded
 * keys, and the hourly counters built from exactly those raw rows (so counters equal raw rows).
 */
export async function seedScale(
  databaseUrl: string,
  counts: ScaleCounts,
  log: (message: string) => void,
): Promise<ScaleSeedResult> {
  const started = performance.now()
  const readKeyId = await scaleReadKeyId(databaseUrl)
  return withClient(databaseUrl, async (client) => {
    const existing = await client.query<{ n: string }>(
      `select count(*)::text as n from users where email like '${MARK}-%'`,
    )
    const haveBase = Number(existing.rows[0]?.n ?? 0) >= counts.users
    const usage = await client.query<{ n: string }>(
      `select count(*)::text as n from api_key_usage where endpoint like '/bench/%'`,
    )
    const haveUsage = Number(usage.rows[0]?.n ?? 0) >= counts.usageRows
    const counters = await client.query<{ n: string }>(
      `select count(*)::text as n from api_key_usage_counters where endpoint like '/bench/%'`,
    )
    const haveCounters = haveUsage && Number(counters.rows[0]?.n ?? 0) > 0
    const reused = haveBase && haveUsage && haveCounters
    const timed = async (label: string, sql: string, params: unknown[] = []): Promise<void> => {
      const t0 = performance.now()
      const result = await client.query(sql, params)
      log(
        `  scale: ${label}: ${result.rowCount ?? 0} rows in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      )
    }
    // Fills `table` with its indexes dropped, then builds them once (each, even if filling failed).
    const withoutIndexes = async (table: string, fill: () => Promise<void>): Promise<void> => {
      const indexes = await indexesOf(client, table)
      for (const index of indexes) {
        await client.query(index.drop)
      }
      try {
        await fill()
      } finally {
        for (const index of indexes) {
          await timed(`index ${index.name}`, index.create)
        }
      }
    }
    // The seed stands for live data: nothing in it may fall due for the purge that the same run
    // benchmarks on 1M sessions of its own (revoked refresh tokens are kept a day, revoked jtis
    // until expiry). A seed from an earlier run is moved back into that window.
    await timed(
      'keep seeded refresh tokens within the purge grace',
      `update refresh_tokens set revoked_at = now() - interval '1 hour'
        where revoked_at < now() - interval '12 hours'
          and user_id in (select id from users where email like '${MARK}-%')`,
    )
    await timed(
      'keep seeded revoked jtis unexpired',
      `update revoked_access_tokens set expires_at = now() + interval '7 days'
        where jti like '${MARK}-jti-%' and expires_at < now() + interval '1 day'`,
    )
    if (!reused) {
      // Foreign keys are checked by the application's own writes; a bulk seed skips the triggers.
      await client.query(`set session_replication_role = replica`)
      await client.query(`set maintenance_work_mem = '512MB'`)
      // Bench data: a crash mid-seed loses the seed, nothing else.
      await client.query(`set synchronous_commit = off`)
      if (!haveBase) {
        await timed(
          'users',
          `insert into users (id, email, password_hash, status, created_at)
         select md5('${MARK}-user-' || i)::uuid, '${MARK}-' || i || '@bench.example', 'unusable', 'active',
                now() - (i % 1000) * interval '1 hour'
         from generate_series(1, $1::int) as i`,
          [counts.users],
        )
        await timed(
          'api_keys',
          `insert into api_keys (id, key_hash, prefix, last4, name, owner_user_id, tier, created_at)
         select md5('${MARK}-key-' || i)::uuid, encode(sha256(('${MARK}-key-' || i)::bytea), 'hex'),
                'pk_test_' || substr(md5(i::text), 1, 4), substr(md5(i::text), 5, 4), '${MARK} ' || i,
                md5('${MARK}-user-' || (1 + i % $2::int))::uuid, 'enterprise', now() - interval '31 days'
         from generate_series(1, $1::int) as i`,
          [counts.keys, counts.users],
        )
        const refreshRows = Math.floor(counts.tokens / 2)
        await timed(
          'refresh_tokens',
          `insert into refresh_tokens (token_hash, family_id, client_id, user_id, scope, expires_at, revoked_at)
         select encode(sha256(('${MARK}-rt-' || i)::bytea), 'hex'), md5('${MARK}-family-' || (i / 4))::uuid,
                (select id from oauth_clients order by created_at limit 1),
                md5('${MARK}-user-' || (1 + i % $2::int))::uuid, 'openid offline_access',
                now() + interval '30 days', case when i % 4 = 0 then now() - interval '1 hour' end
         from generate_series(1, $1::int) as i`,
          [refreshRows, counts.users],
        )
        await timed(
          'revoked_access_tokens',
          `insert into revoked_access_tokens (jti, expires_at)
         select '${MARK}-jti-' || i, now() + interval '7 days' from generate_series(1, $1::int) as i`,
          [counts.tokens - refreshRows],
        )
      }
      if (!haveUsage) {
        const onReadKey = Math.floor(counts.usageRows / 10)
        // An earlier, smaller usage seed is replaced, not added to.
        await timed('delete earlier usage seed', `delete from api_key_usage where endpoint like '/bench/%'`)
        await withoutIndexes('api_key_usage', async () => {
          // The read key's rows, then the others (key 2 onwards): one pass each.
          await timed(
            'api_key_usage (the read key)',
            `insert into api_key_usage (key_id, endpoint, created_at, success, code)
           select $2::uuid, '/bench/' || (i % 5), now() - (i % ($3::int * 86400)) * interval '1 second',
                  i % 50 <> 0, case when i % 50 = 0 then 'RATE_LIMITED' else 'VALID' end
           from generate_series(1, $1::int) as i`,
            [onReadKey, readKeyId, DAYS],
          )
          await timed(
            'api_key_usage (the other seeded keys)',
            `insert into api_key_usage (key_id, endpoint, created_at, success, code)
           select md5('${MARK}-key-' || (2 + i % ($2::int - 1)))::uuid, '/bench/' || (i % 5),
                  now() - (i % ($3::int * 86400)) * interval '1 second', i % 50 <> 0,
                  case when i % 50 = 0 then 'RATE_LIMITED' else 'VALID' end
           from generate_series(1, $1::int) as i`,
            [counts.usageRows - onReadKey, counts.keys, DAYS],
          )
        })
      }
      // Seeded endpoints ('/bench/0'…'/bench/4') are only ever written here, so after the delete
      // a plain insert cannot meet an existing counter row.
      await timed(
        'delete earlier counters seed',
        `delete from api_key_usage_counters where endpoint like '/bench/%'`,
      )
      await withoutIndexes('api_key_usage_counters', () =>
        timed(
          'api_key_usage_counters (from the raw rows)',
          `insert into api_key_usage_counters (key_id, hour_start, endpoint, success, failure)
           select key_id, date_trunc('hour', created_at), coalesce(endpoint, ''),
                  count(*) filter (where success), count(*) filter (where not success)
           from api_key_usage where endpoint like '/bench/%' group by 1, 2, 3`,
        ),
      )
      await client.query(`set session_replication_role = origin`)
      await timed('analyze', 'analyze')
    }
    const tableRows: Record<string, number> = {}
    for (const table of [
      'users',
      'api_keys',
      'refresh_tokens',
      'revoked_access_tokens',
      'api_key_usage',
      'api_key_usage_counters',
    ]) {
      const result = await client.query<{ n: string }>(`select count(*)::text as n from ${table}`)
      tableRows[table] = Number(result.rows[0]?.n ?? 0)
    }
    const onKey = await client.query<{ n: string }>(
      `select count(*)::text as n from api_key_usage where key_id = $1::uuid and created_at > now() - interval '${DAYS} days'`,
      [readKeyId],
    )
    return {
      counts,
      tableRows,
      seedSeconds: (performance.now() - started) / 1000,
      reused,
      readKeyId,
      readKeyRows: Number(onKey.rows[0]?.n ?? 0),
    }
  })
}

export interface ExplainedStatement {
  query: string
  plan: string[]
  /** Index names the plan uses. */
  indexes: string[]
  /** Tables read by a sequential scan (on a seeded table, a flatness problem). */
  seqScans: string[]
  /** EXPLAIN ANALYZE in a transaction rolled back afterwards: planning and execution time (ms). */
  planningMs?: number
  executionMs?: number
}

/**
 * `EXPLAIN` of each statement with the parameters the Worker sent, then one EXPLAIN ANALYZE run in
 * a transaction rolled back afterwards. A hot statement that calls one of our PL/pgSQL functions
 * (verify: `portcullis_verify_api_key`) shows only a Function Scan at the top, so the statements
 * the function runs are planned by auto_explain during that run and listed after it (where
 * auto_explain cannot be loaded, the top plan is all there is).
 */
export async function explainStatements(
  databaseUrl: string,
  statements: readonly SqlStatement[],
): Promise<ExplainedStatement[]> {
  return withClient(databaseUrl, async (client) => {
    const nested = await watchNestedPlans(client)
    const out: ExplainedStatement[] = []
    for (const statement of statements) {
      try {
        const result = await client.query<{ 'QUERY PLAN': string }>({
          text: `explain (costs off) ${statement.query}`,
          values: statement.params,
        })
        const top = result.rows.map((row) => row['QUERY PLAN'])
        nested.clear()
        const times = await analyzeTimes(client, statement)
        const plan = [...top, ...nested.plans().flatMap((lines) => ['nested statement:', ...lines])]
        const indexes = new Set<string>()
        const seqScans = new Set<string>()
        for (const line of plan) {
          const index = /Index(?: Only)? Scan(?: Backward)? using (\S+)/.exec(line)?.[1]
          if (index !== undefined) {
            indexes.add(index)
          }
          const bitmap = /Bitmap Index Scan on (\S+)/.exec(line)?.[1]
          if (bitmap !== undefined) {
            indexes.add(bitmap)
          }
          const seq = /Seq Scan on (\S+)/.exec(line)?.[1]
          if (seq !== undefined) {
            seqScans.add(seq)
          }
        }
        out.push({ query: statement.query, plan, indexes: [...indexes], seqScans: [...seqScans], ...times })
      } catch (error) {
        out.push({
          query: statement.query,
          plan: [`EXPLAIN failed: ${error instanceof Error ? error.message : String(error)}`],
          indexes: [],
          seqScans: [],
        })
      }
    }
    return out
  })
}

interface JsonPlanNode {
  'Node Type': string
  Operation?: string
  'Relation Name'?: string
  Alias?: string
  'Index Name'?: string
  'Function Name'?: string
  'CTE Name'?: string
  Plans?: JsonPlanNode[]
}

/**
 * Loads auto_explain into this session so that every statement a function runs reports its plan
 * to the client as a NOTICE. Best effort: without the module (or the right to load it) no nested
 * plans are collected.
 */
async function watchNestedPlans(client: pg.Client): Promise<{ clear(): void; plans(): string[][] }> {
  let collected: string[][] = []
  try {
    await client.query(`load 'auto_explain'`)
    await client.query(`set auto_explain.log_min_duration = 0`)
    await client.query(`set auto_explain.log_nested_statements = on`)
    await client.query(`set auto_explain.log_format = json`)
    await client.query(`set auto_explain.log_level = notice`)
    await client.query(`set client_min_messages = notice`)
  } catch {
    return { clear: () => {}, plans: () => [] }
  }
  client.on('notice', (notice: { message?: string | undefined }) => {
    const text = notice.message ?? ''
    const json = text.indexOf('{')
    if (!text.startsWith('duration:') || json === -1) {
      return
    }
    try {
      const parsed = JSON.parse(text.slice(json)) as { 'Query Text'?: string; Plan?: JsonPlanNode }
      // The EXPLAIN ANALYZE itself is the top plan, already shown.
      if (parsed.Plan === undefined || /^\s*explain\b/i.test(parsed['Query Text'] ?? '')) {
        return
      }
      const lines: string[] = []
      renderPlan(parsed.Plan, 0, lines)
      collected.push(lines)
    } catch {
      // Not a plan: ignore.
    }
  })
  return {
    clear: () => {
      collected = []
    },
    plans: () => collected,
  }
}

/** One line per plan node, in EXPLAIN's text shape (`Index Scan using … on …`, `Seq Scan on …`). */
function renderPlan(node: JsonPlanNode, depth: number, out: string[]): void {
  const type = node['Node Type']
  const relation = node['Relation Name']
  const alias = node.Alias !== undefined && node.Alias !== relation ? ` ${node.Alias}` : ''
  let label: string
  if (type === 'ModifyTable') {
    label = `${node.Operation ?? 'Modify'} on ${relation ?? '?'}${alias}`
  } else if (type === 'Bitmap Index Scan') {
    label = `${type} on ${node['Index Name'] ?? '?'}`
  } else if (node['Index Name'] !== undefined) {
    label = `${type} using ${node['Index Name']} on ${relation ?? '?'}${alias}`
  } else if (relation !== undefined) {
    label = `${type} on ${relation}${alias}`
  } else if (node['CTE Name'] !== undefined) {
    label = `${type} on ${node['CTE Name']}`
  } else if (node['Function Name'] !== undefined) {
    label = `${type} on ${node['Function Name']}`
  } else {
    label = type
  }
  out.push(`${'  '.repeat(depth)}${depth === 0 ? '' : '->  '}${label}`)
  for (const child of node.Plans ?? []) {
    renderPlan(child, depth + 1, out)
  }
}

/**
 * Planning and execution time of one run of the statement, in a transaction that is rolled back
 * (a hot statement writes: the charge, the usage row, the rotation must not stay). A function's
 * own statements are planned inside its execution time (the first call on a backend prepares
 * them; the pooled backends behind SQL-over-HTTP then reuse that plan).
 */
async function analyzeTimes(
  client: pg.Client,
  statement: SqlStatement,
): Promise<{ planningMs?: number; executionMs?: number }> {
  await client.query('begin')
  try {
    const result = await client.query<{ 'QUERY PLAN': string }>({
      text: `explain (analyze, costs off, timing off, summary on) ${statement.query}`,
      values: statement.params,
    })
    const lines = result.rows.map((row) => row['QUERY PLAN'])
    const time = (label: string): number | undefined => {
      const found = lines
        .map((line) => new RegExp(`^${label} Time: ([0-9.]+) ms`).exec(line)?.[1])
        .find(Boolean)
      return found === undefined ? undefined : Number(found)
    }
    const planningMs = time('Planning')
    const executionMs = time('Execution')
    return {
      ...(planningMs === undefined ? {} : { planningMs }),
      ...(executionMs === undefined ? {} : { executionMs }),
    }
  } catch {
    return {}
  } finally {
    await client.query('rollback')
  }
}

/** Tables the scale mode fills: a sequential scan of one of these in a hot statement is not flat. */
export const SEEDED_TABLES = new Set([
  'users',
  'api_keys',
  'refresh_tokens',
  'revoked_access_tokens',
  'api_key_usage',
  'api_key_usage_counters',
])
