import type { UserRow } from '../../db/queries/users'

/** A user on the wire (DESIGN.md "a user"): never a hash, never the profile internals. */
export interface UserJson {
  id: string
  email: string
  display_name: string | null
  status: UserRow['status']
  email_verified: boolean
  is_admin: boolean
  created_at: string
}

export function toUserJson(user: UserRow): UserJson {
  return {
    id: user.id,
    email: user.email,
    display_name: user.displayName,
    status: user.status,
    email_verified: user.emailVerifiedAt !== null,
    is_admin: user.isAdmin,
    created_at: user.createdAt.toISOString(),
  }
}
