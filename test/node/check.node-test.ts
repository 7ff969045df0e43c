import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'

/**
 * Issue 12: `npm run check -- --env production` as a user runs it before deploying: scripts/check.ts
 * reads a wrangler.toml's [env.production.vars] and the secrets (a --secrets-file here; --remote
 * needs a Cloudflare account), lists every problem at once, prints no value, and exits 1 on a
 * problem. test/config/check.test.ts tests the rules themselves (checkConfig) inside workerd.
 */
const ROOT = resolve(import.meta.dirname, '../..')
const WRANGLER_TOML = readFileSync(join(ROOT, 'wrangler.toml'), 'utf8')
const PLACEHOLDER = 'ISSUER = "https://auth.example.com"'
const MAIL_FROM_PLACEHOLDER = 'MAIL_FROM = "Example <no-reply@auth.example.com>"'
const ROUTES_PLACEHOLDER = '# routes = [{ pattern = "auth.example.com", custom_domain = true }]'

// Values no output may contain: each is a secret or part of one.
const DB_PASSWORD = 'neon-password-zq81'
const SECRETS = {
  DATABASE_URL: `postgres://app:${DB_PASSWORD}@ep-quiet-1-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require`,
  MASTER_KEY: `k1:${Buffer.alloc(32, 7).toString('base64url')}`,
  ADMIN_TOKEN: 'admin-token-zq81-0123456789abcdefghijklmnopqrstuv',
  RESEND_API_KEY: 're_zq81_fake_key',
}

/** `toml` with values of [env.production.vars] replaced: NAME: [current, replacement]. */
function productionVars(toml: string, changes: Record<string, [string, string]>): string {
  const at = toml.indexOf('[env.production.vars]')
  assert.ok(at >= 0, 'wrangler.toml has [env.production.vars]')
  let section = toml.slice(at)
  for (const [name, [current, replacement]] of Object.entries(changes)) {
    const line = `\n${name} = ${current}\n`
    assert.ok(section.includes(line), `[env.production.vars] sets ${name} = ${current}`)
    section = section.replace(line, `\n${name} = ${replacement}\n`)
  }
  return toml.slice(0, at) + section
}

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

