import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { desc, eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { sessions } from '../../db/schema'
import { createApp } from '../../functions/app'
import { parseIpAddress } from '../../functions/middleware/client-ip'
import { seedUser } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { BASE, describeResponse, postJson } from '../helpers/worker'

/** Through the front door, carrying `request.cf` as Cloudflare's edge delivers it. */
function loginViaEdge(body: unknown, headers: Record<string, string>): Promise<Response> {
  return postJson('/auth/login', body, headers)
}

/** Straight into the app with some variables changed and no `request.cf`: not via Cloudflare. */
async function loginDirect(
  vars: Record<string, string>,
  body: unknown,
  headers: Record<string, string>,
): Promise<Response> {
  const ctx = createExecutionContext()
  const request = new Request(`${BASE}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  const res = await createApp().fetch(request, { ...env, ...vars }, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

/** The address recorded on the user's newest session (written in the sign-in's own statement). */
async function sessionIp(userId: string): Promise<string | null> {
  const [row] = await testDb()
    .select({ ip: sessions.ip })
    .from(sessions)
    .where(eq(sessions.userId, userId))
    .orderBy(desc(sessions.createdAt))
    .limit(1)
  if (row === undefined) {
    throw new Error('no session was written')
  }
  return row.ip
}

describe('parseIpAddress', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    [' 198.51.100.1 ', '198.51.100.1'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['::1', '::1'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
  ])('accepts %j as %j', (text, canonical) => {
    expect(parseIpAddress(text)).toBe(canonical)
  })

  it.each([
    '',
    'unknown',
    '<script>alert(1)</script>',
    "203.0.113.7'; DROP TABLE sessions; --",
    '203.0.113.7:443',
    '203.0.113',
    '203.0.113.7.1',
    '256.1.1.1',
    '01.2.3.4',
    '0x7f.0.0.1',
    '2130706433',
    '[::1]',
    'fe80::1%eth0',
    '2001:db8::1::2',
    'localhost',
    'a'.repeat(1000),
    '203.0.113.7\u0000',
  ])('refuses %j', (text) => {
    expect(parseIpAddress(text)).toBeNull()
  })
})

describe('client address (TRUSTED_IP_HEADER, CF-Connecting-IP)', () => {
  it('records a valid CF-Connecting-IP from a request that came through the edge', async () => {
    const user = await seedUser()
    const res = await loginViaEdge(
      { email: user.email, password: user.password },
      { 'cf-connecting-ip': '2001:DB8:0::7' },
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await sessionIp(user.id)).toBe('2001:db8::7')
  })

  it.each(['not an address', '<img src=x onerror=alert(1)>', '203.0.113.7:8080', 'x'.repeat(400)])(
    'stores nothing for CF-Connecting-IP %j',
    async (header) => {
      const user = await seedUser()
      const res = await loginViaEdge(
        { email: user.email, password: user.password },
        { 'cf-connecting-ip': header },
      )
      expect(res.status, await describeResponse(res)).toBe(200)
      expect(await sessionIp(user.id)).toBeNull()
    },
  )

  it('ignores CF-Connecting-IP on a request that did not come through Cloudflare', async () => {
    const user = await seedUser()
    const res = await loginDirect(
      {},
      { email: user.email, password: user.password },
      { 'cf-connecting-ip': '203.0.113.50' },
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await sessionIp(user.id)).toBeNull()
  })

  it('reads only the configured header, taking the entry the trusted proxy appended', async () => {
    const user = await seedUser()
    const res = await loginDirect(
      { TRUSTED_IP_HEADER: 'X-Forwarded-For' },
      { email: user.email, password: user.password },
      { 'x-forwarded-for': '10.9.9.9, 198.51.100.23', 'cf-connecting-ip': '203.0.113.51' },
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await sessionIp(user.id)).toBe('198.51.100.23')
  })

  it('records no address when TRUSTED_IP_HEADER is none', async () => {
    const user = await seedUser()
    const res = await loginDirect(
      { TRUSTED_IP_HEADER: 'none' },
      { email: user.email, password: user.password },
      { 'cf-connecting-ip': '203.0.113.52', 'x-real-ip': '203.0.113.53' },
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(await sessionIp(user.id)).toBeNull()
  })

  it('refuses a TRUSTED_IP_HEADER that is not a header name, naming the variable', async () => {
    const res = await loginDirect(
      { TRUSTED_IP_HEADER: 'x real ip' },
      { email: 'a@example.test', password: 'x' },
      {},
    )
    expect(res.status, await describeResponse(res)).toBe(500)
    expect(await res.text()).toContain('TRUSTED_IP_HEADER')
  })
})
