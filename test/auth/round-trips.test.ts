import { describe, expect, it } from 'vitest'
import { STRONG_PASSWORD, seedUser, uniqueEmail } from '../helpers/accounts'
import { expectRoundTrips } from '../helpers/round-trips'
import { call, describeResponse, postJson } from '../helpers/worker'

// Round trips per request as the local gateway counts them, waitUntil work (audit, session
// touch, mail delivery) included: the critical path is the total minus that.
describe('database round trips', () => {
  it('login: two, both on the critical path (lookup + claim batch; session + audit batch)', async () => {
    const user = await seedUser()
    await postJson('/auth/login', { email: user.email, password: user.password })
    const res = await postJson('/auth/login', { email: user.email, password: user.password })
    expect(res.status, await describeResponse(res)).toBe(200)
    await expectRoundTrips(res, { httpRequests: 2, wsConnections: 0 })
  })

  it('failed login: two (lookup + claim batch; the awaited user_login_failed)', async () => {
    const user = await seedUser()
    const res = await postJson('/auth/login', { email: user.email, password: 'Wrong-Password-1' })
    expect(res.status, await describeResponse(res)).toBe(401)
    await expectRoundTrips(res, { httpRequests: 2, wsConnections: 0 })
  })

  it('GET /auth/session: one', async () => {
    const user = await seedUser()
    const login = await postJson('/auth/login', { email: user.email, password: user.password })
    const cookie = login.headers.getSetCookie()[0]?.split(';')[0] ?? ''
    const res = await call('/auth/session', { headers: { cookie } })
    expect(res.status).toBe(200)
    await expectRoundTrips(res, { httpRequests: 1, wsConnections: 0 })
  })

  it('register: one batch with its audit event, then the mail delivery off the critical path', async () => {
    const res = await postJson('/auth/register', { email: uniqueEmail(), password: STRONG_PASSWORD })
    expect(res.status).toBe(201)
    await expectRoundTrips(res, { httpRequests: 3, wsConnections: 0 })
  })

  it('register from a known address: the per-IP claim first, one more', async () => {
    const res = await postJson(
      '/auth/register',
      { email: uniqueEmail(), password: STRONG_PASSWORD },
      { 'cf-connecting-ip': '198.51.100.77' },
    )
    expect(res.status).toBe(201)
    await expectRoundTrips(res, { httpRequests: 4, wsConnections: 0 })
  })
})