describe('npm run check -- --env production', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-check-test-'))
  after(() => rmSync(dir, { recursive: true, force: true }))

  function file(name: string, text: string): string {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  function secretsFile(secrets: Record<string, string>): string {
    return file(
      `secrets-${Object.keys(secrets).length}.vars`,
      Object.entries(secrets)
        .map(([name, value]) => `${name}=${value}`)
        .join('\n'),
    )
  }

  function check(config: string, secrets: string | undefined): Run {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir }
    env.WRANGLER_SEND_METRICS = 'false'
    const result = spawnSync(
      join(ROOT, 'node_modules/.bin/tsx'),
      [
        join(ROOT, 'scripts/check.ts'),
        '--env',
        'production',
        '--config',
        config,
        ...(secrets === undefined ? [] : ['--secrets-file', secrets]),
      ],
      { cwd: ROOT, encoding: 'utf8', env, timeout: 60_000 },
    )
    return { code: result.status, stdout: result.stdout, stderr: result.stderr }
  }

  function assertNoSecret(run: Run): void {
    for (const value of [
      DB_PASSWORD,
      SECRETS.MASTER_KEY.slice(3),
      SECRETS.ADMIN_TOKEN,
      SECRETS.RESEND_API_KEY,
    ]) {
      assert.ok(!run.stdout.includes(value) && !run.stderr.includes(value), `printed a secret: ${value}`)
    }
  }

  it("the repository's [env.production] with every secret lacks only the real issuer, sender and custom domain", () => {
    assert.ok(WRANGLER_TOML.includes(PLACEHOLDER), 'wrangler.toml keeps the placeholder issuer')
    assert.ok(WRANGLER_TOML.includes(MAIL_FROM_PLACEHOLDER), 'wrangler.toml keeps the placeholder sender')
    const run = check(join(ROOT, 'wrangler.toml'), secretsFile(SECRETS))
    assert.ok(
      WRANGLER_TOML.includes(ROUTES_PLACEHOLDER),
      'wrangler.toml keeps the custom domain commented out',
    )
    assert.equal(run.code, 1, run.stdout + run.stderr)
    assert.match(run.stderr, /^3 problems in \[env\.production\] with its secrets:$/m)
    assert.match(run.stderr, /✗ ISSUER is still the example\.com placeholder/)
    assert.match(run.stderr, /✗ MAIL_FROM is still the example\.com placeholder/)
    assert.match(run.stderr, /✗ routes of \[env\.production\] are empty and workers_dev is false/)
    // Production defaults: live keys, token registration, mail required; so no warning either.
    assert.doesNotMatch(run.stderr, /warning/)
    assertNoSecret(run)
  })

  it('passes once the issuer, sender and custom domain are set, with no warning', () => {
    const config = file(
      'good.toml',
      WRANGLER_TOML.replace(PLACEHOLDER, 'ISSUER = "https://auth.zq81.test"')
        .replace(MAIL_FROM_PLACEHOLDER, 'MAIL_FROM = "Zq81 <no-reply@zq81.test>"')
        .replace(ROUTES_PLACEHOLDER, 'routes = [{ pattern = "auth.zq81.test", custom_domain = true }]'),
    )
    const run = check(config, secretsFile(SECRETS))
    assert.equal(run.code, 0, run.stdout + run.stderr)
    assert.equal(run.stdout, '✓ [env.production] with its secrets: no problems\n')
    assert.equal(run.stderr, '')
  })

  it('lists every problem at once, each variable named, no value printed', () => {
    const config = file(
      'bad.toml',
      productionVars(WRANGLER_TOML.replace(PLACEHOLDER, 'ISSUER = "http://auth.zq81.test"'), {
        MAIL_PROVIDER: ['"resend"', '""'],
        ACCESS_TOKEN_TTL: ['"3600"', '"soon"'],
        ARGON2_MEMORY_KIB: ['"19456"', '"262144"'],
      }),
    )
    // DATABASE_URL with its password but not Postgres; MASTER_KEY too short; ADMIN_TOKEN missing.
    const run = check(
      config,
      secretsFile({
        DATABASE_URL: `mysql://app:${DB_PASSWORD}@db.zq81.test/app`,
        MASTER_KEY: 'k1:short-zq81',
      }),
    )
    assert.equal(run.code, 1, run.stdout + run.stderr)
    const problems = run.stderr.split('\n').filter((line) => line.trimStart().startsWith('✗'))
    const named = problems.map((line) => /✗ ([A-Za-z0-9_]+) /.exec(line)?.[1]).sort()
    assert.deepEqual(
      named,
      [
        'ACCESS_TOKEN_TTL',
        'ADMIN_TOKEN',
        'ARGON2_MEMORY_KIB',
        'DATABASE_URL',
        'ISSUER',
        'MAIL_FROM',
        'MAIL_PROVIDER',
        'MASTER_KEY',
        'routes',
      ],
      run.stderr,
    )
    assert.match(run.stderr, new RegExp(`^${problems.length} problems in \\[env\\.production\\]`, 'm'))
    assert.ok(!run.stderr.includes('short-zq81'), run.stderr)
    assert.ok(!run.stderr.includes('soon'), run.stderr)
    assertNoSecret(run)
  })

  it('without secrets, names every secret the production section needs', () => {
    const run = check(join(ROOT, 'wrangler.toml'), undefined)
    assert.equal(run.code, 1, run.stdout + run.stderr)
    for (const name of ['DATABASE_URL', 'MASTER_KEY', 'ADMIN_TOKEN', 'RESEND_API_KEY']) {
      assert.match(run.stderr, new RegExp(`✗ ${name} is required`), run.stderr)
    }
  })
})
