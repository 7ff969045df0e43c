import { and, eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents } from '../../db/schema'
import { createKey, seedUser } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

// Read at once, never polled: the event commits in the same batch as the change it records.
function auditRowsFor(keyId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.type, type), sql`${auditEvents.metadata} ->> 'key_id' = ${keyId}`))
}

describe('API-key audit events commit with the change', () => {
  it('create, rotate and revoke each have their audit row when the response arrives', async () => {
    const user = await seedUser()
    const created = await createKey(user.headers, { name: 'audited' })
    const [createdEvent] = await auditRowsFor(created.id, 'api_key_created')
    expect(createdEvent).toMatchObject({ actor: `user:${user.id}`, userId: user.id })
    expect(createdEvent?.metadata).toMatchObject({ key_id: created.id, tier: 'trial' })

    const rotated = await postJson(`/api-keys/${created.id}/rotate`, {}, user.headers)
    expect(rotated.status, await describeResponse(rotated)).toBe(201)
    const replacement = (await rotated.json()) as { id: string }
    const [rotatedEvent] = await auditRowsFor(replacement.id, 'api_key_rotated')
    expect(rotatedEvent?.metadata).toMatchObject({ rotated_from: created.id, grace_period_seconds: 0 })

    const revoked = await call(`/api-keys/${replacement.id}`, { method: 'DELETE', headers: user.headers })
    expect(revoked.status).toBe(204)
    expect(await auditRowsFor(replacement.id, 'api_key_revoked')).toHaveLength(1)
    // Revoking again changes nothing, so it records nothing.
    const again = await call(`/api-keys/${replacement.id}`, { method: 'DELETE', headers: user.headers })
    expect(again.status).toBe(204)
    expect(await auditRowsFor(replacement.id, 'api_key_revoked')).toHaveLength(1)
  })

  it('the admin creating a key for a missing owner writes neither key nor event', async () => {
    const ownerId = crypto.randomUUID()
    const res = await postJson('/api-keys', { name: 'orphan', owner_id: ownerId }, adminHeaders())
    expect(res.status).toBe(400)
    const rows = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.type, 'api_key_created'), eq(auditEvents.userId, ownerId)))
    expect(rows).toHaveLength(0)
  })

  it('a failed audit insert leaves no key behind (one batch, one commit)', async () => {
    const user = await seedUser()
    const db = testDb()
    const fn = `fail_key_audit_${user.id.replaceAll('-', '')}`
    await db.execute(
      sql.raw(`create function ${fn}() returns trigger language plpgsql as $$
        begin
          if new.type = 'api_key_created' and new.user_id = '${user.id}' then
            raise exception 'injected audit failure';
          end if;
          return new;
        end $$`),
    )
    await db.execute(
      sql.raw(`create trigger ${fn} before insert on audit_events for each row execute function ${fn}();`),
    )
    try {
      const res = await postJson('/api-keys', { name: 'doomed' }, user.headers)
      expect(res.status).toBeGreaterThanOrEqual(500)
      const keys = await db.execute(sql`select id from api_keys where owner_user_id = ${user.id}`)
      expect(keys.rows).toHaveLength(0)
    } finally {
      await db.execute(sql.raw(`drop trigger ${fn} on audit_events`))
      await db.execute(sql.raw(`drop function ${fn}()`))
    }
  })
})
