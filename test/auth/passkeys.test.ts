import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, passkeys, sessions, userTotp, webauthnChallenges } from '../../db/schema'
import { relyingParty } from '../../functions/auth/passkeys/config'
import type { Config } from '../../functions/config'
import { NO_PASSWORD } from '../../functions/federation/routes'
import { type SeededUser, seedUser, sessionCookieOf } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { csrfOf, exchangeCode, obtainCode, verifyIdToken, webClient } from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import {
  type Assertion,
  type Attestation,
  type SoftAuthenticator,
  softAuthenticator,
} from '../helpers/webauthn'
import { adminHeaders, callWith, describeResponse } from '../helpers/worker'

// Passkeys need a domain-name issuer (an IP address is never a WebAuthn RP ID): this file's
// requests run with ISSUER=http://localhost:8787, the relying party `localhost`.
const ISSUER = 'http://localhost:8787'
const RP = { origin: ISSUER, rpId: 'localhost' }
const LIMIT = 5 // LOGIN_MAX_FAILURES_PER_ACCOUNT in wrangler.toml

function call(path: string, init: RequestInit = {}) {
  return callWith({ ISSUER }, path, init)
}

function post(path: string, body: unknown, cookie?: string) {
  return call(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(cookie === undefined ? {} : { cookie }) },
    body: JSON.stringify(body),
  })
}

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T
}

interface Options {
  challenge: string
  user: { id: string }
  allowCredentials?: { id: string }[]
  excludeCredentials?: { id: string }[]
  rp?: { id: string }
  rpId?: string
  userVerification?: string
}

async function registrationOptions(user: SeededUser): Promise<Options> {
  const res = await post('/auth/passkeys/registration/options', {}, user.cookie)
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await json<{ options: Options }>(res)).options
}

/** Registers a new soft authenticator's passkey for the user through the JSON API. */
async function register(user: SeededUser, name = 'Test key'): Promise<SoftAuthenticator> {
  const authenticator = await softAuthenticator(RP)
  const options = await registrationOptions(user)
  const res = await post(
    '/auth/passkeys',
    { credential: await authenticator.create(options), name },
    user.cookie,
  )
  expect(res.status, await describeResponse(res)).toBe(201)
  return authenticator
}

async function signInOptions(): Promise<Options> {
  const res = await post('/auth/passkeys/sign-in/options', {})
  expect(res.status, await describeResponse(res)).toBe(200)
  return (await json<{ options: Options }>(res)).options
}

function signIn(credential: Assertion) {
  return post('/auth/passkeys/sign-in', { credential })
}

async function passkeyRows(userId: string) {
  return testDb().select().from(passkeys).where(eq(passkeys.userId, userId))
}

async function sessionRows(userId: string) {
  return testDb().select().from(sessions).where(eq(sessions.userId, userId))
}

