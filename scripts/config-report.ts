import { existsSync, readFileSync } from 'node:fs'
import { unstable_readConfig } from 'wrangler'
import { ConfigError, type ConfigReport, checkConfig } from '../functions/config'

/** The secrets Portcullis reads (never in wrangler.toml): `wrangler secret put NAME --env …`. */
export const SECRET_NAMES = [
  'DATABASE_URL',
  'MASTER_KEY',
  'ADMIN_TOKEN',
  'MAIL_WEBHOOK_SECRET',
  'RESEND_API_KEY',
] as const

/**
 * Stand-ins for secrets known only by name (`wrangler secret list`): well-formed, so the check
 * reports what the rest of the configuration lacks. Their real values are Cloudflare's to keep.
 */
const PRESENT_SECRET_STANDINS: Record<(typeof SECRET_NAMES)[number], string> = {
  DATABASE_URL: 'postgres://secret@set.in.cloudflare/db',
  MASTER_KEY: `k1:${'A'.repeat(43)}`,
  ADMIN_TOKEN: 'x'.repeat(43),
  MAIL_WEBHOOK_SECRET: 'x'.repeat(43),
  RESEND_API_KEY: 're_set_in_cloudflare',
}

/** KEY=VALUE lines as wrangler reads .dev.vars (dotenv: comments, optional quotes). */
export function parseEnvFile(text: string): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (match === null || line.trimStart().startsWith('#')) {
      continue
    }
    const [, name = '', raw = ''] = match
    const quoted = /^(['"`])(.*)\1$/.exec(raw)
    vars[name] = quoted ? (quoted[2] ?? '') : raw.replace(/\s+#.*$/, '')
  }
  return vars
}

export function readDevVars(path: string): Record<string, string> {
  return existsSync(path) ? parseEnvFile(readFileSync(path, 'utf8')) : {}
}

/** `[vars]` of wrangler.toml, or of `[env.NAME.vars]` (wrangler does not inherit vars into an env). */
export function wranglerVars(configPath: string, environment?: string): Record<string, string> {
  const config = unstable_readConfig({ config: configPath, env: environment }, { hideWarnings: true })
  if (environment !== undefined && !readFileSync(configPath, 'utf8').includes(`[env.${environment}`)) {
    throw new Error(`${configPath} has no [env.${environment}] section`)
  }
  const vars: Record<string, string> = {}
  for (const [name, value] of Object.entries(config.vars ?? {})) {
    vars[name] = typeof value === 'string' ? value : JSON.stringify(value)
  }
  return vars
}

/**
 * What the environment's deployment itself lacks, beyond its variables: with `workers_dev =
 * false` and no route or custom domain, `wrangler deploy` succeeds and the Worker answers at no
 * address at all.
 */
export function deploymentProblems(configPath: string, environment: string): ConfigError[] {
  const config = unstable_readConfig({ config: configPath, env: environment }, { hideWarnings: true })
  const routes = (config.routes?.length ?? 0) + (config.route === undefined ? 0 : 1)
  if (config.workers_dev === false && routes === 0) {
    return [
      new ConfigError(
        'routes',
        `of [env.${environment}] are empty and workers_dev is false: the Worker would have no address (set your custom domain)`,
      ),
    ]
  }
  return []
}

/** Bindings for the check when some secrets are known only to exist (listed by Cloudflare). */
export function withPresentSecrets(
  vars: Record<string, string>,
  present: readonly string[],
): Record<string, string> {
  const merged = { ...vars }
  for (const name of present) {
    const standin = PRESENT_SECRET_STANDINS[name as (typeof SECRET_NAMES)[number]]
    if (standin !== undefined && merged[name] === undefined) {
      merged[name] = standin
    }
  }
  return merged
}

export function reportConfig(bindings: Record<string, string>): ConfigReport {
  return checkConfig(bindings)
}

/** Every problem and warning, one a line, for a terminal. */
export function formatConfigReport(report: ConfigReport, subject: string): string {
  const lines: string[] = []
  if (report.problems.length > 0) {
    lines.push(`${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${subject}:`)
    lines.push(...report.problems.map((p) => `    ✗ ${p.message}`))
  }
  if (report.warnings.length > 0) {
    lines.push(`${report.warnings.length} warning${report.warnings.length === 1 ? '' : 's'}:`)
    lines.push(...report.warnings.map((w) => `    ! ${w.message}`))
  }
  return lines.join('\n')
}
