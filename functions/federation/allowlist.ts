import type { AllowlistKind } from '../../db/schema/federation'
import type { FederatedProvider } from './config'
import type { UpstreamIdentity } from './upstream'

const GITHUB_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38})$/i
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i

/**
 * The stored form of an entry's value (lower-case; a GitHub id as digits), or undefined when the
 * value cannot be of that kind. Candidates are folded the same way, so a match is equality.
 */
export function foldAllowlistValue(kind: AllowlistKind, raw: string): string | undefined {
  const value = raw.trim()
  switch (kind) {
    case 'github_id':
      return /^[1-9]\d{0,19}$/.test(value) ? value : undefined
    case 'github_login':
    case 'github_org':
      return GITHUB_NAME.test(value) ? value.toLowerCase() : undefined
    case 'email': {
      const at = value.lastIndexOf('@')
      return at > 0 && value.length <= 254 && DOMAIN.test(value.slice(at + 1))
        ? value.toLowerCase()
        : undefined
    }
    case 'email_domain': {
      const domain = value.replace(/^@/, '')
      return DOMAIN.test(domain) ? domain.toLowerCase() : undefined
    }
  }
}

/** What this identity could match: GitHub id, login and organisations; its verified email and domain. */
export function allowlistCandidates(
  provider: FederatedProvider,
  identity: UpstreamIdentity,
): { kind: AllowlistKind; value: string }[] {
  const candidates: { kind: AllowlistKind; value: string }[] = []
  if (provider.kind === 'github') {
    candidates.push({ kind: 'github_id', value: identity.subject })
    if (identity.username !== undefined) {
      candidates.push({ kind: 'github_login', value: identity.username.toLowerCase() })
    }
    for (const org of identity.orgs) {
      candidates.push({ kind: 'github_org', value: org.toLowerCase() })
    }
  }
  if (identity.email !== undefined) {
    const email = identity.email.toLowerCase()
    candidates.push({ kind: 'email', value: email })
    candidates.push({ kind: 'email_domain', value: email.slice(email.lastIndexOf('@') + 1) })
  }
  return candidates
}