describe('passkeys: registration', () => {
  it('registers a passkey: public key, counter and transports stored; listed; options exclude it next time', async () => {
    const user = await seedUser({ session: true, displayName: 'Pat' })
    const options = await registrationOptions(user)
    expect(options.rp?.id).toBe('localhost')
    expect(options.user.id).toBe(Buffer.from(user.id.replace(/-/g, ''), 'hex').toString('base64url'))
    const authenticator = await softAuthenticator(RP)
    const res = await post(
      '/auth/passkeys',
      { credential: await authenticator.create(options), name: 'Laptop' },
      user.cookie,
    )
    expect(res.status, await describeResponse(res)).toBe(201)
    const [row] = await passkeyRows(user.id)
    expect(row?.credentialId).toBe(authenticator.credentialId)
    expect(row?.transports).toEqual(['internal'])
    expect(row?.name).toBe('Laptop')
    const list = await call('/auth/passkeys', { headers: { cookie: user.cookie } })
    const body = await json<{ data: { id: string; name: string }[] }>(list)
    expect(body.data.map((p) => p.name)).toEqual(['Laptop'])
    const again = await registrationOptions(user)
    expect(again.excludeCredentials?.map((c) => c.id)).toEqual([authenticator.credentialId])
    const events = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'passkey_added')))
    expect(events).toHaveLength(1)
  })

  it.each([
    ['another origin', { origin: 'https://evil.example' }],
    ['another RP ID', { rpId: 'evil.example' }],
  ])('refuses an attestation made for %s', async (_label, overrides) => {
    const user = await seedUser({ session: true })
    const authenticator = await softAuthenticator(RP)
    const credential = await authenticator.create(await registrationOptions(user), overrides)
    const res = await post('/auth/passkeys', { credential }, user.cookie)
    expect(res.status).toBe(400)
    expect((await json<{ code: string }>(res)).code).toBe('validation_failed')
    expect(await passkeyRows(user.id)).toHaveLength(0)
  })

  it("refuses a replayed registration, another user's challenge, and a forged one", async () => {
    const user = await seedUser({ session: true })
    const other = await seedUser({ session: true })
    const options = await registrationOptions(user)
    const first = await softAuthenticator(RP)
    expect(
      (await post('/auth/passkeys', { credential: await first.create(options) }, user.cookie)).status,
    ).toBe(201)
    // The same challenge answered again (another authenticator): spent.
    const second = await softAuthenticator(RP)
    const replay = await post('/auth/passkeys', { credential: await second.create(options) }, user.cookie)
    expect(replay.status).toBe(400)
    // A challenge issued to another user.
    const theirs = await registrationOptions(other)
    const stolen = await post('/auth/passkeys', { credential: await second.create(theirs) }, user.cookie)
    expect(stolen.status).toBe(400)
    // A challenge we never issued.
    const forged = await second.create({
      ...options,
      challenge: Buffer.from('made-up').toString('base64url'),
    })
    expect((await post('/auth/passkeys', { credential: forged }, user.cookie)).status).toBe(400)
    expect(await passkeyRows(user.id)).toHaveLength(1)
    expect(await passkeyRows(other.id)).toHaveLength(0)
  })

  it('answers bad input with validation_failed naming the field, never 500', async () => {
    const user = await seedUser({ session: true })
    const cases: unknown[] = [
      {},
      { credential: 'x' },
      { credential: { id: 'a', rawId: 'a', type: 'public-key', response: {} } },
      {
        credential: {
          id: '!!',
          rawId: '!!',
          type: 'public-key',
          response: { clientDataJSON: 'e30', attestationObject: 'oA' },
        },
      },
      {
        credential: {
          id: 'YQ',
          rawId: 'YQ',
          type: 'public-key',
          response: { clientDataJSON: 'e30', attestationObject: 'oA' },
        },
      },
    ]
    for (const body of cases) {
      const res = await post('/auth/passkeys', body, user.cookie)
      expect(res.status, JSON.stringify(body)).toBe(400)
      expect((await json<{ code: string; errors?: { field: string }[] }>(res)).code).toBe('validation_failed')
    }
  })

  it('needs a recent sign-in to add a passkey, and a session at all', async () => {
    const user = await seedUser({ session: true })
    const options = await registrationOptions(user)
    await testDb()
      .update(sessions)
      .set({ createdAt: new Date(Date.now() - 3_600_000) })
      .where(eq(sessions.userId, user.id))
    const authenticator = await softAuthenticator(RP)
    const res = await post('/auth/passkeys', { credential: await authenticator.create(options) }, user.cookie)
    expect(res.status).toBe(403)
    expect((await json<{ code: string }>(res)).code).toBe('recent_sign_in_required')
    expect((await post('/auth/passkeys/registration/options', {})).status).toBe(401)
    expect((await call('/auth/passkeys')).status).toBe(401)
  })

  it.each([
    ['http://127.0.0.1:8787', undefined],
    ['http://[::1]:8787', undefined],
    ['http://localhost:8787', { id: 'localhost', origin: 'http://localhost:8787' }],
    ['https://auth.example.com', { id: 'auth.example.com', origin: 'https://auth.example.com' }],
  ])('takes the relying party of ISSUER %s from its host', (issuer, expected) => {
    const party = relyingParty({ issuer, brand: { name: 'Acme' } } as Config)
    expect(party === undefined ? undefined : { id: party.id, origin: party.origin }).toEqual(expected)
  })

  it('is not offered with an IP-address issuer (no valid RP ID)', async () => {
    const res = await callWith({ ISSUER: 'http://127.0.0.1:8787' }, '/auth/passkeys/sign-in/options', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(res.status).toBe(404)
    const login = await callWith({ ISSUER: 'http://127.0.0.1:8787' }, '/login')
    expect(await login.text()).not.toContain('passkey')
  })
})

