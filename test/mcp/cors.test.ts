import { describe, expect, it } from 'vitest'
import { postForm } from '../helpers/oauth'
import { call } from '../helpers/worker'

const ORIGIN = 'http://127.0.0.1:5173'

function preflight(path: string, method = 'POST'): Promise<Response> {
  return call(path, {
    method: 'OPTIONS',
    headers: {
      origin: ORIGIN,
      'access-control-request-method': method,
      'access-control-request-headers': 'content-type, authorization',
    },
  })
}

describe('CORS for browser-based public clients (issue 11)', () => {
  it.each([
    ['/oauth/token', 'POST'],
    ['/oauth/register', 'POST'],
    ['/oauth/revoke', 'POST'],
    ['/oauth/userinfo', 'GET'],
    ['/oauth/device_authorization', 'POST'],
    ['/.well-known/jwks.json', 'GET'],
    ['/.well-known/oauth-authorization-server', 'GET'],
    ['/.well-known/openid-configuration', 'GET'],
  ])(
    'a preflight to %s is a 204 naming %s, Authorization and Content-Type, never credentials',
    async (path, method) => {
      const res = await preflight(path, method)
      expect(res.status).toBe(204)
      expect(res.headers.get('access-control-allow-origin')).toBe('*')
      expect(res.headers.get('access-control-allow-methods')).toContain(method)
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization')
      expect(res.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('content-type')
      expect(res.headers.get('access-control-allow-credentials')).toBeNull()
    },
  )

  it('a token endpoint error is readable cross-origin (and WWW-Authenticate exposed)', async () => {
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'authorization_code', code: 'nope' },
      { origin: ORIGIN },
    )
    expect(res.status).toBe(401)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    expect(res.headers.get('access-control-expose-headers')).toContain('WWW-Authenticate')
    expect(res.headers.get('access-control-allow-credentials')).toBeNull()
  })

  it('a discovery document and a userinfo 401 carry Access-Control-Allow-Origin', async () => {
    const meta = await call('/.well-known/oauth-authorization-server', { headers: { origin: ORIGIN } })
    expect(meta.headers.get('access-control-allow-origin')).toBe('*')
    const userinfo = await call('/oauth/userinfo', { headers: { origin: ORIGIN } })
    expect(userinfo.status).toBe(401)
    expect(userinfo.headers.get('access-control-allow-origin')).toBe('*')
  })

  it.each(['/auth/login', '/auth/me', '/oauth/authorize', '/oauth/consent', '/login', '/api-keys'])(
    '%s stays same-origin: no CORS headers on a preflight or a response',
    async (path) => {
      const pre = await preflight(path)
      expect(pre.status).not.toBe(204)
      expect(pre.headers.get('access-control-allow-origin')).toBeNull()
      const res = await call(path, { headers: { origin: ORIGIN } })
      expect(res.headers.get('access-control-allow-origin')).toBeNull()
    },
  )
})
