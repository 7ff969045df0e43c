import { defineConfig } from 'drizzle-kit'

// Default export: drizzle-kit loads this file and reads its default.
export default defineConfig({
  dialect: 'postgresql',
  schema: './db/schema/index.ts',
  out: './db/migrations',
  dbCredentials: { url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
})
