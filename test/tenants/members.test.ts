import { sql } from 'drizzle-orm'
import { describe, expect, inject, it } from 'vitest'
import { queryRows } from '../../db/client'
import { sha256Hex } from '../../functions/crypto/hash'
import { testDb } from '../helpers/db'
import { seedUser } from '../helpers/oauth'
import { until } from '../helpers/poll'
import { call, callWith, describeResponse, realPostgres } from '../helpers/worker'
import { addMember, jsonRequest, rolesOf, seedTenant } from './fixtures'

const fakeMailUrl = inject('fakeMailUrl')
const MAIL = {
  MAIL_PROVIDER: 'webhook',
  MAIL_WEBHOOK_URL: `${fakeMailUrl}/webhook`,
  MAIL_WEBHOOK_SECRET: 'h9-invitation-test-secret-0123456789abcdef',
}

const setRole = (tenantId: string, userId: string, role: unknown, cookie: string) =>
  call(`/tenants/${tenantId}/members/${userId}`, jsonRequest('PATCH', { role }, cookie))
const remove = (tenantId: string, userId: string, cookie: string) =>
  call(`/tenants/${tenantId}/members/${userId}`, { method: 'DELETE', headers: { cookie } })
const invite = (tenantId: string, body: unknown, cookie: string) =>
  callWith(MAIL, `/tenants/${tenantId}/invitations`, jsonRequest('POST', body, cookie))
const accept = (token: string, cookie: string) =>
  call('/tenants/invitations/accept', jsonRequest('POST', { token }, cookie))

async function code(res: Response): Promise<string> {
  return ((await res.clone().json()) as { code: string }).code
}

/** The token in the invitation mail the fake webhook received for `to`. */
async function mailedToken(to: string): Promise<string> {
  return until(async () => {
    const res = await fetch(`${fakeMailUrl}/__requests?to=${encodeURIComponent(to)}`)
    const received = (await res.json()) as { body: string }[]
    const match = received.map((r) => /token=([A-Za-z0-9_-]+)/.exec(r.body)).find((m) => m !== null)
    return match?.[1]
  })
}

