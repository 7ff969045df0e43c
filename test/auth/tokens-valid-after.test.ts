import { eq, sql } from 'drizzle-orm'
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { passwordResets, users } from '../../db/schema'
import { sha256Hex } from '../../functions/crypto/hash'
import { seedUser as seedAccount, signIn, userRow } from '../helpers/accounts'
import { createKeyAsAdmin } from '../helpers/apikeys'
import { testDb } from '../helpers/db'
import {
  basicAuth,
  exchangeCode,
  obtainCode,
  postForm,
  type SeededUser,
  type TestClient,
  webClient,
} from '../helpers/oauth'
import { adminHeaders, call, describeResponse, postJson } from '../helpers/worker'

const SCOPE = 'openid email apikeys:write apikeys:verify'
const NEW_PASSWORD = 'A-Brand-New-Passphrase-7'

interface Holder {
  user: SeededUser & { password: string }
  client: TestClient
}

/** A user with a real password, signed in through the API, and a client that may ask for SCOPE. */
async function holder(options: { isAdmin?: boolean } = {}): Promise<Holder> {
  const account = await seedAccount()
  if (options.isAdmin === true) {
    await testDb().update(users).set({ isAdmin: true }).where(eq(users.id, account.id))
  }
  const cookie = await signIn(account)
  const client = await webClient({ scope: options.isAdmin === true ? `${SCOPE} admin` : SCOPE })
  return { user: { ...account, cookie }, client }
}

