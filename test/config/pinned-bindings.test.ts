import { env } from 'cloudflare:test'
import { describe, expect, inject, it } from 'vitest'

/**
 * Issue 12: with ISSUER in the developer's .dev.vars, 14 tests failed. The suite's Worker is
 * configured from a generated copy of wrangler.toml in a directory with no .dev.vars
 * (test/setup/worker-config.ts), and every binding is pinned in vitest.config.ts. A .dev.vars
 * with other values (e.g. `ISSUER=http://evil.example`, `PROBE=1`) changes nothing here.
 */
describe('the suite ignores the developer .dev.vars', () => {
  const vars = inject('wranglerVars')
  const pinned = new Set([...Object.keys(vars), ...inject('suiteBindings')])

  it('sees no binding the suite did not pin', () => {
    // The pool's own plumbing (__VITEST_POOL_WORKERS_*) is not configuration.
    const unpinned = Object.keys(env).filter(
      (name) => !pinned.has(name) && !name.startsWith('__VITEST_POOL_WORKERS_'),
    )
    expect(unpinned).toEqual([])
  })

  it("sees wrangler.toml's values, ISSUER first", () => {
    expect(vars.ISSUER).toBe('http://127.0.0.1:8787')
    expect((env as Record<string, unknown>).ISSUER).toBe(vars.ISSUER)
    for (const [name, value] of Object.entries(vars)) {
      if (!name.startsWith('ARGON2_')) {
        expect((env as Record<string, unknown>)[name], name).toBe(value)
      }
    }
  })
})
