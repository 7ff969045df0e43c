import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, recoveryCodes, sessions, userTotp } from '../../db/schema'
import { seedUser, sessionCookieOf } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { enrol, firstStep } from '../helpers/mfa'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

function resetFactors(id: string, headers: Record<string, string> = adminHeaders()) {
  return call(`/admin/users/${id}/factors`, { method: 'DELETE', headers })
}

describe('DELETE /admin/users/{id}/factors', () => {
  it('removes TOTP, recovery codes and pending second steps, ends every session, and is audited', async () => {
    const user = await seedUser({ session: true })
    await enrol(user)
    const pending = await firstStep(user)
    const res = await resetFactors(user.id)
    expect(res.status, await describeResponse(res.clone())).toBe(200)
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({ totp_removed: true, recovery_codes_removed: 10 })
    expect(body.sessions_ended).toBeGreaterThanOrEqual(1)
    expect((body.user as { id: string }).id).toBe(user.id)
    const db = testDb()
    expect(await db.select().from(userTotp).where(eq(userTotp.userId, user.id))).toHaveLength(0)
    expect(await db.select().from(recoveryCodes).where(eq(recoveryCodes.userId, user.id))).toHaveLength(0)
    expect(await db.select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(0)
    expect((await call('/auth/session', { headers: user.headers })).status).toBe(401)
    // The sign-in that was waiting for its code cannot finish.
    expect((await postJson('/auth/login/mfa', { mfa_token: pending, code: '123456' })).status).toBe(401)
    const [event] = await db
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'mfa_reset')))
    expect(event?.actor).toBe('admin')
    expect(event?.metadata).toMatchObject({ sessions_ended: body.sessions_ended })
    // The password alone signs in again.
    const login = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(login.status).toBe(200)
    expect(sessionCookieOf(login)).toBeDefined()
  })

  it('refuses callers that are not platform admins and changes nothing', async () => {
    const user = await seedUser({ session: true })
    await enrol(user)
    expect((await resetFactors(user.id, {})).status).toBe(401)
    expect((await resetFactors(user.id, user.headers)).status).toBe(401)
    expect(await testDb().select().from(userTotp).where(eq(userTotp.userId, user.id))).toHaveLength(1)
    expect((await call('/auth/session', { headers: user.headers })).status).toBe(200)
  })

  it('answers 404 for an unknown or malformed id', async () => {
    expect((await resetFactors(crypto.randomUUID())).status).toBe(404)
    expect((await resetFactors('not-a-uuid')).status).toBe(404)
  })
})
