import { and, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, loginThrottles } from '../../db/schema'
import { testDb, unique } from '../helpers/db'
import { adminClient, DEVICE_GRANT, postForm, type SeededUser, seedUser } from '../helpers/oauth'
import { call, describeResponse, realPostgres } from '../helpers/worker'

/** DEVICE_MAX_ATTEMPTS_PER_USER and DEVICE_MAX_ATTEMPTS_PER_IP at their defaults. */
const USER_LIMIT = 10
const IP_LIMIT = 50

/** An address of the benchmarking range (RFC 2544) no other test uses. */
function uniqueIp(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3))
  return `198.${18 + ((bytes[0] ?? 0) % 2)}.${bytes[1]}.${bytes[2]}`
}

/** A code in the user-code alphabet that no device request holds (8 random consonants). */
function wrongCode(): string {
  const alphabet = 'BCDFGHJKLMNPQRSTVWXZ'
  const bytes = crypto.getRandomValues(new Uint8Array(8))
  const code = Array.from(bytes, (b) => alphabet[b % 20]).join('')
  return `${code.slice(0, 4)}-${code.slice(4)}`
}

async function startDevice(
  clientName: string,
): Promise<{ clientId: string; deviceCode: string; userCode: string }> {
  const client = await adminClient({
    client_name: clientName,
    grant_types: [DEVICE_GRANT],
    token_endpoint_auth_method: 'none',
    scope: 'openid',
  })
  const res = await postForm('/oauth/device_authorization', { client_id: client.client_id, scope: 'openid' })
  expect(res.status, await describeResponse(res)).toBe(200)
  const body = (await res.json()) as { device_code: string; user_code: string }
  return { clientId: client.client_id, deviceCode: body.device_code, userCode: body.user_code }
}

/** GET /device as the user; the page plus what a browser would send back with the form. */
async function openPage(user: SeededUser, query = '') {
  const page = await call(`/device${query}`, { headers: { cookie: user.cookie } })
  const text = await page.text()
  const csrf = /name="csrf_token" value="([^"]+)"/.exec(text)?.[1] ?? ''
  const cookies = page.headers.getSetCookie().map((c) => c.split(';')[0])
  return { status: page.status, text, csrf, cookie: [user.cookie, ...cookies].join('; ') }
}

function post(
  session: { csrf: string; cookie: string },
  form: Record<string, string>,
  ip: string = uniqueIp(),
): Promise<Response> {
  return call('/device', {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: session.cookie,
      'cf-connecting-ip': ip,
    },
    body: new URLSearchParams({ ...form, csrf_token: session.csrf }).toString(),
  })
}

async function pollStatus(clientId: string, deviceCode: string): Promise<string> {
  const res = await postForm('/oauth/token', {
    grant_type: DEVICE_GRANT,
    device_code: deviceCode,
    client_id: clientId,
  })
  return ((await res.json()) as { error?: string }).error ?? 'issued'
}

describe.skipIf(!realPostgres)('device user codes cannot be guessed (issue 9 #5, RFC 8628 §5.1)', () => {
  it('GET /device?user_code= tells a live code from a dead one in nothing', async () => {
    const name = unique('Guessing target')
    const device = await startDevice(name)
    const user = await seedUser()
    const live = await openPage(user, `?user_code=${encodeURIComponent(device.userCode)}`)
    const dead = await openPage(user, `?user_code=${encodeURIComponent(wrongCode())}`)
    expect(live.status).toBe(200)
    expect(dead.status).toBe(200)
    expect(live.text).not.toContain(name)
    const shape = (text: string) =>
      text
        .replace(/value="[^"]*"/g, 'value=""')
        .replace(/[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}/g, '')
    expect(shape(live.text)).toBe(shape(dead.text))
  })

  it(`15 concurrent wrong codes from one user: ${USER_LIMIT} looked up, the rest 429; then even the live code is refused`, async () => {
    const device = await startDevice(unique('Target'))
    const user = await seedUser()
    const session = await openPage(user)
    const burst = await Promise.all(
      Array.from({ length: 15 }, () => post(session, { user_code: wrongCode(), decision: 'approve' })),
    )
    const statuses = burst.map((r) => r.status).sort()
    expect(statuses).toEqual([...Array(USER_LIMIT).fill(400), ...Array(15 - USER_LIMIT).fill(429)])
    const refused = burst.find((r) => r.status === 429)
    expect(refused?.headers.get('content-type')).toMatch(/^text\/html/)
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await refused?.text()).toContain('Too many codes tried')

    const live = await post(session, { user_code: device.userCode, decision: 'approve' })
    expect(live.status, await describeResponse(live)).toBe(429)
    expect(await pollStatus(device.clientId, device.deviceCode)).toBe('authorization_pending')
    // Another signed-in user (another address) is not affected.
    const other = await openPage(await seedUser())
    const approved = await post(other, { user_code: device.userCode, decision: 'approve' })
    expect(approved.status, await describeResponse(approved)).toBe(200)
  })

  it('an address over its limit is refused for every user', async () => {
    const ip = uniqueIp()
    const now = Date.now()
    await testDb()
      .insert(loginThrottles)
      .values({
        subject: `device-ip:${ip}`,
        failures: IP_LIMIT,
        windowStartedAt: new Date(now),
        expiresAt: new Date(now + 900_000),
      })
    const device = await startDevice(unique('Target'))
    const session = await openPage(await seedUser())
    const res = await post(session, { user_code: device.userCode }, ip)
    expect(res.status, await describeResponse(res)).toBe(429)
  })

  it('a live code entered without a decision shows the asking client, then approves; live codes use up nothing', async () => {
    const name = unique('Smart TV')
    const device = await startDevice(name)
    const user = await seedUser()
    const session = await openPage(user, `?user_code=${device.userCode}`)
    const review = await post(session, { user_code: device.userCode.toLowerCase() })
    expect(review.status, await describeResponse(review)).toBe(200)
    const page = await review.text()
    expect(page).toContain(name)
    expect(page).toContain('value="approve"')
    const approved = await post(session, { user_code: device.userCode, decision: 'approve' })
    expect(approved.status, await describeResponse(approved)).toBe(200)
    // The decision and its audit row are one statement: the row is there with the answer.
    const events = await testDb()
      .select()
      .from(auditEvents)
      .where(and(eq(auditEvents.userId, user.id), eq(auditEvents.type, 'device_code_approved')))
    expect(events).toMatchObject([{ clientId: device.clientId }])
    expect(await pollStatus(device.clientId, device.deviceCode)).toBe('issued')
    const [counter] = await testDb()
      .select({ failures: loginThrottles.failures })
      .from(loginThrottles)
      .where(eq(loginThrottles.subject, `device-user:${user.id}`))
    expect(counter?.failures).toBe(0)
  })

  it.each([['maybe'], ['']])('refuses decision=%j with 400', async (decision) => {
    const session = await openPage(await seedUser())
    const res = await post(session, { user_code: wrongCode(), decision })
    expect(res.status).toBe(400)
  })
})
