import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { apiKeys, auditEvents, oauthConsents, refreshTokens, users } from '../../db/schema'
import { seedUser, sessionCookieOf, signIn } from '../helpers/accounts'
import { verifyKey } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import { csrfOf, exchangeCode, obtainCode, refresh, type TokenSet, webClient } from '../helpers/oauth'
import { call, describeResponse } from '../helpers/worker'

/** GET /account as this cookie; the page and the CSRF pair a browser would post back. */
async function openAccount(cookie: string) {
  const res = await call('/account', { headers: { cookie }, redirect: 'manual' })
  const page = await res.text()
  expect(res.status, page).toBe(200)
  return { page, csrf: csrfOf(res, page) }
}

async function postAccount(cookie: string, path: string, fields: Record<string, string> = {}) {
  const { csrf } = await openAccount(cookie)
  return call(path, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: `${cookie}; portcullis_csrf=${csrf.cookie}`,
    },
    body: new URLSearchParams({ csrf_token: csrf.field, ...fields }).toString(),
  })
}

function sessionIdsOf(page: string): string[] {
  return [...page.matchAll(/data-session="([0-9a-f-]{36})"/g)].map((m) => m[1] ?? '')
}

describe('/account', () => {
  it('sends a signed-out browser to sign in and back', async () => {
    const res = await call('/account', { redirect: 'manual' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/login?return_to=%2Faccount')
  })

  it('lists sessions with device, address and times in words, and signs out another one', async () => {
    const user = await seedUser()
    const laptop = await signIn(
      user,
      {},
      { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36' },
    )
    const phone = await signIn(
      user,
      {},
      { 'user-agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1' },
    )
    const { page } = await openAccount(laptop)
    expect(page).toContain('Chrome on Linux')
    expect(page).toContain('Safari on iOS')
    expect(page).toContain('This device')
    expect(page).toMatch(/signed in\s*<time[^>]*>just now<\/time>/)
    const ids = sessionIdsOf(page)
    expect(ids).toHaveLength(2)
    // End whichever session is not the laptop's (the laptop's carries the badge).
    const laptopBlock = page.split('<li data-session="').find((b) => b.includes('This device')) ?? ''
    const laptopId = laptopBlock.slice(0, 36)
    const otherId = ids.find((id) => id !== laptopId) ?? ''
    const ended = await postAccount(laptop, `/account/sessions/${otherId}/end`)
    expect(ended.status, await describeResponse(ended)).toBe(200)
    expect((await call('/auth/session', { headers: { cookie: phone } })).status).toBe(401)
    expect((await call('/auth/session', { headers: { cookie: laptop } })).status).toBe(200)
    const audit = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.type, 'user_logout'), eq(auditEvents.userId, user.id)))
    expect(audit.map((a) => a.metadata)).toContainEqual({ via: 'account', session_id: otherId })
  })

  it('signing out this device from the list ends it and goes to /login', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const [id] = sessionIdsOf((await openAccount(cookie)).page)
    const res = await postAccount(cookie, `/account/sessions/${id}/end`)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/login')
    expect((await call('/auth/session', { headers: { cookie } })).status).toBe(401)
  })

  it("cannot end another account's session, and refuses posts without the CSRF token", async () => {
    const alice = await seedUser()
    const mallory = await seedUser()
    const aliceCookie = await signIn(alice)
    const [aliceSession] = sessionIdsOf((await openAccount(aliceCookie)).page)
    const malloryCookie = await signIn(mallory)
    const res = await postAccount(malloryCookie, `/account/sessions/${aliceSession}/end`)
    expect(await res.text()).toContain('already ended')
    expect((await call('/auth/session', { headers: { cookie: aliceCookie } })).status).toBe(200)
    const forged = await call(`/account/sessions/${aliceSession}/end`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: aliceCookie },
      body: 'csrf_token=forged',
    })
    expect(forged.status).toBe(403)
    expect((await call('/auth/session', { headers: { cookie: aliceCookie } })).status).toBe(200)
  })

  it('saves the display name (audited) and refuses control characters', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const saved = await postAccount(cookie, '/account/profile', { display_name: '  Grace Hopper ' })
    expect(await saved.text()).toContain('value="Grace Hopper"')
    const [row] = await testDb().select().from(users).where(eq(users.id, user.id))
    expect(row?.displayName).toBe('Grace Hopper')
    const bad = await postAccount(cookie, '/account/profile', { display_name: 'a\u0007b' })
    expect(bad.status).toBe(400)
    const [after] = await testDb().select().from(users).where(eq(users.id, user.id))
    expect(after?.displayName).toBe('Grace Hopper')
  })

  it('removing a connected application deletes the consent and kills its refresh token', async () => {
    const user = await seedUser({ session: true })
    const client = await webClient({ client_name: 'Photo Printer' })
    const code = await obtainCode(client, user)
    const tokens = (await (await exchangeCode(client, code)).json()) as TokenSet
    expect(tokens.refresh_token).toBeDefined()
    const { page } = await openAccount(user.cookie)
    expect(page).toContain('Photo Printer')
    expect(page).toContain('See your email address')
    const clientUuid = /action="\/account\/apps\/([0-9a-f-]{36})\/revoke"/.exec(page)?.[1] ?? ''

    // Another account cannot disconnect it for this user.
    const other = await seedUser()
    const otherCookie = await signIn(other)
    expect(await (await postAccount(otherCookie, `/account/apps/${clientUuid}/revoke`)).text()).toContain(
      'had no access',
    )
    const stillThere = await testDb().select().from(oauthConsents).where(eq(oauthConsents.userId, user.id))
    expect(stillThere).toHaveLength(1)

    const res = await postAccount(user.cookie, `/account/apps/${clientUuid}/revoke`)
    expect(await res.text()).toContain('can no longer use your account')
    const refreshed = await refresh(client, tokens.refresh_token ?? '')
    expect(refreshed.status).toBe(400)
    expect(((await refreshed.json()) as { error: string }).error).toBe('invalid_grant')
    const consents = await testDb().select().from(oauthConsents).where(eq(oauthConsents.userId, user.id))
    expect(consents).toHaveLength(0)
    const live = await testDb().select().from(refreshTokens).where(eq(refreshTokens.userId, user.id))
    expect(live.every((t) => t.revokedAt !== null)).toBe(true)
    const [audit] = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.type, 'token_revoked'), eq(auditEvents.userId, user.id)))
    expect(audit?.clientId).toBe(client.client_id)
    expect(audit?.metadata).toMatchObject({ via: 'account', reason: 'app_disconnected', refresh_tokens: 1 })
  })

  it('creates an API key whose secret is shown once, lists it, and revokes it', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const created = await postAccount(cookie, '/account/api-keys', { name: 'Build <server>' })
    const page = await created.text()
    expect(created.status, page).toBe(200)
    const key = /data-testid="new-api-key">([^<]+)</.exec(page)?.[1] ?? ''
    expect(key).toMatch(/^pk_(test|live)_/)
    expect(page).toContain('Build &lt;server&gt;')
    expect((await verifyKey(key)).valid).toBe(true)
    const again = (await openAccount(cookie)).page
    expect(again).not.toContain(key)
    expect(again).toContain(`…${key.slice(-4)}`)
    const [row] = await testDb().select().from(apiKeys).where(eq(apiKeys.ownerUserId, user.id))
    const [audit] = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.type, 'api_key_created'), eq(auditEvents.userId, user.id)))
    expect(audit?.metadata).toMatchObject({ via: 'account' })

    // Someone else cannot revoke it; its owner can.
    const other = await seedUser()
    const otherCookie = await signIn(other)
    expect(await (await postAccount(otherCookie, `/account/api-keys/${row?.id}/revoke`)).text()).toContain(
      'No such key',
    )
    expect((await verifyKey(key)).valid).toBe(true)
    const revoked = await postAccount(cookie, `/account/api-keys/${row?.id}/revoke`)
    expect(await revoked.text()).toContain('The key is revoked')
    expect((await verifyKey(key)).valid).toBe(false)
    expect((await openAccount(cookie)).page).toContain('You have no API keys')
  })

  it('refuses an empty key name and creates nothing', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const res = await postAccount(cookie, '/account/api-keys', { name: '   ' })
    expect(res.status).toBe(400)
    const rows = await testDb().select().from(apiKeys).where(eq(apiKeys.ownerUserId, user.id))
    expect(rows).toHaveLength(0)
  })

  it('changes the password: other devices signed out, this one kept with a new session', async () => {
    const user = await seedUser()
    const cookie = await signIn(user)
    const other = await signIn(user)
    const wrong = await postAccount(cookie, '/account/password', {
      current_password: 'Not-The-Password-1',
      new_password: 'Brand-New-Passphrase-7',
    })
    expect(wrong.status).toBe(400)
    expect(await wrong.text()).toContain('not right')
    const res = await postAccount(cookie, '/account/password', {
      current_password: user.password,
      new_password: 'Brand-New-Passphrase-7',
    })
    expect(res.status, await describeResponse(res)).toBe(303)
    expect(res.headers.get('location')).toBe('/account?done=password')
    const fresh = sessionCookieOf(res)
    expect(fresh).toBeDefined()
    expect((await call('/auth/session', { headers: { cookie: other } })).status).toBe(401)
    const after = await call('/account?done=password', { headers: { cookie: `portcullis_session=${fresh}` } })
    expect(await after.text()).toContain('Your password is changed')
    await expect(signIn(user)).rejects.toThrow()
    await signIn({ ...user, password: 'Brand-New-Passphrase-7' })
  })
})
