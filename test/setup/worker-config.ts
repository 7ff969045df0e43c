import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, relative, resolve } from 'node:path'
import { unstable_readConfig } from 'wrangler'

declare module 'vitest' {
  export interface ProvidedContext {
    /** wrangler.toml's [vars], as pinned (test/config/pinned-bindings.test.ts). */
    wranglerVars: Record<string, string>
    /** The other binding names vitest.config.ts sets. */
    suiteBindings: string[]
  }
}

export interface TestWorkerConfig {
  /** A generated wrangler.json in a directory that holds no .dev.vars or .env. */
  configPath: string
  /** wrangler.toml's [vars], for the suite to pin as bindings. */
  vars: Record<string, string>
}

/**
 * The Worker the suite runs, without the developer's local settings (issue 12: an ISSUER in
 * .dev.vars failed 14 tests). Wrangler reads `.dev.vars` (or `.env`) next to the config it is
 * given, so the suite gets a copy of wrangler.toml's Worker settings (entry, compatibility)
 * written under node_modules/.cache, where no such file lives, and pins wrangler.toml's [vars]
 * plus its own secrets as bindings: every binding a test sees is one the suite chose.
 */
export function testWorkerConfig(root: string): TestWorkerConfig {
  const source = unstable_readConfig({ config: resolve(root, 'wrangler.toml') }, { hideWarnings: true })
  const main = source.main
  if (main === undefined) {
    throw new Error('wrangler.toml has no main')
  }
  const configPath = resolve(root, 'node_modules', '.cache', 'portcullis-test', 'wrangler.json')
  mkdirSync(dirname(configPath), { recursive: true })
  writeFileSync(
    configPath,
    `${JSON.stringify(
      {
        name: source.name,
        main: relative(dirname(configPath), resolve(root, main)),
        compatibility_date: source.compatibility_date,
        compatibility_flags: source.compatibility_flags,
      },
      null,
      2,
    )}\n`,
  )
  const vars: Record<string, string> = {}
  for (const [name, value] of Object.entries(source.vars ?? {})) {
    vars[name] = typeof value === 'string' ? value : JSON.stringify(value)
  }
  return { configPath, vars }
}
