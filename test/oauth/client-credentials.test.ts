import { createLocalJWKSet, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { adminClient, basicAuth, ISSUER, postForm } from '../helpers/oauth'
import { adminHeaders, call, describeResponse } from '../helpers/worker'

describe('client_credentials, introspection and revocation', () => {
  it('issues an RFC 9068 token that verifies against the served JWKS', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials', scope: 'apikeys:verify' },
      basicAuth(client),
    )
    expect(res.status, await describeResponse(res)).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = (await res.json()) as { access_token: string; token_type: string; scope: string }
    expect(body).toMatchObject({ token_type: 'Bearer', scope: 'apikeys:verify' })
    const jwks = (await (await call('/.well-known/jwks.json')).json()) as { keys: never[] }
    const { payload, protectedHeader } = await jwtVerify(
      body.access_token,
      createLocalJWKSet({ keys: jwks.keys }),
      {
        issuer: ISSUER,
        audience: ISSUER,
        typ: 'at+jwt',
        algorithms: ['ES256'],
      },
    )
    expect(protectedHeader.alg).toBe('ES256')
    expect(payload).toMatchObject({
      sub: client.client_id,
      client_id: client.client_id,
      scope: 'apikeys:verify',
    })

    const active = await postForm('/oauth/introspect', { token: body.access_token }, basicAuth(client))
    expect(active.status, await describeResponse(active)).toBe(200)
    expect(await active.json()).toMatchObject({
      active: true,
      client_id: client.client_id,
      scope: 'apikeys:verify',
    })

    const revoked = await postForm('/oauth/revoke', { token: body.access_token }, basicAuth(client))
    expect(revoked.status, await describeResponse(revoked)).toBe(200)
    const after = await postForm('/oauth/introspect', { token: body.access_token }, basicAuth(client))
    expect(await after.json()).toEqual({ active: false })
  })

  it('accepts client_secret_post and refuses a wrong secret or unknown client', async () => {
    const client = await adminClient({
      grant_types: ['client_credentials'],
      scope: 'apikeys:verify',
      token_endpoint_auth_method: 'client_secret_post',
    })
    const ok = await postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: client.client_id,
      client_secret: client.client_secret ?? '',
    })
    expect(ok.status, await describeResponse(ok)).toBe(200)
    const wrong = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials' },
      basicAuth({ ...client, client_secret: 'nope' }),
    )
    expect(wrong.status).toBe(401)
    expect(wrong.headers.get('www-authenticate')).toContain('Basic')
    expect(await wrong.json()).toMatchObject({ error: 'invalid_client' })
    const unknown = await postForm('/oauth/token', {
      grant_type: 'client_credentials',
      client_id: 'nobody',
      client_secret: 'x',
    })
    expect(unknown.status).toBe(401)
  })

  it('refuses scopes beyond the registration', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await postForm(
      '/oauth/token',
      { grant_type: 'client_credentials', scope: 'admin' },
      basicAuth(client),
    )
    expect(res.status).toBe(400)
    expect(await res.json()).toMatchObject({ error: 'invalid_scope' })
  })

  it('introspection needs client authentication', async () => {
    const res = await postForm('/oauth/introspect', { token: 'abc' })
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ error: 'invalid_client' })
  })

  it('a disabled client can no longer authenticate and its tokens stop working', async () => {
    const client = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const res = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    const { access_token } = (await res.json()) as { access_token: string }
    const other = await adminClient({ grant_types: ['client_credentials'], scope: 'apikeys:verify' })
    const disable = await call(`/admin/clients/${client.client_id}/disable`, {
      method: 'POST',
      headers: adminHeaders(),
    })
    expect(disable.status, await describeResponse(disable)).toBe(200)
    const again = await postForm('/oauth/token', { grant_type: 'client_credentials' }, basicAuth(client))
    expect(again.status).toBe(401)
    const intro = await postForm('/oauth/introspect', { token: access_token }, basicAuth(other))
    expect(await intro.json()).toEqual({ active: false })
  })
})