describe('passkeys: passwordless sign-in', () => {
  it('signs in without an email, with amr hwk/user/mfa, and the ID token carries that amr', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const options = await signInOptions()
    expect(options.allowCredentials ?? []).toEqual([])
    expect(options.userVerification).toBe('required')
    const res = await signIn(await authenticator.get(options))
    expect(res.status, await describeResponse(res)).toBe(200)
    const token = sessionCookieOf(res)
    expect(token).toBeDefined()
    const [row] = await passkeyRows(user.id)
    expect(row?.signCount).toBe(1)
    expect(row?.lastUsedAt).not.toBeNull()
    const sessionsNow = await sessionRows(user.id)
    expect(sessionsNow.map((s) => s.amr).find((amr) => amr.includes('hwk'))).toEqual(['hwk', 'user', 'mfa'])

    const client = await webClient({ first_party: true })
    const code = await obtainCode(client, { ...user, cookie: `portcullis_session=${token}` }, { nonce: 'n1' })
    const tokens = await json<{ id_token?: string }>(await exchangeCode(client, code))
    const claims = await verifyIdToken(tokens.id_token, { clientId: client.client_id, subject: user.id })
    expect(claims.amr).toEqual(['hwk', 'user', 'mfa'])
  })

  it('refuses a replayed assertion, however many race, and a reused challenge', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const assertion = await authenticator.get(await signInOptions())
    const before = (await sessionRows(user.id)).length
    // Five: the account's limit, so no answer is a 429 whatever order the claims land in.
    const answers = await Promise.all(Array.from({ length: LIMIT }, () => signIn(assertion)))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.every((s) => s === 200 || s === 401)).toBe(true)
    expect((await sessionRows(user.id)).length).toBe(before + 1)
    const spent = await testDb()
      .select()
      .from(webauthnChallenges)
      .where(eq(webauthnChallenges.purpose, 'sign_in'))
    expect(spent.length).toBeGreaterThan(0)
  })

  it('refuses a counter that did not move forward (a cloned authenticator)', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    expect((await signIn(await authenticator.get(await signInOptions()))).status).toBe(200)
    expect((await signIn(await authenticator.get(await signInOptions()))).status).toBe(200)
    authenticator.counter = 0 // the clone reports 1 again, below the stored 2
    const cloned = await signIn(await authenticator.get(await signInOptions()))
    expect(cloned.status).toBe(401)
    expect((await json<{ code: string }>(cloned)).code).toBe('invalid_passkey')
    const [row] = await passkeyRows(user.id)
    expect(row?.signCount).toBe(2)
    const failures = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'user_login_failed')))
    expect(failures.map((e) => (e.metadata as { reason?: string }).reason)).toContain('counter_regressed')
  })

  it.each([
    ['another origin', { origin: 'https://evil.example' }, 'wrong_origin'],
    ['another RP ID', { rpId: 'evil.example' }, 'wrong_rp_id'],
    ['a look-alike origin', { origin: 'http://localhost:8788' }, 'wrong_origin'],
  ])('refuses an assertion made for %s (audited as %s)', async (_label, overrides, reason) => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const before = (await sessionRows(user.id)).length
    const res = await signIn(await authenticator.get(await signInOptions(), overrides))
    expect(res.status).toBe(401)
    expect(sessionCookieOf(res)).toBeUndefined()
    expect((await sessionRows(user.id)).length).toBe(before)
    const [failed] = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'user_login_failed')))
    expect(failed?.metadata).toMatchObject({ method: 'passkey', reason })
  })

  it('refuses without user verification, an unknown passkey, a forged challenge and a tampered signature', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    authenticator.userVerified = false
    expect((await signIn(await authenticator.get(await signInOptions()))).status).toBe(401)
    authenticator.userVerified = true
    const stranger = await softAuthenticator(RP)
    expect((await signIn(await stranger.get(await signInOptions()))).status).toBe(401)
    const forged = await authenticator.get({ challenge: Buffer.from('x.1.y').toString('base64url') })
    expect((await signIn(forged)).status).toBe(401)
    const good = await authenticator.get(await signInOptions())
    // Flip a bit of the signature's last byte (inside s): replacing its DER prefix with 'MEYC'
    // changed nothing when the signature already began that way (about half of them).
    const signature = Buffer.from(good.response.signature, 'base64url')
    signature[signature.length - 1] = (signature[signature.length - 1] ?? 0) ^ 0x01
    const tampered = {
      ...good,
      response: { ...good.response, signature: signature.toString('base64url') },
    }
    expect((await signIn(tampered)).status).toBe(401)
  })

  it('refuses a suspended account even with a valid passkey', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    await testDb().execute(`update users set status = 'suspended' where id = '${user.id}'`)
    const res = await signIn(await authenticator.get(await signInOptions()))
    expect(res.status).toBe(403)
    expect((await json<{ code: string }>(res)).code).toBe('account_suspended')
  })

  it('throttles like the password: a burst of 15 bad assertions checks at most the limit', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const bad = await Promise.all(
      Array.from({ length: 15 }, async () =>
        authenticator.get(await signInOptions(), { origin: 'https://evil.example' }),
      ),
    )
    const statuses = (await Promise.all(bad.map(signIn))).map((r) => r.status)
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(LIMIT)
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(15 - LIMIT)
    // Over the limit even a good assertion is not checked.
    const blocked = await signIn(await authenticator.get(await signInOptions()))
    expect(blocked.status).toBe(429)
    expect(blocked.headers.get('retry-after')).not.toBeNull()
  })
})

