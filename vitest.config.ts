import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'
import { TEST_ARGON2 } from './test/setup/test-argon2'
import { testWorkerConfig } from './test/setup/worker-config'

// Test-only secrets: fixed so failures are reproducible; never used outside the suite.
const TEST_MASTER_KEY = 'k1:dGVzdC1tYXN0ZXIta2V5LTAwMDAwMDAwMDAwMDAwMDA'
const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdefghijklmnop'
// Anonymous registrations that name no client IP share one bucket, and hundreds of them run in
// parallel files: the suite's limit is out of reach; test/security/oauth-hardening.test.ts sets
// its own low limit (and its own IP) to test the limit itself.
const TEST_LIMITS = { REGISTRATION_MAX_PER_IP: '100000' }

// wrangler.toml's Worker without the developer's .dev.vars: every binding below is pinned here.
const WORKER = testWorkerConfig(import.meta.dirname)
// Names the suite sets on top of wrangler.toml's [vars] (test/config/pinned-bindings.test.ts).
const SUITE_BINDINGS = ['DATABASE_URL', 'DB_GATEWAY_URL', 'TEST_REAL_POSTGRES', 'MASTER_KEY', 'ADMIN_TOKEN']

// Default export: vitest loads this file and reads its default.
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: WORKER.configPath },
      miniflare: {
        bindings: {
          ...WORKER.vars,
          DATABASE_URL: inject('databaseUrl'),
          DB_GATEWAY_URL: inject('gatewayUrl'),
          TEST_REAL_POSTGRES: inject('realPostgres') ? 'true' : 'false',
          MASTER_KEY: TEST_MASTER_KEY,
          ADMIN_TOKEN: TEST_ADMIN_TOKEN,
          ...TEST_ARGON2,
          ...TEST_LIMITS,
        },
      },
    })),
  ],
  test: {
    globalSetup: [
      './test/setup/global-setup.ts',
      './test/setup/fake-mail-api.ts',
      './test/setup/fake-federation.ts',
      './test/setup/fake-outbound.ts',
    ],
    include: ['test/**/*.test.ts'],
    // The Workers pool inlines every dependency, so Vite transformed each of their modules one by
    // one (the MCP SDK and openid-client alone are hundreds). Pre-bundled, each is one file: the
    // suite spent ~30 s of its transform time and ~35 s of its import time less. Every entry point
    // the code imports is listed, so one bundling pass shares each package's internals between
    // them (one copy of hono's HTTPException, of the SDK's UnauthorizedError). The Worker's own
    // resolve conditions (workerd, worker, browser) apply: jose is its webapi build, as deployed.
    deps: {
      optimizer: {
        ssr: {
          enabled: true,
          include: [
            '@modelcontextprotocol/sdk/client/index.js',
            '@modelcontextprotocol/sdk/client/streamableHttp.js',
            '@modelcontextprotocol/sdk/client/auth.js',
            '@modelcontextprotocol/sdk/client/auth-extensions.js',
            '@modelcontextprotocol/sdk/server/mcp.js',
            '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js',
            'openid-client',
            'oauth4webapi',
            'jose',
            'valibot',
            'hono',
            'hono/body-limit',
            'hono/cookie',
            'hono/html',
            'hono/http-exception',
            'hono/router/trie-router',
            'hono/utils/html',
            'hono/utils/http-status',
            'hono/validator',
            'drizzle-orm',
            'drizzle-orm/batch',
            'drizzle-orm/neon-http',
            'drizzle-orm/neon-serverless',
            'drizzle-orm/pg-core',
            '@simplewebauthn/server',
            '@neondatabase/serverless',
          ],
        },
      },
    },
    provide: {
      wranglerVars: WORKER.vars,
      suiteBindings: [...SUITE_BINDINGS, ...Object.keys(TEST_ARGON2), ...Object.keys(TEST_LIMITS)],
    },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Several files at once, as an 8-core laptop would run them: files keep to their own rows,
    // and those that change shared state use a database of their own (test/helpers/isolation.ts).
    // The embedded database is one database serving one statement at a time: there the files
    // that change shared state would change it under each other, so they run one at a time.
    // VITEST_MAX_WORKERS overrides (CI keeps at least 4).
    maxWorkers: Number(process.env.VITEST_MAX_WORKERS ?? (process.env.TEST_DATABASE_URL?.trim() ? 4 : 1)),
    // One workerd isolate per worker, reused file after file: starting one per file cost ~4 s
    // each. Module state that must not cross files is reset by the helpers that set it.
    isolate: false,
  },
})
