import { and, eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, sessions } from '../../db/schema'
import { seedUser, userRow } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { adminHeaders, call } from '../helpers/worker'

// Read at once, never polled: each event commits in the same batch as the move it records.
function eventsOf(userId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.type, type), eq(auditEvents.userId, userId)))
}

function post(path: string) {
  return call(path, { method: 'POST', headers: adminHeaders() })
}

describe('admin status changes commit with their audit row', () => {
  it('suspend writes one user_suspended with the counts; a repeat ends access again but records nothing', async () => {
    const user = await seedUser({ session: true })
    expect((await post(`/admin/users/${user.id}/suspend`)).status).toBe(200)
    const [event, ...more] = await eventsOf(user.id, 'user_suspended')
    expect(more).toHaveLength(0)
    expect(event).toMatchObject({ actor: 'admin' })
    expect(event?.metadata).toMatchObject({ sessions_ended: 1, refresh_tokens_revoked: 0 })
    expect(await testDb().select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(0)

    expect((await post(`/admin/users/${user.id}/suspend`)).status).toBe(200)
    expect(await eventsOf(user.id, 'user_suspended')).toHaveLength(1)

    expect((await post(`/admin/users/${user.id}/reinstate`)).status).toBe(200)
    expect(await eventsOf(user.id, 'user_reinstated')).toHaveLength(1)
    expect((await post(`/admin/users/${user.id}/reinstate`)).status).toBe(200)
    expect(await eventsOf(user.id, 'user_reinstated')).toHaveLength(1)
  })

  it('a failed audit insert leaves the user active with their sessions (one batch, one commit)', async () => {
    const user = await seedUser({ session: true })
    const db = testDb()
    const fn = `fail_status_audit_${user.id.replaceAll('-', '')}`
    await db.execute(
      sql.raw(`create function ${fn}() returns trigger language plpgsql as $$
        begin
          if new.user_id = '${user.id}' then raise exception 'injected audit failure'; end if;
          return new;
        end $$`),
    )
    await db.execute(
      sql.raw(`create trigger ${fn} before insert on audit_events for each row execute function ${fn}()`),
    )
    try {
      const res = await post(`/admin/users/${user.id}/suspend`)
      expect(res.status).toBeGreaterThanOrEqual(500)
      expect((await userRow(user.id))?.status).toBe('active')
      expect(await db.select().from(sessions).where(eq(sessions.userId, user.id))).toHaveLength(1)
    } finally {
      await db.execute(sql.raw(`drop trigger ${fn} on audit_events`))
      await db.execute(sql.raw(`drop function ${fn}()`))
    }
  })
})