describe('passkeys: second factor', () => {
  async function withTotp(user: SeededUser) {
    // A confirmed TOTP factor (its secret is never opened here): sign-in becomes two steps.
    await testDb()
      .insert(userTotp)
      .values({ userId: user.id, masterKeyId: 'k1', secretSealed: 'unused', confirmedAt: new Date() })
  }

  async function firstStep(user: SeededUser): Promise<string> {
    const res = await post('/auth/login', { email: user.email, password: user.password })
    expect(res.status, await describeResponse(res)).toBe(200)
    return (await json<{ mfa_token: string }>(res)).mfa_token
  }

  async function secondFactorOptions(mfaToken: string): Promise<Options> {
    const res = await post('/auth/passkeys/second-factor/options', { mfa_token: mfaToken })
    expect(res.status, await describeResponse(res)).toBe(200)
    return (await json<{ options: Options }>(res)).options
  }

  it('finishes a two-step sign-in with a passkey instead of a code: amr pwd/hwk/user/mfa, once', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    await withTotp(user)
    const mfaToken = await firstStep(user)
    const options = await secondFactorOptions(mfaToken)
    expect(options.allowCredentials?.map((c) => c.id)).toEqual([authenticator.credentialId])
    const assertion = await authenticator.get(options)
    const res = await post('/auth/passkeys/second-factor', { mfa_token: mfaToken, credential: assertion })
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(sessionCookieOf(res)).toBeDefined()
    const amrs = (await sessionRows(user.id)).map((s) => s.amr)
    expect(amrs).toContainEqual(['pwd', 'hwk', 'user', 'mfa'])
    // The pending sign-in is finished: neither the token nor the assertion works again.
    const again = await post('/auth/passkeys/second-factor', { mfa_token: mfaToken, credential: assertion })
    expect(again.status).toBe(401)
  })

  it("refuses another user's passkey and a challenge of another pending sign-in", async () => {
    const user = await seedUser({ session: true })
    const mine = await register(user)
    await withTotp(user)
    const other = await seedUser({ session: true })
    const theirs = await register(other)
    const token = await firstStep(user)
    const options = await secondFactorOptions(token)
    const wrongKey = await post('/auth/passkeys/second-factor', {
      mfa_token: token,
      credential: await theirs.get(options),
    })
    expect(wrongKey.status).toBe(401)
    // A challenge issued for another pending sign-in of the same user does not finish this one.
    const otherToken = await firstStep(user)
    const otherOptions = await secondFactorOptions(otherToken)
    const crossed = await post('/auth/passkeys/second-factor', {
      mfa_token: token,
      credential: await mine.get(otherOptions),
    })
    expect(crossed.status).toBe(401)
    expect(sessionCookieOf(crossed)).toBeUndefined()
  })

  it('throttles the passkey second step on the counters the password uses', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    await withTotp(user)
    const token = await firstStep(user)
    const bad = await Promise.all(
      Array.from({ length: 12 }, async () =>
        authenticator.get(await secondFactorOptions(token), { rpId: 'evil.example' }),
      ),
    )
    const statuses = (
      await Promise.all(
        bad.map((credential) => post('/auth/passkeys/second-factor', { mfa_token: token, credential })),
      )
    ).map((r) => r.status)
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(LIMIT)
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(12 - LIMIT)
  })
})

