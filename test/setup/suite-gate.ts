import { existsSync } from 'node:fs'

/**
 * `npm test` starts the browser and fault suites while vitest still runs, so their set-up (a
 * fresh database, migrations, wrangler) overlaps it, and holds their measured part back until
 * vitest is done: it names a file in PORTCULLIS_SUITE_GATE and creates it then. Run alone
 * (no variable), a suite goes straight on.
 */
export async function waitForSuiteGate(suite: string): Promise<void> {
  const gate = process.env.PORTCULLIS_SUITE_GATE?.trim()
  if (!gate) {
    return
  }
  const started = Date.now()
  while (!existsSync(gate)) {
    await new Promise((r) => setTimeout(r, 100))
  }
  const waited = Date.now() - started
  if (waited > 500) {
    console.log(`${suite}: set up, then waited ${(waited / 1000).toFixed(1)} s for the suites before it`)
  }
}
