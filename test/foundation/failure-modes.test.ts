import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { callWith, expectTransactionRouteUnavailable } from '../helpers/worker'

const fetchWith = callWith

describe('database unavailable', () => {
  // A loopback port nothing listens on: the gateway cannot connect and answers 503.
  const deadDatabase = { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nowhere' }
  // The gateway itself is down: the driver's fetch fails.
  const deadGateway = { DB_GATEWAY_URL: 'http://127.0.0.1:1' }

  it.each([
    ['database', deadDatabase],
    ['gateway', deadGateway],
  ])('health says unreachable when the %s is down', async (_what, bindings) => {
    const res = await fetchWith(bindings, '/healthz')
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(await res.json()).toMatchObject({
      status: 'unavailable',
      reasons: ['database_unreachable'],
      database: { reachable: false },
    })
  })

  // Issue 18 item 2: the one interactive transaction (a WebSocket session through the gateway)
  // answered 500 when the gateway was down or Postgres refused the connection.
  it.each([
    ['database', deadDatabase],
    ['gateway', deadGateway],
  ])(
    'the interactive-transaction route answers 503 with Retry-After when the %s is down',
    (_what, bindings) => expectTransactionRouteUnavailable(bindings),
  )

  it('answers 503 problem with Retry-After, never 500', async () => {
    const res = await fetchWith(deadDatabase, '/admin/purge', {
      method: 'POST',
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
    })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('5')
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(await res.json()).toMatchObject({ code: 'database_unavailable' })
  })
})

describe('configuration', () => {
  it.each([
    ['MASTER_KEY', { MASTER_KEY: undefined }],
    ['MASTER_KEY', { MASTER_KEY: 'k1:too-short' }],
    ['ADMIN_TOKEN', { ADMIN_TOKEN: 'short' }],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://nope' }],
    ['ACCESS_TOKEN_TTL', { ACCESS_TOKEN_TTL: 'an hour' }],
    ['REQUIRE_APPROVAL', { REQUIRE_APPROVAL: 'maybe' }],
    ['TIER_QUOTAS', { TIER_QUOTAS: 'gold=5' }],
  ])('a bad %s fails with a 500 problem naming it', async (variable, bindings) => {
    const res = await fetchWith(bindings, '/openapi.json')
    expect(res.status).toBe(500)
    const body = (await res.json()) as { code: string; detail: string }
    expect(body.code).toBe('invalid_config')
    expect(body.detail).toContain(variable)
    // The value itself is never echoed.
    for (const value of Object.values(bindings)) {
      if (value !== undefined) {
        expect(body.detail).not.toContain(value)
      }
    }
  })
})

describe('/healthz reason codes', () => {
  it('a bad configuration is 503 config_invalid naming the variable, never its value', async () => {
    const res = await fetchWith({ ADMIN_TOKEN: 'short-secret-value' }, '/healthz')
    expect(res.status).toBe(503)
    const text = await res.text()
    expect(JSON.parse(text)).toMatchObject({
      status: 'unavailable',
      reasons: ['config_invalid'],
      config: { variable: 'ADMIN_TOKEN' },
    })
    expect(text).not.toContain('short-secret-value')
  })

  it('a healthy service is 200 with no reasons and its signing keys checked', async () => {
    const res = await fetchWith({}, '/healthz')
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ status: 'ok', reasons: [], signing_keys: { undecryptable: [] } })
  })
})

describe('admin authentication', () => {
  it('401 without a credential, 401 with a wrong token', async () => {
    const none = await fetchWith({}, '/admin/purge', { method: 'POST' })
    expect(none.status).toBe(401)
    const wrong = await fetchWith({}, '/admin/purge', {
      method: 'POST',
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}x` },
    })
    expect(wrong.status).toBe(401)
    expect(await wrong.json()).toMatchObject({ code: 'unauthenticated' })
  })
})
