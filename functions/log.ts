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
