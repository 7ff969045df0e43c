import { sqlState } from '../db/errors'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/**
 * One structured line per event. Callers pass identifiers and counts only: never a token,
 * password, key, secret or connection string.
 */
export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  const line = JSON.stringify({ level, event, time: new Date().toISOString(), ...fields })
  if (level === 'error') {
    console.error(line)
  } else if (level === 'warn') {
    console.warn(line)
  } else {
    console.log(line)
  }
}

const PARAMS_MARKER = '\nparams:'

function describeOne(error: Error): { name: string; message: string } {
  // Drizzle puts the bound parameters in the message ("Failed query: …\nparams: …"); they can be
  // password hashes, raw one-time tokens or email bodies, so only the statement text is kept.
  const at = error.message.indexOf(PARAMS_MARKER)
  return { name: error.name, message: at === -1 ? error.message : error.message.slice(0, at) }
}

/**
 * What a log line may say about a caught error: name, message without bound parameters,
 * SQLSTATE, and the same for its cause. Never the stack, never query parameters.
 */
export function errorForLog(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    return { type: typeof error }
  }
  const cause = error.cause instanceof Error ? describeOne(error.cause) : undefined
  return { ...describeOne(error), sqlState: sqlState(error), cause }
}
