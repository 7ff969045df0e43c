import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import {
  deploymentProblems,
  formatConfigReport,
  readDevVars,
  reportConfig,
  SECRET_NAMES,
  withPresentSecrets,
  wranglerVars,
} from './config-report'

/**
 * `npm run check [-- --env production] [--secrets-file FILE] [--remote] [--config PATH]`: the
 * configuration a deploy (or `npm start`) would run with, checked all at once. Without --env it is
 * the local one (wrangler.toml's [vars] and .dev.vars). With --env it is [env.NAME.vars] plus the
 * secrets: values from --secrets-file or this shell's environment, or with --remote only the names
 * Cloudflare holds (`wrangler secret list`). Prints every problem and exits 1 if there is one.
 * Values are never printed.
 */
const ROOT = resolve(import.meta.dirname, '..')

function remoteSecretNames(configPath: string, environment: string | undefined): string[] {
  const result = spawnSync(
    resolve(ROOT, 'node_modules', '.bin', 'wrangler'),
    ['secret', 'list', '--format', 'json', '-c', configPath, ...(environment ? ['--env', environment] : [])],
    { encoding: 'utf8', env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } },
  )
  if (result.status !== 0) {
    throw new Error(`wrangler secret list failed (are you logged in? npx wrangler login):\n${result.stderr}`)
  }
  return (JSON.parse(result.stdout) as { name: string }[]).map((s) => s.name)
}

function main(): number {
  const { values } = parseArgs({
    options: {
      env: { type: 'string' },
      config: { type: 'string', default: resolve(ROOT, 'wrangler.toml') },
      'secrets-file': { type: 'string' },
      remote: { type: 'boolean', default: false },
    },
  })
  const configPath = resolve(values.config)
  const environment = values.env
  const vars = wranglerVars(configPath, environment)
  let bindings: Record<string, string>
  let subject: string
  if (environment === undefined) {
    bindings = { ...vars, ...readDevVars(resolve(ROOT, '.dev.vars')) }
    // npm start supplies the database itself; the local check is about everything else.
    bindings.DATABASE_URL ??= 'postgres://postgres@127.0.0.1:5432/postgres'
    subject = 'the local configuration (wrangler.toml [vars] + .dev.vars)'
  } else {
    const secrets: Record<string, string> = {}
    for (const name of SECRET_NAMES) {
      const value = process.env[name]
      if (value !== undefined && value !== '') {
        secrets[name] = value
      }
    }
    Object.assign(secrets, values['secrets-file'] ? readDevVars(resolve(values['secrets-file'])) : {})
    const present = values.remote ? remoteSecretNames(configPath, environment) : []
    bindings = withPresentSecrets({ ...vars, ...secrets }, present)
    subject = `[env.${environment}] with its secrets`
  }
  const report = reportConfig(bindings)
  if (environment !== undefined) {
    report.problems.push(...deploymentProblems(configPath, environment))
  }
  const text = formatConfigReport(report, subject)
  if (report.problems.length === 0) {
    process.stdout.write(`✓ ${subject}: no problems${text === '' ? '' : `\n${text}`}\n`)
    return 0
  }
  process.stderr.write(`${text}\n`)
  return 1
}

try {
  process.exitCode = main()
} catch (error) {
  process.stderr.write(`npm run check: ${error instanceof Error ? error.message : String(error)}\n`)
  process.exitCode = 2
}
