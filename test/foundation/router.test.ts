import { TrieRouter } from 'hono/router/trie-router'
import { describe, expect, it } from 'vitest'
import { createApp } from '../../functions/app'
import { StaticPathCachingRouter } from '../../functions/router'
import { call, describeResponse } from '../helpers/worker'

// A table shaped like the app's: global middleware, static paths beside parameters at the same
// depth, a wildcard middleware under a prefix, and several methods on one path.
const ROUTES: [method: string, path: string, handler: string][] = [
  ['ALL', '/*', 'cors'],
  ['ALL', '/*', 'context'],
  ['POST', '/api-keys/verify', 'verify'],
  ['GET', '/api-keys', 'list'],
  ['POST', '/api-keys', 'create'],
  ['GET', '/api-keys/:id{[0-9a-f-]{36}}', 'show'],
  ['POST', '/api-keys/:id{[0-9a-f-]{36}}/rotate', 'rotate'],
  ['ALL', '/tenants/*', 'tenant-gate'],
  ['POST', '/tenants/invitations/accept', 'accept'],
  ['GET', '/tenants/:id/members', 'members'],
  ['POST', '/oauth/token', 'token'],
  ['GET', '/oauth/userinfo', 'userinfo'],
  ['POST', '/oauth/userinfo', 'userinfo-post'],
]

const PATHS = [
  '/api-keys/verify',
  '/api-keys',
  '/api-keys/0b7f4c1e-4d1a-4c8e-9a51-1f2e3d4c5b6a',
  '/api-keys/0b7f4c1e-4d1a-4c8e-9a51-1f2e3d4c5b6a/rotate',
  '/api-keys/verify/',
  '/tenants/invitations/accept',
  '/tenants/0b7f4c1e/members',
  '/oauth/token',
  '/oauth/userinfo',
  '/nowhere',
]

function both(): [StaticPathCachingRouter<string>, TrieRouter<string>] {
  const cached = new StaticPathCachingRouter<string>()
  const trie = new TrieRouter<string>()
  for (const [method, path, handler] of ROUTES) {
    cached.add(method, path, handler)
    trie.add(method, path, handler)
  }
  return [cached, trie]
}

describe('StaticPathCachingRouter', () => {
  it('answers every method and path exactly as the trie does, from the cache too', () => {
    const [cached, trie] = both()
    for (const round of [1, 2, 3]) {
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND']) {
        for (const path of PATHS) {
          expect(cached.match(method, path), `${method} ${path}, round ${round}`).toEqual(
            trie.match(method, path),
          )
        }
      }
    }
    // The cases the cache exists for: the verify and token routes after their middleware.
    expect(cached.match('POST', '/api-keys/verify')[0].map(([handler]) => handler)).toEqual([
      'cors',
      'context',
      'verify',
    ])
    expect(cached.match('POST', '/tenants/invitations/accept')[0].map(([handler]) => handler)).toEqual([
      'cors',
      'context',
      'tenant-gate',
      'accept',
    ])
  })

  it('keeps only registered static paths under the usual methods, whatever clients send', () => {
    const [cached] = both()
    for (let i = 0; i < 500; i++) {
      cached.match('GET', `/made-up/${i}`)
      cached.match('GET', `/api-keys/${crypto.randomUUID()}`)
      cached.match(`METHOD${i}`, '/api-keys/verify')
    }
    expect(cached.cachedPaths).toBe(0)
    cached.match('POST', '/api-keys/verify')
    cached.match('POST', '/api-keys/verify')
    cached.match('GET', '/oauth/userinfo')
    expect(cached.cachedPaths).toBe(2)
  })

  it('forgets what it kept when a route is added later', () => {
    const [cached, trie] = both()
    expect(cached.match('POST', '/oauth/token')[0].map(([handler]) => handler)).toEqual([
      'cors',
      'context',
      'token',
    ])
    cached.add('POST', '/oauth/token', 'token-audit')
    trie.add('POST', '/oauth/token', 'token-audit')
    expect(cached.match('POST', '/oauth/token')[0].map(([handler]) => handler)).toEqual([
      'cors',
      'context',
      'token',
      'token-audit',
    ])
    expect(cached.match('POST', '/oauth/token')).toEqual(trie.match('POST', '/oauth/token'))
  })

  it('is the router the app dispatches with', async () => {
    expect(createApp().router).toBeInstanceOf(StaticPathCachingRouter)
    // A wrong method on a cached path still gets its 405 with Allow, the second time too.
    for (const round of [1, 2]) {
      const response = await call('/api-keys/verify', { method: 'PUT' })
      expect(response.status, `round ${round}: ${await describeResponse(response.clone())}`).toBe(405)
      expect(response.headers.get('allow')).toBe('POST')
    }
  })
})
