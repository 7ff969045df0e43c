import { and, eq, isNull, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, emailChanges, emailOutbox, users } from '../../db/schema'
import { sha256Hex } from '../../functions/crypto/hash'
import { type SeededUser, seedUser, uniqueEmail, userRow } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { csrfOf, postForm } from '../helpers/oauth'
import { call, postJson } from '../helpers/worker'

/** GETs a page (as `cookie`) and POSTs its form back with the CSRF token it carries. */
async function submit(pagePath: string, postPath: string, fields: Record<string, string>, cookie = '') {
  const page = await call(pagePath, { headers: cookie === '' ? {} : { cookie } })
  const csrf = csrfOf(page, await page.text())
  const jar = [cookie, `portcullis_csrf=${csrf.cookie}`].filter(Boolean).join('; ')
  return postForm(postPath, { csrf_token: csrf.field, ...fields }, { cookie: jar })
}

function askChange(user: SeededUser, newEmail: string, password = user.password) {
  return submit(
    '/account/email',
    '/account/email',
    { new_email: newEmail, current_password: password },
    user.cookie,
  )
}

async function mailsTo(address: string) {
  return testDb().select().from(emailOutbox).where(sql`lower(${emailOutbox.toAddress}) = lower(${address})`)
}

/**
 * What following the mailed link needs: the message is delivered (and its body cleared) right
 * after the response, so the test checks the message went to the new address and then stands in
 * for its reader by giving the user's newest pending change a token it knows.
 */
async function tokenMailedTo(userId: string, address: string): Promise<string> {
  const mails = await mailsTo(address)
  expect(mails.map((m) => m.template)).toEqual(['email_change'])
  const token = `test-${crypto.randomUUID()}`
  const [pending] = await testDb()
    .select()
    .from(emailChanges)
    .where(and(eq(emailChanges.userId, userId), isNull(emailChanges.consumedAt)))
  expect(pending?.newEmail.toLowerCase()).toBe(address.toLowerCase())
  await testDb()
    .update(emailChanges)
    .set({ tokenHash: await sha256Hex(token) })
    .where(eq(emailChanges.id, pending?.id ?? ''))
  return token
}

function confirm(token: string) {
  return submit(`/account/email/confirm?token=${token}`, '/account/email/confirm', { token })
}

async function audited(userId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.userId, userId), eq(auditEvents.type, type)))
}

describe('email change from /account', () => {
  it('mails a single-use link to the new address; the address changes only when it is followed', async () => {
    const user = await seedUser({ session: true })
    const next = uniqueEmail()
    const asked = await askChange(user, next.toUpperCase())
    const page = await asked.text()
    expect(asked.status, page).toBe(200)
    expect(page).toContain('data-testid="email-change-sent"')
    expect((await userRow(user.id))?.email).toBe(user.email)
    // Stored as a SHA-256 hex digest, never the raw token.
    const [pending] = await testDb().select().from(emailChanges).where(eq(emailChanges.userId, user.id))
    expect(pending?.tokenHash).toMatch(/^[0-9a-f]{64}$/)
    const token = await tokenMailedTo(user.id, next)
    expect(await audited(user.id, 'email_change_requested')).toHaveLength(1)

    // Opening the link changes nothing (mail scanners open links); the button does.
    const opened = await call(`/account/email/confirm?token=${token}`)
    expect(opened.status).toBe(200)
    expect((await userRow(user.id))?.email).toBe(user.email)
    const done = await confirm(token)
    expect(done.status, await done.clone().text()).toBe(200)
    const row = await userRow(user.id)
    expect(row?.email.toLowerCase()).toBe(next.toLowerCase())
    expect(row?.emailVerifiedAt).not.toBeNull()
    const [notice] = await mailsTo(user.email)
    expect(notice?.template).toBe('email_changed_notice')
    expect(notice?.subject).toBe('Your email address was changed')
    expect(await audited(user.id, 'email_changed')).toHaveLength(1)

    // Single use.
    const again = await confirm(token)
    expect(again.status).toBe(400)
    expect(await audited(user.id, 'email_changed')).toHaveLength(1)
    // The new address signs in; the old one no longer does.
    expect((await postJson('/auth/login', { email: next, password: user.password })).status).toBe(200)
    expect((await postJson('/auth/login', { email: user.email, password: user.password })).status).toBe(401)
  })

  it('refuses a taken address, the same address and a wrong password, and sends nothing', async () => {
    const user = await seedUser({ session: true })
    const other = await seedUser()
    const taken = await askChange(user, other.email.toUpperCase())
    expect(taken.status).toBe(409)
    expect(await taken.text()).toContain('Another account already uses that address.')
    expect((await askChange(user, user.email)).status).toBe(400)
    const fresh = uniqueEmail()
    expect((await askChange(user, fresh, 'Wrong-Password-123')).status).toBe(400)
    expect((await askChange(user, 'not an email')).status).toBe(400)
    expect(await mailsTo(other.email)).toHaveLength(0)
    expect(await mailsTo(fresh)).toHaveLength(0)
    expect(await testDb().select().from(emailChanges).where(eq(emailChanges.userId, user.id))).toHaveLength(0)
  })

  it('refuses at confirmation when another account took the address meanwhile, and keeps the old one', async () => {
    const user = await seedUser({ session: true })
    const next = uniqueEmail()
    expect((await askChange(user, next)).status).toBe(200)
    const token = await tokenMailedTo(user.id, next)
    await seedUser({ email: next })
    const res = await confirm(token)
    expect(res.status).toBe(409)
    expect((await userRow(user.id))?.email).toBe(user.email)
    expect(await audited(user.id, 'email_changed')).toHaveLength(0)
  })

  it('refuses an expired link, a forged one, and an older link once a newer one was asked for', async () => {
    const user = await seedUser({ session: true })
    const first = uniqueEmail()
    expect((await askChange(user, first)).status).toBe(200)
    const firstToken = await tokenMailedTo(user.id, first)
    // A second request within the cooldown is refused, then allowed once it has passed.
    const second = uniqueEmail()
    expect((await askChange(user, second)).status).toBe(429)
    await testDb()
      .update(emailChanges)
      .set({ createdAt: new Date(Date.now() - 120_000) })
      .where(eq(emailChanges.userId, user.id))
    expect((await askChange(user, second)).status).toBe(200)
    const secondToken = await tokenMailedTo(user.id, second)
    expect((await confirm(firstToken)).status).toBe(400)
    expect((await confirm('forged-token')).status).toBe(400)
    await testDb()
      .update(emailChanges)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(emailChanges.userId, user.id))
    expect((await confirm(secondToken)).status).toBe(400)
    expect((await userRow(user.id))?.email).toBe(user.email)
  })

  it('needs a session to ask, and the CSRF token to post', async () => {
    const signedOut = await call('/account/email', { redirect: 'manual' })
    expect(signedOut.status).toBe(303)
    const user = await seedUser({ session: true })
    const forged = await postForm(
      '/account/email',
      { new_email: uniqueEmail(), current_password: user.password },
      { cookie: user.cookie },
    )
    expect(forged.status).toBe(403)
    expect(await testDb().select().from(users).where(eq(users.id, user.id))).toHaveLength(1)
    expect(await testDb().select().from(emailChanges).where(eq(emailChanges.userId, user.id))).toHaveLength(0)
  })
})