describe('members', () => {
  it('owners and admins list members; a plain member is refused (403)', async () => {
    const t = await seedTenant()
    for (const who of [t.owner, t.admin]) {
      const res = await call(`/tenants/${t.id}/members`, { headers: { cookie: who.cookie } })
      expect(res.status, await describeResponse(res)).toBe(200)
      const ids = ((await res.json()) as { data: { user_id: string }[] }).data.map((m) => m.user_id)
      expect(ids.sort()).toEqual([t.owner.id, t.admin.id, t.member.id].sort())
    }
    expect((await call(`/tenants/${t.id}/members`, { headers: { cookie: t.member.cookie } })).status).toBe(
      403,
    )
  })

  it('an admin changes a member’s role, audited with the change', async () => {
    const t = await seedTenant()
    const res = await setRole(t.id, t.member.id, 'admin', t.admin.cookie)
    expect(res.status, await describeResponse(res)).toBe(200)
    expect((await rolesOf(t.id))[t.member.id]).toBe('admin')
    const [audit] = await queryRows(
      testDb(),
      sql`select actor, metadata from audit_events where tenant_id = ${t.id}::uuid and type = 'member_role_changed'`,
    )
    expect(audit?.actor).toBe(`user:${t.admin.id}`)
    expect(audit?.metadata).toMatchObject({ role: 'admin', previous_role: 'member' })
  })

  it('an admin can neither make an owner nor demote or remove one (403); nothing changes', async () => {
    const t = await seedTenant()
    const before = await rolesOf(t.id)
    for (const res of [
      await setRole(t.id, t.member.id, 'owner', t.admin.cookie),
      await setRole(t.id, t.admin.id, 'owner', t.admin.cookie),
      await setRole(t.id, t.owner.id, 'member', t.admin.cookie),
      await remove(t.id, t.owner.id, t.admin.cookie),
      await invite(t.id, { email: 'boss@example.com', role: 'owner' }, t.admin.cookie),
    ]) {
      expect(res.status, await describeResponse(res)).toBe(403)
    }
    expect(await rolesOf(t.id)).toEqual(before)
  })

  it('the last owner can neither be demoted nor leave (409 last_owner); with a second owner both work', async () => {
    const t = await seedTenant()
    const demote = await setRole(t.id, t.owner.id, 'admin', t.owner.cookie)
    expect(demote.status).toBe(409)
    expect(await code(demote)).toBe('last_owner')
    const leave = await remove(t.id, t.owner.id, t.owner.cookie)
    expect(leave.status).toBe(409)
    expect((await rolesOf(t.id))[t.owner.id]).toBe('owner')
    expect((await setRole(t.id, t.admin.id, 'owner', t.owner.cookie)).status).toBe(200)
    expect((await remove(t.id, t.owner.id, t.owner.cookie)).status).toBe(204)
    expect(await rolesOf(t.id)).toEqual({ [t.admin.id]: 'owner', [t.member.id]: 'member' })
  })

  it.runIf(realPostgres)('two owners demoting each other at once leave exactly one owner', async () => {
    for (let round = 0; round < 10; round++) {
      const t = await seedTenant()
      await setRole(t.id, t.admin.id, 'owner', t.owner.cookie)
      const [a, b] = await Promise.all([
        setRole(t.id, t.admin.id, 'member', t.owner.cookie),
        setRole(t.id, t.owner.id, 'member', t.admin.cookie),
      ])
      // One wins; the other is refused as the last owner (409), or, when it arrives after the
      // winner committed, as no longer an owner (403).
      const statuses = [a.status, b.status].sort()
      expect(statuses, `${await describeResponse(a)} / ${await describeResponse(b)}`).toContainEqual(200)
      expect(statuses.filter((s) => s === 200)).toHaveLength(1)
      const roles = Object.values(await rolesOf(t.id))
      expect(roles.filter((r) => r === 'owner')).toHaveLength(1)
    }
  })

  it('a member may leave; removing someone else needs owner or admin', async () => {
    const t = await seedTenant()
    expect((await remove(t.id, t.admin.id, t.member.cookie)).status).toBe(403)
    expect((await remove(t.id, t.member.id, t.member.cookie)).status).toBe(204)
    expect(Object.keys(await rolesOf(t.id))).not.toContain(t.member.id)
  })

  it('answers 404 for an unknown tenant, a tenant the caller is not in, and a non-member user id', async () => {
    const t = await seedTenant()
    const other = await seedTenant()
    expect(
      (await call(`/tenants/${crypto.randomUUID()}/members`, { headers: { cookie: t.owner.cookie } })).status,
    ).toBe(404)
    expect((await call(`/tenants/${other.id}/members`, { headers: { cookie: t.owner.cookie } })).status).toBe(
      404,
    )
    expect((await setRole(t.id, other.member.id, 'admin', t.owner.cookie)).status).toBe(404)
    expect((await setRole(t.id, 'nope', 'admin', t.owner.cookie)).status).toBe(404)
    expect((await setRole(t.id, t.member.id, 'king', t.owner.cookie)).status).toBe(400)
    const malformed = await call(
      `/tenants/${t.id}/members/${t.member.id}`,
      jsonRequest('PATCH', '{"role":', t.owner.cookie),
    )
    expect(malformed.status).toBe(400)
    expect((await rolesOf(t.id))[t.member.id]).toBe('member')
  })
})

