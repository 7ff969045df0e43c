import { sql } from 'drizzle-orm'
import { describe, expect, inject, it } from 'vitest'
import type { Bindings } from '../../functions/env'
import { forgetMetadataDocuments } from '../../functions/oauth/metadata-document'
import { testDb } from '../helpers/db'
import { approveConsent, authorize, pkce, postForm, seedUser } from '../helpers/oauth'
import { expectRoundTrips } from '../helpers/round-trips'
import { adminHeaders, call, callWith, describeResponse, useBindings } from '../helpers/worker'

/**
 * Client ID Metadata Documents (issue 11): a client_id that is a URL names a document the
 * client publishes. The documents here are served by the loopback fake site
 * (test/setup/fake-outbound.ts), which OUTBOUND_ALLOW_LOOPBACK lets Portcullis reach.
 */
const fake = inject('fakeOutboundUrl')
useBindings({ OUTBOUND_ALLOW_LOOPBACK: 'true' })

const REDIRECT = 'http://127.0.0.1:4599/callback'

interface Published {
  url: string
  hits: () => Promise<number>
}

/** Publishes a document on the fake site; `body` may refer to its own URL. */
async function publish(
  body: (url: string) => unknown,
  options: { headers?: Record<string, string>; raw?: string } = {},
): Promise<Published> {
  const path = `/doc/${crypto.randomUUID()}`
  const url = `${fake}${path}`
  const res = await fetch(`${fake}${path}`, {
    method: 'PUT',
    body: JSON.stringify({ headers: options.headers ?? {}, body: options.raw ?? JSON.stringify(body(url)) }),
  })
  expect(res.status).toBe(200)
  return {
    url,
    hits: async () => ((await (await fetch(`${fake}/__hits${path}`)).json()) as { hits: number }).hits,
  }
}

function goodDocument(url: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client_id: url,
    client_name: 'Loopback MCP client',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    scope: 'openid offline_access',
    ...extra,
  }
}

async function authorizeAs(
  clientId: string,
  cookie?: string,
  accept = 'application/json',
  vars?: Partial<Record<keyof Bindings, string>>,
) {
  const p = await pkce()
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT,
    code_challenge: p.challenge,
    code_challenge_method: 'S256',
    scope: 'openid offline_access',
    state: 'st',
  })
  const init: RequestInit = {
    redirect: 'manual',
    headers: { accept, ...(cookie === undefined ? {} : { cookie }) },
  }
  const path = `/oauth/authorize?${query}`
  const res = await (vars === undefined ? call(path, init) : callWith(vars, path, init))
  return { res, verifier: p.verifier }
}

/** Sign-in, consent (the page handed to `inspect`), then the code exchange as the public client. */
async function signInAndExchange(
  doc: Published,
  user: Awaited<ReturnType<typeof seedUser>>,
  inspect: (page: string) => void = () => undefined,
): Promise<Response> {
  const first = await authorizeAs(doc.url, user.cookie, 'text/html')
  expect(first.res.status, await describeResponse(first.res)).toBe(200)
  inspect(await first.res.clone().text())
  const location = await approveConsent(first.res, user)
  return postForm('/oauth/token', {
    grant_type: 'authorization_code',
    code: new URL(location ?? '').searchParams.get('code') ?? '',
    code_verifier: first.verifier,
    redirect_uri: REDIRECT,
    client_id: doc.url,
  })
}

async function expectRefused(res: Response, reason: RegExp): Promise<void> {
  expect(res.status, await describeResponse(res)).toBe(401)
  const body = (await res.json()) as { error: string; error_description: string }
  expect(body.error).toBe('invalid_client')
  expect(body.error_description).toMatch(reason)
}

