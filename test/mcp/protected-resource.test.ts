import { describe, expect, it } from 'vitest'
import { clientCredentialsToken, ISSUER, webClient } from '../helpers/oauth'
import { call } from '../helpers/worker'

const METADATA_URL = `${ISSUER}/.well-known/oauth-protected-resource`

describe('RFC 9728 protected-resource metadata for Portcullis APIs (issue 11)', () => {
  it('serves the document: resource = issuer, authorization server = issuer, scopes listed', async () => {
    const res = await call('/.well-known/oauth-protected-resource')
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBe('*')
    const body = (await res.json()) as Record<string, unknown>
    expect(body.resource).toBe(ISSUER)
    expect(body.authorization_servers).toEqual([ISSUER])
    expect(body.scopes_supported).toEqual(expect.arrayContaining(['openid', 'apikeys:write']))
    expect(body.bearer_methods_supported).toEqual(['header'])
  })

  it.each([
    ['/api-keys', 'apikeys:write'],
    ['/oauth/userinfo', 'openid'],
  ])('a 401 at %s names resource_metadata and scope %s', async (path, scope) => {
    const res = await call(path, { headers: { authorization: 'Bearer not-a-token' } })
    expect(res.status).toBe(401)
    const challenge = res.headers.get('www-authenticate') ?? ''
    expect(challenge).toMatch(/^Bearer /)
    expect(challenge).toContain(`resource_metadata="${METADATA_URL}"`)
    expect(challenge).toContain(`scope="${scope}"`)
    expect(challenge).toContain('error="invalid_token"')
  })

  it('a 401 without any credential still carries the challenge (no error code)', async () => {
    const res = await call('/api-keys')
    expect(res.status).toBe(401)
    const challenge = res.headers.get('www-authenticate') ?? ''
    expect(challenge).toContain(`resource_metadata="${METADATA_URL}"`)
    expect(challenge).not.toContain('error=')
  })

  it('a 403 insufficient_scope names the error, the scope needed and the metadata', async () => {
    const client = await webClient({ grant_types: ['client_credentials'], scope: 'profile' })
    const token = await clientCredentialsToken(client, 'profile')
    const res = await call('/oauth/userinfo', { headers: { authorization: `Bearer ${token}` } })
    expect(res.status).toBe(403)
    const challenge = res.headers.get('www-authenticate') ?? ''
    expect(challenge).toContain('error="insufficient_scope"')
    expect(challenge).toContain('scope="openid"')
    expect(challenge).toContain(`resource_metadata="${METADATA_URL}"`)
  })

  it('OAuth endpoints that are not resources keep their own challenges', async () => {
    const res = await call('/oauth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${btoa('x:y')}` },
      body: 'grant_type=client_credentials',
    })
    expect(res.status).toBe(401)
    expect(res.headers.get('www-authenticate') ?? '').not.toContain('resource_metadata')
  })
})
