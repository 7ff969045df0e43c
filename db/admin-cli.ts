import { parseArgs } from 'node:util'
import pg from 'pg'

// `npm run admin:create -- --email you@example.com`: makes an existing account a platform admin
// (users.is_admin), writing `user_promoted` (actor `system`) in the same statement. The first
// human admin has to come from somewhere: this is the one step that needs DATABASE_URL.
// `--revoke` takes the right away. A database not on this machine needs `--remote`, so a shell
// still pointing at production is not changed by accident.

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', '[::1]', 'localhost'])
const DEFAULT_TENANT_SLUG = 'default'

const USAGE =
  'usage: DATABASE_URL=postgres://… npm run admin:create -- --email <address> [--tenant <slug>] [--revoke] [--remote]'

function fail(message: string, code = 2): never {
  console.error(message)
  process.exit(code)
}

let args: ReturnType<typeof parse>
function parse() {
  return parseArgs({
    options: {
      email: { type: 'string' },
      tenant: { type: 'string', default: DEFAULT_TENANT_SLUG },
      revoke: { type: 'boolean', default: false },
      remote: { type: 'boolean', default: false },
    },
    strict: true,
  })
}
try {
  args = parse()
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`)
}
const { email, tenant, revoke, remote } = args.values
if (email === undefined || email.trim() === '') {
  fail(USAGE)
}
const databaseUrl = process.env.DATABASE_URL
if (databaseUrl === undefined || databaseUrl === '') {
  fail(`DATABASE_URL is not set.\n${USAGE}`)
}
let host: string
try {
  host = new URL(databaseUrl).hostname.toLowerCase()
} catch {
  fail('DATABASE_URL is not a valid postgres:// URL')
}
if (!LOOPBACK_HOSTS.has(host) && !remote) {
  fail(`DATABASE_URL points at ${host}, not this machine; add --remote to change that database`)
}

const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 10_000 })
try {
  await client.connect()
  // One statement: the flag and its audit row commit together (the same email fold as sign-in).
  const result = await client.query<{ id: string; email: string; changed: number }>(
    `with target as (
       select u.id, u.email, u.tenant_id, u.is_admin from users u join tenants t on t.id = u.tenant_id
       where t.slug = $2 and lower(u.email) = lower($1)),
     upd as (update users set is_admin = $3, updated_at = now()
             where id = (select id from target) and is_admin <> $3 returning id, tenant_id),
     a as (insert into audit_events (type, actor, user_id, tenant_id, metadata)
           select $4, 'system', id, tenant_id, jsonb_build_object('via', 'admin:create') from upd)
     select id::text, email, (select count(*) from upd)::int as changed from target`,
    [email.trim(), tenant, !revoke, revoke ? 'user_demoted' : 'user_promoted'],
  )
  const row = result.rows[0]
  if (row === undefined) {
    fail(`no account with the email ${email} in tenant ${tenant}; sign up first (POST /auth/register)`, 1)
  }
  const state = revoke ? 'no longer a platform admin' : 'a platform admin'
  console.log(`${row.email} (${row.id}) is ${state}${row.changed === 0 ? ' (unchanged)' : ''}`)
} catch (error) {
  fail(`admin:create failed: ${error instanceof Error ? error.message : String(error)}`, 1)
} finally {
  await client.end().catch(() => {})
}
