/**
 * Who is calling, as established by `authenticate()`. Handlers read `c.var.principal` and
 * never look at credentials themselves.
 */
export type Principal =
  /** The bootstrap operator: `Authorization: Bearer <ADMIN_TOKEN>`. */
  | { kind: 'admin' }
  /** A signed-in user, through the session cookie or an access token issued to them. */
  | {
      kind: 'user'
      userId: string
      tenantId: string
      isAdmin: boolean
      via: 'session' | 'access_token'
      /** Scopes granted; a session carries every user scope (`apikeys:write`, ...) but `admin`. */
      scopes: ReadonlySet<string>
      sessionId?: string
      /** The OAuth client the access token was issued to. */
      clientId?: string
    }
  /** A machine client holding a client_credentials access token. */
  | { kind: 'client'; clientId: string; tenantId: string; scopes: ReadonlySet<string> }

/** Scopes a browser session holds: everything a user may do to their own account and keys. */
export const SESSION_SCOPES: ReadonlySet<string> = new Set(['openid', 'profile', 'email', 'apikeys:write'])

export function hasScope(principal: Principal, scope: string): boolean {
  return principal.kind === 'admin' || principal.scopes.has(scope)
}

/** Admin rights: the admin token, or an `admin`-scoped access token of an `is_admin` user. */
export function isAdministrator(principal: Principal): boolean {
  return (
    principal.kind === 'admin' ||
    (principal.kind === 'user' &&
      principal.isAdmin &&
      principal.via === 'access_token' &&
      principal.scopes.has('admin'))
  )
}