async function accessToken(h: Holder, scope = SCOPE): Promise<string> {
  const code = await obtainCode(h.client, h.user, { scope })
  const res = await exchangeCode(h.client, code)
  expect(res.status, await describeResponse(res)).toBe(200)
  return ((await res.json()) as { access_token: string }).access_token
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** Every Portcullis API a user's access token reaches: the statuses it gets. */
async function reach(h: Holder, token: string) {
  const key = await createKeyAsAdmin()
  const [userinfo, create, list, verify, introspect] = await Promise.all([
    call('/oauth/userinfo', { headers: bearer(token) }),
    postJson('/api-keys', { name: 'after' }, bearer(token)),
    call('/api-keys', { headers: bearer(token) }),
    postJson('/api-keys/verify', { key: key.key }, bearer(token)),
    postForm('/oauth/introspect', { token }, basicAuth(h.client)),
  ])
  const active = introspect.status === 200 ? ((await introspect.json()) as { active: boolean }).active : null
  return {
    userinfo: userinfo.status,
    create: create.status,
    list: list.status,
    verify: verify.status,
    introspect: active,
  }
}

const ALIVE = { userinfo: 200, create: 201, list: 200, verify: 200, introspect: true }
const DEAD = { userinfo: 401, create: 401, list: 401, verify: 401, introspect: false }

async function changePassword(h: Holder): Promise<Response> {
  const res = await call('/auth/change-password', {
    method: 'POST',
    headers: { cookie: h.user.cookie, 'content-type': 'application/json' },
    body: JSON.stringify({ current_password: h.user.password, new_password: NEW_PASSWORD }),
  })
  expect(res.status, await describeResponse(res)).toBe(204)
  return res
}

/** A fresh sign-in (new session) and a token minted through it, as a user would right after. */
async function freshToken(h: Holder, password: string): Promise<string> {
  const cookie = await signIn({ ...h.user, password })
  return accessToken({ ...h, user: { ...h.user, cookie, password } })
}

describe('a credential change ends the access tokens issued before it (tokens_valid_after)', () => {
  it('password change: the old token gets 401 everywhere and introspects inactive; a token minted right after works', async () => {
    const h = await holder()
    const old = await accessToken(h)
    expect(await reach(h, old)).toEqual(ALIVE)
    await changePassword(h)
    expect(await reach(h, old)).toEqual(DEAD)
    const fresh = await freshToken(h, NEW_PASSWORD)
    expect(await reach(h, fresh)).toEqual(ALIVE)
    const row = await userRow(h.user.id)
    const after = Math.floor((row?.tokensValidAfter?.getTime() ?? 0) / 1000)
    expect(decodeJwt(fresh).iat).toBeGreaterThan(after)
  })

  it('password reset ends them too', async () => {
    const h = await holder()
    const old = await accessToken(h)
    const token = crypto.randomUUID() + crypto.randomUUID()
    await testDb()
      .insert(passwordResets)
      .values({
        tokenHash: await sha256Hex(token),
        userId: h.user.id,
        expiresAt: new Date(Date.now() + 3_600_000),
      })
    const res = await postJson('/auth/password-reset/confirm', { token, password: NEW_PASSWORD })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await reach(h, old)).toEqual(DEAD)
    expect(await reach(h, await freshToken(h, NEW_PASSWORD))).toEqual(ALIVE)
  })

  it('logout-all ends them too', async () => {
    const h = await holder()
    const old = await accessToken(h)
    const res = await call('/auth/logout-all', { method: 'POST', headers: { cookie: h.user.cookie } })
    expect(res.status, await describeResponse(res)).toBe(204)
    expect(await reach(h, old)).toEqual(DEAD)
    expect(await reach(h, await freshToken(h, h.user.password))).toEqual(ALIVE)
  })

  it('suspension ends them for good: reinstating does not revive them', async () => {
    const h = await holder()
    const old = await accessToken(h)
    expect((await postJson(`/admin/users/${h.user.id}/suspend`, {}, adminHeaders())).status).toBe(200)
    expect((await postJson(`/admin/users/${h.user.id}/reinstate`, {}, adminHeaders())).status).toBe(200)
    expect(await reach(h, old)).toEqual(DEAD)
    expect(await reach(h, await freshToken(h, h.user.password))).toEqual(ALIVE)
  })

  it('voids an authorization code issued before the change and not yet exchanged', async () => {
    const h = await holder()
    const code = await obtainCode(h.client, h.user, { scope: SCOPE })
    await changePassword(h)
    const res = await exchangeCode(h.client, code)
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_grant' })
  })

  it('an admin’s access token loses the admin API with the rest', async () => {
    const h = await holder({ isAdmin: true })
    const old = await accessToken(h, 'openid admin')
    expect((await call('/admin/users?limit=1', { headers: bearer(old) })).status).toBe(200)
    await changePassword(h)
    expect((await call('/admin/users?limit=1', { headers: bearer(old) })).status).toBe(401)
  })

  it('compares at second resolution: a token issued in the second of the change is dead, one second later alive', async () => {
    const h = await holder()
    const token = await accessToken(h)
    const iat = decodeJwt(token).iat ?? 0
    const setAfter = (ms: number) =>
      testDb()
        .update(users)
        .set({ tokensValidAfter: sql`to_timestamp(${(iat * 1000 + ms) / 1000})` })
        .where(eq(users.id, h.user.id))
    // The change came later in the token's own second: the token may predate it, so it is dead.
    await setAfter(999)
    expect((await call('/oauth/userinfo', { headers: bearer(token) })).status).toBe(401)
    expect(await reach(h, token)).toEqual(DEAD)
    // The change came at the very start of that second: still refused (iat cannot tell).
    await setAfter(0)
    expect((await call('/oauth/userinfo', { headers: bearer(token) })).status).toBe(401)
    // The change came in the second before: the token is after it.
    await setAfter(-1)
    expect(await reach(h, token)).toEqual(ALIVE)
  })

  it('a token minted in the same second as the change is put past that second, so it works', async () => {
    const h = await holder()
    // A change stamped two seconds ahead: a token minted now without care would carry an `iat`
    // at or before that second and be refused; minting puts it just past the change.
    const stamped = Date.now() + 2000
    await testDb()
      .update(users)
      .set({ tokensValidAfter: new Date(stamped) })
      .where(eq(users.id, h.user.id))
    const token = await accessToken(h)
    expect(decodeJwt(token).iat).toBe(Math.floor(stamped / 1000) + 1)
    expect(await reach(h, token)).toEqual(ALIVE)
  })
})