describe('passkeys: REQUIRE_TWO_FACTOR', () => {
  const policy = { ISSUER, REQUIRE_TWO_FACTOR: 'true' }
  const postPolicy = (path: string, body: unknown) =>
    callWith(policy, path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })

  it('a passkey counts as the required second factor: the password asks for it, not for enrolment', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const first = await postPolicy('/auth/login', { email: user.email, password: user.password })
    const body = await json<{ mfa_required?: boolean; mfa_token?: string }>(first)
    expect(body.mfa_required, JSON.stringify(body)).toBe(true)
    const options = await json<{ options: Options }>(
      await postPolicy('/auth/passkeys/second-factor/options', { mfa_token: body.mfa_token }),
    )
    const done = await postPolicy('/auth/passkeys/second-factor', {
      mfa_token: body.mfa_token,
      credential: await authenticator.get(options.options),
    })
    expect(done.status, await describeResponse(done)).toBe(200)
    expect((await sessionRows(user.id)).map((r) => r.amr)).toContainEqual(['pwd', 'hwk', 'user', 'mfa'])
  })

  it('without the policy a passkey does not turn on two steps: the password alone signs in', async () => {
    const user = await seedUser({ session: true })
    await register(user)
    const res = await post('/auth/login', { email: user.email, password: user.password })
    expect(res.status).toBe(200)
    expect(sessionCookieOf(res)).toBeDefined()
  })
})

