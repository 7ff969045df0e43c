import { migrateDatabase } from './migrate'

// `npm run db:migrate`: applies migrations to DATABASE_URL (Neon or any Postgres).
const databaseUrl = process.env.DATABASE_URL
if (databaseUrl === undefined || databaseUrl === '') {
  console.error(
    'DATABASE_URL is not set. Example: DATABASE_URL=postgres://user:pass@host/db npm run db:migrate',
  )
  process.exit(2)
}
try {
  await migrateDatabase(databaseUrl)
  console.log('migrations applied')
} catch (error) {
  console.error(`migration failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}
