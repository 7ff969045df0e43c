// Words for people on pages (issue 14): times relative to now, scopes as sentences.

const UNITS: readonly [seconds: number, singular: string][] = [
  [365 * 86_400, 'year'],
  [30 * 86_400, 'month'],
  [7 * 86_400, 'week'],
  [86_400, 'day'],
  [3600, 'hour'],
  [60, 'minute'],
]

function amount(seconds: number): string {
  for (const [size, unit] of UNITS) {
    if (seconds >= size) {
      const n = Math.round(seconds / size)
      return n === 1 ? `1 ${unit}` : `${n} ${unit}s`
    }
  }
  return ''
}

/** "in 2 hours", "5 minutes ago", "just now" (under a minute either way). */
export function relativeTime(when: Date, now: Date): string {
  const seconds = Math.round((when.getTime() - now.getTime()) / 1000)
  const size = amount(Math.abs(seconds))
  if (size === '') {
    return 'just now'
  }
  return seconds > 0 ? `in ${size}` : `${size} ago`
}

/** The exact instant, for a `<time datetime>` attribute and its tooltip. */
export function isoTime(when: Date): string {
  return when.toISOString()
}

const SCOPE_TEXT: Readonly<Record<string, string>> = {
  openid: 'Know who you are',
  profile: 'See your name',
  email: 'See your email address',
  offline_access: 'Stay signed in (refresh tokens)',
  'apikeys:write': 'Create and manage your API keys',
  'apikeys:verify': 'Check API keys presented to it',
  'tenant:admin': 'Manage your organisation',
  admin: 'Administer this service',
}

/** A scope as a sentence; unknown (operator-defined) scopes are shown by name. */
export function scopeText(scope: string): string {
  return SCOPE_TEXT[scope] ?? `Use "${scope}"`
}

/** A space-separated scope string as sentences, "Basic access" when empty. */
export function scopeList(scope: string): string[] {
  const scopes = scope.split(/\s+/).filter(Boolean)
  return scopes.length === 0 ? ['Basic access'] : scopes.map(scopeText)
}

/** A refused password in words for a page (the problem's `detail` names API fields). */
export function weakPasswordText(issue: string | undefined): string {
  if (issue === 'too common') {
    return 'That password is one of the most common ones. Choose another.'
  }
  return `Choose a longer password: ${issue ?? 'at least 8 characters'}.`
}
