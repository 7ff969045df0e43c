/**
 * Cheap argon2id for every login and registration of the suites that test pages and flows, not
 * the hash (production: m=19456, t=2). test/auth/password-hash.test.ts, accounts.test.ts and the
 * memory test run the production parameters.
 */
export const TEST_ARGON2 = { ARGON2_MEMORY_KIB: '128', ARGON2_ITERATIONS: '1', ARGON2_PARALLELISM: '1' }
