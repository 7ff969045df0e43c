import { cloudflareTest } from '@cloudflare/vitest-plugin'
import { defineConfig } from 'vitest/config'

// Test-only secrets: fixed so failures are reproducible; never used outside the suite.
const TEST_MASTER_KEY = 'k1:dGVzdC1tYXN0ZXIta2V5LTAwMDAwMDAwMDAwMDAwMDA'
const TEST_ADMIN_TOKEN = 'test-admin-token-0123456789abcdefghijklmnop'

// Default export: vitest loads this file and reads its default.
export default defineConfig({
  plugins: [
    cloudflareTest(({ inject }) => ({
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          DATABASE_URL: inject('databaseUrl'),
          DB_GATEWAY_URL: inject('gatewayUrl'),
          TEST_REAL_POSTGRES: inject('realPostgres') ? 'true' : 'false',
          MASTER_KEY: TEST_MASTER_KEY,
          ADMIN_TOKEN: TEST_ADMIN_TOKEN,
        },
      },
    })),
  ],
  test: {
    globalSetup: ['./test/setup/global-setup.ts', './test/setup/fake-mail-api.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
})
