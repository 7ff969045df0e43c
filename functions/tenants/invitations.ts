import type { Context } from 'hono'
import { acceptInvitation, findTenant, type TenantRecord } from '../../db/queries/tenants'
import type { TenantRole } from '../../db/schema/constants'
import { auditRow } from '../audit/record'
import { sha256Hex } from '../crypto/hash'
import type { AppEnv } from '../env'
import { clientIp } from '../middleware/client-ip'

export type AcceptOutcome =
  | { kind: 'accepted'; tenant: TenantRecord; role: TenantRole; alreadyMember: boolean }
  | { kind: 'invalid' }
  | { kind: 'wrong_account' }

/**
 * Accepts the invitation whose mailed token is `token` as `userId` (the JSON API and the HTML
 * page): single use, unexpired, the invited address's account, audited in the same statement.
 */
export async function acceptInvitationAs(
  c: Context<AppEnv>,
  token: string,
  userId: string,
): Promise<AcceptOutcome> {
  const outcome = await acceptInvitation(c.var.db.http, {
    tokenHash: await sha256Hex(token),
    userId,
    now: new Date(),
    audit: auditRow({ type: 'invitation_accepted', actor: `user:${userId}`, userId }, clientIp(c)),
  })
  if (outcome.kind !== 'accepted') {
    return outcome
  }
  const tenant = await findTenant(c.var.db.http, outcome.tenantId)
  // The accepting statement checked the tenant exists; a concurrent delete reads as a dead link.
  return tenant === undefined
    ? { kind: 'invalid' }
    : { kind: 'accepted', tenant, role: outcome.role, alreadyMember: outcome.alreadyMember }
}
