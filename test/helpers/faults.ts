import { sql } from 'drizzle-orm'
import { testDb } from './db'

/** The rows a fault applies to: one API key's (by id) or one OAuth client's (by client_id). */
export type FaultScope = { keyId: string } | { clientId: string }

// Tables whose rows name an API key by `key_id`, or an OAuth client by its text `client_id` or
// by the uuid of its row.
const SCOPED_BY = {
  api_key_usage: 'key',
  api_key_usage_counters: 'key',
  audit_events: 'client_id',
  oauth_client_usage_counters: 'client_row',
} as const

export type FaultTable = keyof typeof SCOPED_BY

/** A value spliced into the trigger's text: ids and client ids only, never anything quoted. */
function literal(value: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(value)) {
    throw new Error(`unexpected id shape: ${value}`)
  }
  return `'${value}'`
}

function condition(table: FaultTable, scope: FaultScope): string {
  const by = SCOPED_BY[table]
  if (by === 'key' && 'keyId' in scope) {
    return `new.key_id = ${literal(scope.keyId)}`
  }
  if (by === 'client_id' && 'clientId' in scope) {
    return `new.client_id = ${literal(scope.clientId)}`
  }
  if (by === 'client_row' && 'clientId' in scope) {
    return `new.client_id = (select id from oauth_clients where client_id = ${literal(scope.clientId)})`
  }
  throw new Error(`${table} rows are not scoped that way`)
}

/**
 * Fault injection between the parts of a statement: while `work` runs, every insert into
 * `table` of this key's or this client's rows fails (a trigger raising 'injected fault'), after
 * whatever the statement wrote before it. Other tests' rows are untouched. The trigger is gone
 * afterwards.
 */
export async function withFailingInserts<T>(
  table: FaultTable,
  scope: FaultScope,
  work: () => Promise<T>,
): Promise<T> {
  const name = `fail_${table}_${crypto.randomUUID().replaceAll('-', '')}`
  const db = testDb()
  await db.execute(
    sql.raw(`create function ${name}() returns trigger language plpgsql as $$
      begin
        if ${condition(table, scope)} then raise exception 'injected fault'; end if;
        return new;
      end $$`),
  )
  await db.execute(
    sql.raw(`create trigger ${name} before insert on ${table} for each row execute function ${name}()`),
  )
  try {
    return await work()
  } finally {
    await db.execute(sql.raw(`drop trigger ${name} on ${table}`))
    await db.execute(sql.raw(`drop function ${name}()`))
  }
}