describe('invitations', () => {
  it('end to end through the outbox: invite, mail, accept as the invited account, once', async () => {
    const t = await seedTenant()
    const invitee = await seedUser()
    const res = await invite(t.id, { email: invitee.email.toUpperCase(), role: 'admin' }, t.admin.cookie)
    expect(res.status, await describeResponse(res)).toBe(201)
    const body = (await res.json()) as Record<string, unknown>
    expect(JSON.stringify(body)).not.toMatch(/token/)
    const token = await mailedToken(invitee.email.toUpperCase())
    const [stored] = await queryRows(
      testDb(),
      sql`select token_hash from tenant_invitations where tenant_id = ${t.id}::uuid`,
    )
    expect(stored?.token_hash).toBe(await sha256Hex(token))

    const accepted = await accept(token, invitee.cookie)
    expect(accepted.status, await describeResponse(accepted)).toBe(200)
    expect((await rolesOf(t.id))[invitee.id]).toBe('admin')
    const again = await accept(token, invitee.cookie)
    expect(again.status).toBe(400)
    expect(await code(again)).toBe('invalid_token')
    const audit = await queryRows(
      testDb(),
      sql`select type from audit_events where tenant_id = ${t.id}::uuid and type like 'invitation_%' order by created_at`,
    )
    expect(audit.map((r) => r.type)).toEqual(['invitation_created', 'invitation_accepted'])
  })

  it('refuses another account (403), an expired token and an unknown one (400); nothing changes', async () => {
    const t = await seedTenant()
    const invitee = await seedUser()
    const intruder = await seedUser()
    expect((await invite(t.id, { email: invitee.email }, t.owner.cookie)).status).toBe(201)
    const token = await mailedToken(invitee.email)
    const wrong = await accept(token, intruder.cookie)
    expect(wrong.status).toBe(403)
    expect(await accept('not-a-real-token', invitee.cookie).then((r) => r.status)).toBe(400)
    await testDb().execute(
      sql`update tenant_invitations set expires_at = now() - interval '1 second' where tenant_id = ${t.id}::uuid`,
    )
    const expired = await accept(token, invitee.cookie)
    expect(expired.status).toBe(400)
    const roles = await rolesOf(t.id)
    expect(roles[invitee.id]).toBeUndefined()
    expect(roles[intruder.id]).toBeUndefined()
    const [row] = await queryRows(
      testDb(),
      sql`select accepted_at from tenant_invitations where tenant_id = ${t.id}::uuid`,
    )
    expect(row?.accepted_at).toBeNull()
  })

  it('needs a signed-in caller to accept (401), and an owner/admin to invite (member: 403)', async () => {
    const t = await seedTenant()
    expect(
      (
        await call('/tenants/invitations/accept', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"token":"x"}',
        })
      ).status,
    ).toBe(401)
    expect((await invite(t.id, { email: 'x@example.com' }, t.member.cookie)).status).toBe(403)
    expect((await invite(t.id, { email: 'not-an-email' }, t.owner.cookie)).status).toBe(400)
  })

  it.runIf(realPostgres)(
    'ten concurrent accepts of one invitation: one 200, the rest 400, one membership and one audit row',
    async () => {
      const t = await seedTenant()
      const invitee = await seedUser()
      expect((await invite(t.id, { email: invitee.email }, t.owner.cookie)).status).toBe(201)
      const token = await mailedToken(invitee.email)
      const answers = await Promise.all(Array.from({ length: 10 }, () => accept(token, invitee.cookie)))
      expect(answers.map((r) => r.status).sort()).toEqual([200, ...Array(9).fill(400)])
      expect((await rolesOf(t.id))[invitee.id]).toBe('member')
      const [audit] = await queryRows(
        testDb(),
        sql`select count(*)::int as n from audit_events where tenant_id = ${t.id}::uuid and type = 'invitation_accepted'`,
      )
      expect(audit?.n).toBe(1)
    },
  )

  it('a revoked invitation cannot be accepted; another tenant’s admin cannot revoke it (404)', async () => {
    const [t, other] = await Promise.all([seedTenant(), seedTenant()])
    const invitee = await seedUser()
    const created = await invite(t.id, { email: invitee.email }, t.admin.cookie)
    const { invitation } = (await created.json()) as { invitation: { id: string } }
    const token = await mailedToken(invitee.email)
    const foreign = await call(`/tenants/${other.id}/invitations/${invitation.id}`, {
      method: 'DELETE',
      headers: { cookie: other.owner.cookie },
    })
    expect(foreign.status).toBe(404)
    const listed = await call(`/tenants/${t.id}/invitations`, { headers: { cookie: t.admin.cookie } })
    expect(((await listed.json()) as { data: { id: string }[] }).data.map((i) => i.id)).toEqual([
      invitation.id,
    ])
    const revoked = await call(`/tenants/${t.id}/invitations/${invitation.id}`, {
      method: 'DELETE',
      headers: { cookie: t.admin.cookie },
    })
    expect(revoked.status, await describeResponse(revoked)).toBe(204)
    expect((await accept(token, invitee.cookie)).status).toBe(400)
    expect((await rolesOf(t.id))[invitee.id]).toBeUndefined()
  })

  it('an existing member accepting keeps their role', async () => {
    const t = await seedTenant()
    const invitee = await seedUser()
    await addMember(t.id, invitee.id, 'admin')
    await invite(t.id, { email: invitee.email, role: 'member' }, t.owner.cookie)
    const res = await accept(await mailedToken(invitee.email), invitee.cookie)
    expect(res.status).toBe(200)
    expect((await rolesOf(t.id))[invitee.id]).toBe('admin')
  })
})