describe('Client ID Metadata Documents (issue 11)', () => {
  it('discovery advertises them', async () => {
    const meta = (await (await call('/.well-known/oauth-authorization-server')).json()) as Record<
      string,
      unknown
    >
    expect(meta.client_id_metadata_document_supported).toBe(true)
    const off = await callWith(
      { CLIENT_METADATA_DOCUMENTS: 'false' },
      '/.well-known/oauth-authorization-server',
    )
    expect(((await off.json()) as Record<string, unknown>).client_id_metadata_document_supported).toBe(false)
  })

  it('a published public client runs code + PKCE; consent names its host with a loopback warning; the document is read once', async () => {
    const doc = await publish((url) => goodDocument(url), { headers: { 'cache-control': 'max-age=600' } })
    const user = await seedUser()
    const token = await signInAndExchange(doc, user, (page) => {
      expect(page).toContain('data-testid="consent-client-host"')
      expect(page).toContain(new URL(fake).host)
      expect(page).toContain('data-testid="consent-loopback-warning"')
    })
    expect(token.status, await describeResponse(token)).toBe(200)
    // The document was fetched once: consent, the form's answer and the exchange used the stored copy.
    expect(await doc.hits()).toBe(1)
    // A fresh stored document costs what any client costs at /oauth/authorize (one round trip
    // before the sign-in redirect), even in an isolate that has forgotten it.
    forgetMetadataDocuments()
    const again = await authorizeAs(doc.url)
    expect(again.res.status).toBe(302)
    await expectRoundTrips(again.res, { httpRequests: 1 })
    expect(await doc.hits()).toBe(1)
  })

  it('a code exchange by a document client this isolate knows costs the one statement any exchange costs', async () => {
    const user = await seedUser()
    // A first exchange warms this isolate's signing keys.
    await signInAndExchange(await publish((url) => goodDocument(url)), user)
    const token = await signInAndExchange(await publish((url) => goodDocument(url)), user)
    expect(token.status, await describeResponse(token)).toBe(200)
    await expectRoundTrips(token, { httpRequests: 1 })
  })

  it('a pushed authorization request (RFC 9126) by a document client is accepted', async () => {
    const push = async (clientId: string) =>
      postForm('/oauth/par', {
        response_type: 'code',
        client_id: clientId,
        redirect_uri: REDIRECT,
        code_challenge: (await pkce()).challenge,
        code_challenge_method: 'S256',
      })
    const doc = await publish((url) => goodDocument(url))
    const res = await push(doc.url)
    expect(res.status, await describeResponse(res)).toBe(201)
    expect(await doc.hits()).toBe(1)
    const bad = await publish(() => goodDocument('https://client.example.com/par.json'))
    const refused = await push(bad.url)
    await expectRefused(refused, /client_id is not the URL/)
  })

  it('twelve concurrent first uses of one new document all succeed and leave one client row', async () => {
    const doc = await publish((url) => goodDocument(url))
    const answers = await Promise.all(Array.from({ length: 12 }, () => authorizeAs(doc.url)))
    expect(answers.map((a) => a.res.status)).toEqual(Array(12).fill(302))
    const rows = await testDb().execute(
      sql`select count(*)::int as n from oauth_clients where client_id = ${doc.url}`,
    )
    expect(rows.rows[0]).toEqual({ n: 1 })
    // Its first sight is audited like a registration, once.
    const events = await testDb().execute(
      sql`select count(*)::int as n from audit_events where type = 'client_registered' and client_id = ${doc.url}`,
    )
    expect(events.rows[0]).toEqual({ n: 1 })
  })

  it('an administrator can disable a document client: reading the document again does not enable it', async () => {
    const doc = await publish((url) => goodDocument(url), { headers: { 'cache-control': 'no-store' } })
    expect((await authorizeAs(doc.url)).res.status).toBe(302)
    const disabled = await call(`/admin/clients/${encodeURIComponent(doc.url)}/disable`, {
      method: 'POST',
      headers: adminHeaders(),
    })
    expect(disabled.status, await describeResponse(disabled)).toBeLessThan(300)
    const after = await authorizeAs(doc.url)
    expect(after.res.status).toBe(400)
    expect(await after.res.text()).toContain('Unknown client')
    expect(await doc.hits()).toBe(2)
  })

  it('no-store documents are read again on each use', async () => {
    const doc = await publish((url) => goodDocument(url), { headers: { 'cache-control': 'no-store' } })
    const user = await seedUser()
    expect((await authorizeAs(doc.url, user.cookie, 'text/html')).res.status).toBe(200)
    expect((await authorizeAs(doc.url, user.cookie, 'text/html')).res.status).toBe(200)
    expect(await doc.hits()).toBe(2)
  })

  it('a document whose client_id is another URL is refused', async () => {
    const doc = await publish(() => goodDocument('https://client.example.com/elsewhere.json'))
    await expectRefused((await authorizeAs(doc.url)).res, /client_id is not the URL/)
  })

  it('a secret-based auth method, or a secret, is refused (a document has no secret to give)', async () => {
    for (const extra of [
      { token_endpoint_auth_method: 'client_secret_basic' },
      { token_endpoint_auth_method: 'client_secret_post' },
      { client_secret: 'published-secret' },
    ]) {
      const doc = await publish((url) => goodDocument(url, extra))
      await expectRefused((await authorizeAs(doc.url)).res, /secret/)
    }
  })

  it('private_key_jwt with jwks is accepted; without keys it is refused', async () => {
    const keyless = await publish((url) =>
      goodDocument(url, { token_endpoint_auth_method: 'private_key_jwt' }),
    )
    await expectRefused((await authorizeAs(keyless.url)).res, /jwks/)
    const jwk = {
      kty: 'EC',
      crv: 'P-256',
      x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
      y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
    }
    const keyed = await publish((url) =>
      goodDocument(url, { token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } }),
    )
    const user = await seedUser()
    const res = (await authorizeAs(keyed.url, user.cookie, 'text/html')).res
    expect(res.status, await describeResponse(res)).toBe(200)
  })

  it('a registration rule the document breaks is refused like a registration (non-loopback http redirect)', async () => {
    const doc = await publish((url) => goodDocument(url, { redirect_uris: ['http://app.example.com/cb'] }))
    await expectRefused((await authorizeAs(doc.url)).res, /redirect_uris/)
  })

  it.each([
    ['oversize', '/big', /too_large/],
    ['redirect', '/redirect', /redirect/],
    ['non-JSON', '/text', /not_json/],
    ['timeout', '/hang', /timeout/],
  ])('%s: refused', async (_name, path, reason) => {
    await expectRefused((await authorizeAs(`${fake}${path}`)).res, reason)
  })

  it('a JSON document over the size cap is refused', async () => {
    const doc = await publish((url) => goodDocument(url, { client_name: 'x'.repeat(6000) }))
    await expectRefused((await authorizeAs(doc.url)).res, /too_large/)
  })

  it.each([
    ['a private address', 'https://10.0.0.7/client.json', /non_public_address/],
    ['a link-local address', 'https://169.254.169.254/latest/meta-data', /non_public_address/],
    ['an internal name', 'https://metadata.internal/client.json', /non_public_address/],
    ['http', 'http://client.example.com/client.json', /https/],
    ['no path', 'https://client.example.com/', /path/],
  ])('%s is refused before any fetch', async (_name, url, reason) => {
    await expectRefused((await authorizeAs(url)).res, reason)
  })

  it('loopback needs the development setting', async () => {
    const doc = await publish((url) => goodDocument(url))
    const res = (await authorizeAs(doc.url, undefined, undefined, { OUTBOUND_ALLOW_LOOPBACK: 'false' })).res
    await expectRefused(res, /loopback/)
    expect(await doc.hits()).toBe(0)
  })

  it('the operator can trust only some URL prefixes', async () => {
    const doc = await publish((url) => goodDocument(url))
    const vars = {
      OUTBOUND_ALLOW_LOOPBACK: 'true',
      CLIENT_METADATA_TRUSTED_PREFIXES: 'https://clients.example.com/',
    }
    await expectRefused((await authorizeAs(doc.url, undefined, undefined, vars)).res, /trusted prefix/)
    const trusted = await authorizeAs(doc.url, undefined, undefined, {
      ...vars,
      CLIENT_METADATA_TRUSTED_PREFIXES: `${fake}/doc/`,
    })
    expect(trusted.res.status, await describeResponse(trusted.res)).toBe(302)
  })

  it('a failure is remembered briefly: a fixed document is not read again at once', async () => {
    const doc = await publish(() => goodDocument('https://client.example.com/wrong.json'))
    await expectRefused((await authorizeAs(doc.url)).res, /client_id/)
    await expectRefused((await authorizeAs(doc.url)).res, /client_id/)
    expect(await doc.hits()).toBe(1)
  })

  it('the token endpoint refuses a bad document too (invalid_client)', async () => {
    const doc = await publish(() => goodDocument('https://client.example.com/other.json'))
    const res = await postForm('/oauth/token', {
      grant_type: 'authorization_code',
      code: 'x',
      code_verifier: 'y'.repeat(43),
      client_id: doc.url,
    })
    await expectRefused(res, /client_id is not the URL/)
  })

  it('an authorize page for a browser explains a refused document in words', async () => {
    const doc = await publish(() => goodDocument('https://client.example.com/third.json'))
    const res = (await authorizeAs(doc.url, undefined, 'text/html')).res
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('invalid_client')
  })

  it('an unknown user sees the sign-in first; the document is still checked before that', async () => {
    const doc = await publish((url) => goodDocument(url))
    const res = await authorize({
      response_type: 'code',
      client_id: doc.url,
      redirect_uri: REDIRECT,
      code_challenge: (await pkce()).challenge,
      code_challenge_method: 'S256',
    })
    expect(res.status).toBe(302)
    expect(res.headers.get('location')).toMatch(/^\/login/)
    expect(await doc.hits()).toBe(1)
    // A new document: its row looked up, then (after the fetch) stored, and its first sight
    // audited: three round trips (a known one that went stale costs two).
    await expectRoundTrips(res, { httpRequests: 3 })
  })
})
