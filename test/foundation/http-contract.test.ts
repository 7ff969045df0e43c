import { describe, expect, it } from 'vitest'
import { call, describeResponse, postJson } from '../helpers/worker'

describe('health', () => {
  it('reports the database up and migrated', async () => {
    const res = await call('/healthz')
    expect(res.status, await describeResponse(res)).toBe(200)
    const body = (await res.json()) as { status: string; database: Record<string, unknown> }
    expect(body.status).toBe('ok')
    expect(body.database.reachable).toBe(true)
    expect(body.database.migration).toMatchObject({ up_to_date: true })
  })
})

describe('error model', () => {
  it('answers an unknown route with a 404 problem', async () => {
    const res = await call('/no/such/route')
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toBe('application/problem+json')
    expect(await res.json()).toMatchObject({ status: 404, code: 'not_found', type: expect.any(String) })
  })

  it('answers a wrong method on a known path with 405 and Allow', async () => {
    const res = await call('/healthz', { method: 'DELETE' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toContain('GET')
    expect(await res.json()).toMatchObject({ code: 'method_not_allowed' })
  })

  it('answers an unknown OAuth route in RFC 6749 form', async () => {
    const res = await call('/oauth/nowhere', { method: 'POST' })
    expect(res.status).toBe(404)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toMatchObject({ error: 'not_found' })
  })

  it('refuses a body over 64 KiB with 413', async () => {
    const res = await postJson('/admin/purge', { filler: 'x'.repeat(70 * 1024) })
    expect(res.status, await describeResponse(res)).toBe(413)
    expect(await res.json()).toMatchObject({ code: 'payload_too_large' })
  })

  it.each(['/healthz', '/no/such/route', '/oauth/nowhere'])(
    'gives every response a request id (%s)',
    async (path) => {
      const res = await call(path)
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    },
  )
})

describe('openapi', () => {
  it('serves an OpenAPI 3.1 document listing the routes', async () => {
    const res = await call('/openapi.json')
    expect(res.status).toBe(200)
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> }
    expect(doc.openapi).toBe('3.1.0')
    expect(doc.paths['/healthz']).toBeDefined()
    expect(doc.paths['/admin/purge']).toBeDefined()
  })
})
