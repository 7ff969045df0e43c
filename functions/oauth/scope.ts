import { OAuthError } from '../errors/oauth'

export const MAX_SCOPE_LENGTH = 1000

/** RFC 6749 §3.3 scope tokens, deduplicated, in request order. */
export function parseScope(text: string | undefined): string[] {
  if (text === undefined) {
    return []
  }
  if (text.length > MAX_SCOPE_LENGTH) {
    throw new OAuthError('invalid_scope', { description: 'scope is too long' })
  }
  const scopes = text.split(' ').filter(Boolean)
  if (scopes.some((s) => !/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))) {
    throw new OAuthError('invalid_scope', { description: 'scope has an invalid token' })
  }
  return [...new Set(scopes)]
}

/**
 * The scope to grant: what was requested (or, when nothing was, everything the client is
 * registered for) — refused with `invalid_scope` when it asks beyond the client's registration
 * and `extra` (the scopes of the resource server the request names, issue 11: asking later for
 * more of them is a step-up through consent, not a refusal).
 */
export function grantableScope(
  requested: string | undefined,
  registered: string,
  exclude: readonly string[] = [],
  extra: readonly string[] = [],
): string[] {
  const allowed = [...registered.split(' ').filter(Boolean), ...extra]
  const asked = requested === undefined ? allowed.filter((s) => !exclude.includes(s)) : parseScope(requested)
  const beyond = asked.find((s) => !allowed.includes(s))
  if (beyond !== undefined) {
    throw new OAuthError('invalid_scope', { description: `${beyond} is not allowed for this client` })
  }
  return asked
}

/** RFC 8707 §2: an absolute URI without a fragment. */
export function parseResource(resource: string | undefined): string | null {
  if (resource === undefined) {
    return null
  }
  if (resource.length > 2000 || !URL.canParse(resource) || resource.includes('#')) {
    throw new OAuthError('invalid_target', {
      description: 'resource must be an absolute URI without a fragment',
    })
  }
  return resource
}
