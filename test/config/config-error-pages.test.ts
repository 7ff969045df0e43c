import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import worker from '../../functions/index'

// The real Worker over bindings with two problems: no MASTER_KEY, a malformed ACCESS_TOKEN_TTL.
const BROKEN = { ...env, MASTER_KEY: '', ACCESS_TOKEN_TTL: 'soon', ADMIN_TOKEN: 'short-admin-secret' }

async function fetchBroken(path: string, headers: Record<string, string>): Promise<Response> {
  const ctx = createExecutionContext()
  const res = await worker.fetch(new Request(`http://portcullis.test${path}`, { headers }), BROKEN, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

describe('an invalid configuration (issue 12)', () => {
  it('answers a browser with a readable HTML 500 that names nothing', async () => {
    const res = await fetchBroken('/login', { accept: 'text/html,application/xhtml+xml' })
    expect(res.status).toBe(500)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    const page = await res.text()
    expect(page).toContain('<h1>Temporarily unavailable</h1>')
    for (const secretish of ['MASTER_KEY', 'ACCESS_TOKEN_TTL', 'ADMIN_TOKEN', 'short-admin-secret', 'soon']) {
      expect(page).not.toContain(secretish)
    }
  })

  it('answers an API caller with one problem listing every variable at fault, no values', async () => {
    const res = await fetchBroken('/auth/session', { accept: 'application/json' })
    expect(res.status).toBe(500)
    const body = (await res.json()) as { code: string; detail: string }
    expect(body.code).toBe('invalid_config')
    expect(body.detail).toContain('MASTER_KEY')
    expect(body.detail).toContain('ACCESS_TOKEN_TTL')
    expect(body.detail).toContain('ADMIN_TOKEN')
    expect(body.detail).not.toContain('short-admin-secret')
    expect(body.detail).not.toContain('soon')
  })
})
