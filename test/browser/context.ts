import type { Browser } from 'playwright-core'

/** What the browser harness hands every `*.browser.ts` test's exported `run`. */
export interface BrowserContext {
  /** The Worker under `wrangler dev`, e.g. http://localhost:43123 (also its ISSUER). */
  baseUrl: string
  /** Direct postgres:// URL of the database, for seeding with `pg` from Node. */
  databaseUrl: string
  browser: Browser
  adminToken: string
}

export type BrowserTest = (ctx: BrowserContext) => Promise<void>
