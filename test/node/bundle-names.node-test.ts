import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { bundleWorker } from '../bench/runtimes'

/**
 * wrangler.toml sets `keep_names = false` (esbuild's name-keeping wrapper cost every request
 * CPU). Without it a class's `name` is the identifier esbuild binds it to, and esbuild renames
 * an identifier that collides with another (`Hono3`, `BitString2`). Code that compares a class
 * name against a string would then silently stop matching. This builds the Worker exactly as
 * `wrangler deploy` does and checks every such comparison against what the bundle binds.
 */
describe('the deployed bundle without keep_names', () => {
  let outdir = ''
  let bundle = ''

  before(async () => {
    outdir = await mkdtemp(join(tmpdir(), 'portcullis-bundle-names-'))
    const files = await bundleWorker('wrangler.toml', outdir)
    const main = files.find((name) => name.endsWith('.js'))
    assert.ok(main, `wrangler emitted a JavaScript bundle: ${files.join(', ')}`)
    bundle = await readFile(join(outdir, main), 'utf8')
  })

  after(async () => {
    await rm(outdir, { recursive: true, force: true })
  })

  it('has no name-keeping wrapper left', () => {
    assert.ok(bundle.length > 100_000, 'the bundle is the whole Worker')
    assert.doesNotMatch(bundle, /\b__name\(/)
  })

  it('binds every class whose name the code compares under that very name', () => {
    const compared = new Set(
      [...bundle.matchAll(/\.constructor\.name\s*[!=]==\s*["']([A-Za-z_$][\w$]*)["']/g)].map(
        (m) => m[1] ?? '',
      ),
    )
    // Today: drizzle's plain-object check ("Object", a built-in) and asn1js's "Sequence" (passkeys).
    assert.ok(compared.has('Sequence'), `found the comparisons: ${[...compared].join(', ')}`)
    for (const name of compared) {
      if (name in globalThis) {
        continue
      }
      const bound = new RegExp(
        `(?:\\bvar|\\blet|\\bconst)\\s+${name}\\s*=\\s*class\\b|\\bclass\\s+${name}\\b`,
      )
      assert.match(bundle, bound, `a class compared by name as "${name}" is bound under that name`)
    }
  })

  it('names our own errors whatever esbuild binds them to', () => {
    for (const name of ['ProblemError', 'OAuthError', 'DatabaseUnavailableError', 'ConfigError']) {
      assert.ok(bundle.includes(`name = "${name}"`), `${name} states its name`)
    }
  })
})