describe('passkeys: account management', () => {
  it('renames and removes (audited); the last way in of a password-less account is kept', async () => {
    const user = await seedUser({ session: true })
    await register(user, 'One')
    const [row] = await passkeyRows(user.id)
    const id = row?.id ?? ''
    const renamed = await call(`/auth/passkeys/${id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', cookie: user.cookie },
      body: JSON.stringify({ name: 'Phone' }),
    })
    expect(renamed.status, await describeResponse(renamed)).toBe(200)
    expect((await json<{ passkey: { name: string } }>(renamed)).passkey.name).toBe('Phone')
    const stranger = await seedUser({ session: true })
    const foreign = await call(`/auth/passkeys/${id}`, {
      method: 'DELETE',
      headers: { cookie: stranger.cookie },
    })
    expect(foreign.status).toBe(404)

    await testDb().execute(`update users set password_hash = '${NO_PASSWORD}' where id = '${user.id}'`)
    const last = await call(`/auth/passkeys/${id}`, { method: 'DELETE', headers: { cookie: user.cookie } })
    expect(last.status).toBe(409)
    expect(await passkeyRows(user.id)).toHaveLength(1)
    await register(user, 'Two')
    const removed = await call(`/auth/passkeys/${id}`, { method: 'DELETE', headers: { cookie: user.cookie } })
    expect(removed.status).toBe(204)
    expect((await passkeyRows(user.id)).map((p) => p.name)).toEqual(['Two'])
    const types = (await testDb().select().from(auditEvents).where(eq(auditEvents.userId, user.id))).map(
      (e) => e.type,
    )
    expect(types).toEqual(expect.arrayContaining(['passkey_renamed', 'passkey_removed']))
  })

  it('removing the last two passkeys of a password-less account at once keeps one', async () => {
    const user = await seedUser({ session: true })
    await register(user, 'A')
    await register(user, 'B')
    await testDb().execute(`update users set password_hash = '${NO_PASSWORD}' where id = '${user.id}'`)
    const ids = (await passkeyRows(user.id)).map((p) => p.id)
    const answers = await Promise.all(
      ids.map((id) => call(`/auth/passkeys/${id}`, { method: 'DELETE', headers: { cookie: user.cookie } })),
    )
    expect(answers.map((r) => r.status).sort()).toEqual([204, 409])
    expect(await passkeyRows(user.id)).toHaveLength(1)
  })

  it('the account page lists passkeys and its forms add, rename and remove them (CSRF-checked)', async () => {
    const user = await seedUser({ session: true })
    const page = await call('/account', { headers: { cookie: user.cookie } })
    const html = await page.text()
    expect(html).toContain('data-passkey="create"')
    expect(html).toContain('src="/passkeys.js"')
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    const { field, cookie } = csrfOf(page, html)
    const cookies = `${user.cookie}; portcullis_csrf=${cookie}`
    const form = (fields: Record<string, string>) =>
      call('/account/passkeys', {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookies },
        body: new URLSearchParams(fields).toString(),
      })
    const authenticator = await softAuthenticator(RP)
    const credential: Attestation = await authenticator.create(await registrationOptions(user))
    const noCsrf = await form({ credential: JSON.stringify(credential), name: 'Desk' })
    expect(noCsrf.status).toBe(403)
    const added = await form({ csrf_token: field, credential: JSON.stringify(credential), name: 'Desk' })
    expect(added.status).toBe(303)
    expect(added.headers.get('location')).toBe('/account?passkey=added#passkeys')
    const listed = await (await call('/account?passkey=added', { headers: { cookie: user.cookie } })).text()
    expect(listed).toContain('Desk')
    expect(listed).toContain('data-testid="passkey-notice"')
    const [row] = await passkeyRows(user.id)
    const remove = await call(`/account/passkeys/${row?.id}/remove`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookies },
      body: new URLSearchParams({ csrf_token: field }).toString(),
    })
    expect(remove.headers.get('location')).toBe('/account?passkey=removed#passkeys')
    expect(await passkeyRows(user.id)).toHaveLength(0)
  })

  it("an admin's factor reset removes the user's passkeys too", async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const reset = await call(`/admin/users/${user.id}/factors`, { method: 'DELETE', headers: adminHeaders() })
    expect(reset.status, await describeResponse(reset)).toBe(200)
    expect((await json<{ passkeys_removed: number }>(reset)).passkeys_removed).toBe(1)
    expect(await passkeyRows(user.id)).toHaveLength(0)
    expect((await signIn(await authenticator.get(await signInOptions()))).status).toBe(401)
  })

  it('with PASSWORD_LOGIN=off, /login still offers passkeys, and they sign in', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const off = { ISSUER, PASSWORD_LOGIN: 'off' }
    const page = await (await callWith(off, '/login')).text()
    expect(page).toContain('data-testid="passkey-sign-in"')
    expect(page).not.toContain('name="password"')
    const options = (
      await json<{ options: Options }>(
        await callWith(off, '/auth/passkeys/sign-in/options', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{}',
        }),
      )
    ).options
    const res = await callWith(off, '/auth/passkeys/sign-in', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ credential: await authenticator.get(options) }),
    })
    expect(res.status, await describeResponse(res)).toBe(200)
  })

  it('serves the script from our origin, and /login offers the passkey button', async () => {
    const script = await call('/passkeys.js')
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toContain('text/javascript')
    expect(await script.text()).toContain('navigator.credentials.get')
    const login = await call('/login')
    expect(await login.text()).toContain('data-testid="passkey-sign-in"')
  })
})

// Round trips as the local gateway counts them (every statement or batch is one HTTP request).
describe('passkeys: database round trips', () => {
  it('options: none; sign-in: three (lookup + claim, spend + counter, session batch); a refusal: two', async () => {
    const user = await seedUser({ session: true })
    const authenticator = await register(user)
    const options = await post('/auth/passkeys/sign-in/options', {})
    await expectRoundTrips(options, { httpRequests: 0, wsConnections: 0 })
    const challenge = (await json<{ options: Options }>(options)).options
    const ok = await signIn(await authenticator.get(challenge))
    expect(ok.status, await describeResponse(ok)).toBe(200)
    await expectRoundTrips(ok, { httpRequests: 3, wsConnections: 0 })
    const refused = await signIn(
      await authenticator.get(await signInOptions(), { origin: 'https://evil.example' }),
    )
    expect(refused.status).toBe(401)
    await expectRoundTrips(refused, { httpRequests: 2, wsConnections: 0 })
  })

  it('registration: options one (the exclude list), adding three (spend, cap, insert with audit); second factor: four', async () => {
    const user = await seedUser({ session: true })
    const options = await post('/auth/passkeys/registration/options', {}, user.cookie)
    // The session lookup is one more.
    await expectRoundTrips(options, { httpRequests: 2, wsConnections: 0 })
    const authenticator = await softAuthenticator(RP)
    const creation = (await json<{ options: Options }>(options)).options
    const added = await post(
      '/auth/passkeys',
      { credential: await authenticator.create(creation) },
      user.cookie,
    )
    expect(added.status, await describeResponse(added)).toBe(201)
    await expectRoundTrips(added, { httpRequests: 4, wsConnections: 0 })

    await testDb()
      .insert(userTotp)
      .values({ userId: user.id, masterKeyId: 'k1', secretSealed: 'unused', confirmedAt: new Date() })
    const first = await post('/auth/login', { email: user.email, password: user.password })
    const mfaToken = (await json<{ mfa_token: string }>(first)).mfa_token
    const factorOptions = await post('/auth/passkeys/second-factor/options', { mfa_token: mfaToken })
    await expectRoundTrips(factorOptions, { httpRequests: 1, wsConnections: 0 })
    const request = (await json<{ options: Options }>(factorOptions)).options
    const done = await post('/auth/passkeys/second-factor', {
      mfa_token: mfaToken,
      credential: await authenticator.get(request),
    })
    expect(done.status, await describeResponse(done)).toBe(200)
    await expectRoundTrips(done, { httpRequests: 4, wsConnections: 0 })
  })
})
