import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { findJsonTextFault, isValidText, percentDecode } from '../../functions/validation/text'
import { seedUser } from '../helpers/apikeys'
import { adminHeaders, call, describeResponse } from '../helpers/worker'

type Auth = 'none' | 'admin' | 'session'

interface Attack {
  name: string
  method: 'GET' | 'POST' | 'PATCH'
  path: string
  auth?: Auth
  headers?: Record<string, string>
  /** A raw body and its content type. */
  body?: { type: string; text: string } | { multipart: Record<string, string> }
}

const FORM = 'application/x-www-form-urlencoded'
const JSON_TYPE = 'application/json'

/** Issue 9 item 9: each of these answered 500 (or stored mangled text) before the edge check. */
const ATTACKS: Attack[] = [
  // Query strings.
  { name: 'admin user search q=a%00b', method: 'GET', path: '/admin/users?q=a%00b', auth: 'admin' },
  {
    name: 'admin user search, encoded surrogate',
    method: 'GET',
    path: '/admin/users?q=%ED%A0%80',
    auth: 'admin',
  },
  { name: 'admin user search, ESC', method: 'GET', path: '/admin/users?q=%1B%5B31m', auth: 'admin' },
  { name: 'admin audit type', method: 'GET', path: '/admin/audit?type=a%00', auth: 'admin' },
  { name: 'admin client list cursor', method: 'GET', path: '/admin/clients?cursor=a%00', auth: 'admin' },
  { name: 'NUL in a query parameter name', method: 'GET', path: '/admin/users?a%00=1', auth: 'admin' },
  { name: 'api-key list cursor', method: 'GET', path: '/api-keys?cursor=%00', auth: 'session' },
  {
    name: 'authorize client_id',
    method: 'GET',
    path: '/oauth/authorize?response_type=code&client_id=a%00&redirect_uri=https%3A%2F%2Fa.example%2Fcb',
  },
  { name: 'login page return_to', method: 'GET', path: '/login?return_to=%2Fa%00' },
  { name: 'device page user_code', method: 'GET', path: '/device?user_code=ABCD%00EFGH', auth: 'session' },
  { name: 'verify-email link token', method: 'GET', path: '/auth/verify-email?token=a%00' },
  // Paths.
  { name: 'client configuration path', method: 'GET', path: '/oauth/register/a%00' },
  { name: 'api-key id path', method: 'GET', path: '/api-keys/a%00', auth: 'session' },
  { name: 'admin client disable path', method: 'POST', path: '/admin/clients/a%00/disable', auth: 'admin' },
  { name: 'admin user path, invalid UTF-8', method: 'GET', path: '/admin/users/%C0%80', auth: 'admin' },
  // HTTP Basic client credentials (RFC 6749 §2.3.1: form-encoded inside base64).
  {
    name: 'Basic client_id a%00',
    method: 'POST',
    path: '/oauth/token',
    headers: { authorization: `Basic ${btoa('a%00:secret')}` },
    body: { type: FORM, text: 'grant_type=client_credentials' },
  },
  {
    name: 'Basic client_id with a raw NUL',
    method: 'POST',
    path: '/oauth/introspect',
    headers: { authorization: `Basic ${btoa('a\u0000:secret')}` },
    body: { type: FORM, text: 'token=x' },
  },
  {
    name: 'Basic client_secret %01',
    method: 'POST',
    path: '/oauth/revoke',
    headers: { authorization: `Basic ${btoa('client:se%01cret')}` },
    body: { type: FORM, text: 'token=x' },
  },
  // Form bodies.
  {
    name: 'token client_id=a%00',
    method: 'POST',
    path: '/oauth/token',
    body: { type: FORM, text: 'grant_type=client_credentials&client_id=a%00&client_secret=x' },
  },
  {
    name: 'revoke token',
    method: 'POST',
    path: '/oauth/revoke',
    body: { type: FORM, text: 'token=a%00&client_id=x' },
  },
  {
    name: 'introspect token',
    method: 'POST',
    path: '/oauth/introspect',
    body: { type: FORM, text: 'token=a%00' },
  },
  {
    name: 'device authorization client_id',
    method: 'POST',
    path: '/oauth/device_authorization',
    body: { type: FORM, text: 'client_id=a%00' },
  },
  {
    name: 'token body that is not UTF-8',
    method: 'POST',
    path: '/oauth/token',
    body: { type: FORM, text: 'grant_type=client_credentials&client_id=%FF%FE' },
  },
  {
    name: 'login form email',
    method: 'POST',
    path: '/login',
    body: { type: FORM, text: 'email=a%00%40example.test&password=x&csrf_token=x' },
  },
  {
    name: 'login form, multipart',
    method: 'POST',
    path: '/login',
    body: { multipart: { email: 'a\u0000@example.test', password: 'x', csrf_token: 'x' } },
  },
  // JSON bodies: values, nested values, keys, escapes.
  {
    name: 'register client_name',
    method: 'POST',
    path: '/oauth/register',
    body: { type: JSON_TYPE, text: '{"client_name":"a\\u0000","redirect_uris":["https://a.example/cb"]}' },
  },
  // A leading byte order mark: the route's JSON parse skips it, so the check must too.
  {
    name: 'register client_name behind a byte order mark',
    method: 'POST',
    path: '/oauth/register',
    body: {
      type: JSON_TYPE,
      text: '\ufeff{"client_name":"a\\u0000","redirect_uris":["https://a.example/cb"]}',
    },
  },
  {
    name: 'api-key metadata behind a byte order mark',
    method: 'POST',
    path: '/api-keys',
    auth: 'session',
    body: { type: JSON_TYPE, text: '\ufeff{"name":"k","metadata":{"tags":["bad\\u0000"]}}' },
  },
  {
    name: 'verify endpoint behind a byte order mark',
    method: 'POST',
    path: '/api-keys/verify',
    auth: 'admin',
    body: { type: JSON_TYPE, text: '\ufeff{"key":"pk_test_x","endpoint":"a\\u0000"}' },
  },
  {
    name: 'register redirect_uris[0]',
    method: 'POST',
    path: '/oauth/register',
    body: { type: JSON_TYPE, text: '{"redirect_uris":["https://a.example/\\u0000"]}' },
  },
  {
    name: 'register, NUL in a key',
    method: 'POST',
    path: '/oauth/register',
    body: { type: JSON_TYPE, text: '{"redirect_uris":["https://a.example/cb"],"x\\u0000":1}' },
  },
  {
    name: 'token as JSON',
    method: 'POST',
    path: '/oauth/token',
    body: { type: JSON_TYPE, text: '{"grant_type":"client_credentials","client_id":"a\\u0000"}' },
  },
  {
    name: 'api-key name',
    method: 'POST',
    path: '/api-keys',
    auth: 'session',
    body: { type: JSON_TYPE, text: '{"name":"key\\u0000"}' },
  },
  {
    name: 'api-key name, lone high surrogate',
    method: 'POST',
    path: '/api-keys',
    auth: 'session',
    body: { type: JSON_TYPE, text: '{"name":"key\\ud800"}' },
  },
  {
    name: 'api-key name, lone low surrogate',
    method: 'POST',
    path: '/api-keys',
    auth: 'session',
    body: { type: JSON_TYPE, text: '{"name":"\\udc00key"}' },
  },
  {
    name: 'api-key metadata, nested',
    method: 'POST',
    path: '/api-keys',
    auth: 'session',
    body: { type: JSON_TYPE, text: '{"name":"k","metadata":{"a":[{"b":"\\u0001"}]}}' },
  },
  {
    name: 'api-key verify key',
    method: 'POST',
    path: '/api-keys/verify',
    auth: 'admin',
    body: { type: JSON_TYPE, text: '{"key":"pk_test_\\u0000"}' },
  },
  {
    name: 'account register email',
    method: 'POST',
    path: '/auth/register',
    body: { type: JSON_TYPE, text: '{"email":"a\\u0000@example.test","password":"Correct-Horse-Battery-9"}' },
  },
  {
    name: 'account login password',
    method: 'POST',
    path: '/auth/login',
    body: { type: JSON_TYPE, text: '{"email":"a@example.test","password":"pw\\u0000"}' },
  },
  {
    name: 'password reset email',
    method: 'POST',
    path: '/auth/password-reset',
    body: { type: JSON_TYPE, text: '{"email":"a\\u0000@example.test"}' },
  },
  {
    name: 'profile update',
    method: 'PATCH',
    path: '/auth/me',
    auth: 'session',
    body: { type: JSON_TYPE, text: '{"name":"\\u0000"}' },
  },
  {
    name: 'admin client create',
    method: 'POST',
    path: '/admin/clients',
    auth: 'admin',
    body: { type: JSON_TYPE, text: '{"client_name":"\\u0000","redirect_uris":["https://a.example/cb"]}' },
  },
  {
    name: 'signing-key rotate with no content type',
    method: 'POST',
    path: '/admin/signing-keys/rotate',
    auth: 'admin',
    body: { type: '', text: '{"alg":"ES256\\u0000"}' },
  },
  {
    name: 'JSON body that is not UTF-8',
    method: 'POST',
    path: '/auth/login',
    body: { type: JSON_TYPE, text: '{"email":"a@example.test","password":"\u00ff"}' },
  },
]

let sessionCookie = ''

beforeAll(async () => {
  sessionCookie = (await seedUser()).headers.cookie ?? ''
})

function headersFor(auth: Auth | undefined): Record<string, string> {
  if (auth === 'admin') {
    return adminHeaders()
  }
  if (auth === 'session') {
    return { cookie: sessionCookie }
  }
  return {}
}

function send(attack: Attack): Promise<Response> {
  const headers = { ...headersFor(attack.auth), ...attack.headers }
  const init: RequestInit = { method: attack.method, headers }
  if (attack.body !== undefined && 'multipart' in attack.body) {
    const form = new FormData()
    for (const [name, value] of Object.entries(attack.body.multipart)) {
      form.set(name, value)
    }
    init.body = form
  } else if (attack.body !== undefined) {
    if (attack.body.type !== '') {
      headers['content-type'] = attack.body.type
    }
    // "\u00ff" marks a raw 0xFF byte: a body that is not UTF-8.
    const text = attack.body.text
    init.body = text.includes('\u00ff')
      ? Uint8Array.from([...text].map((ch) => (ch === '\u00ff' ? 0xff : ch.charCodeAt(0))))
      : text
  }
  return call(attack.path, init)
}

describe('invalid text is refused at the edge (issue 9 item 9)', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it.each(ATTACKS.map((a) => [a.name, a] as const))(
    'refuses %s with 400 and logs no error',
    async (_, attack) => {
      const errors = vi.spyOn(console, 'error')
      const res = await send(attack)
      const body = await res.clone().text()
      expect(res.status, await describeResponse(res)).toBe(400)
      if (attack.path.startsWith('/oauth/')) {
        expect(JSON.parse(body)).toMatchObject({ error: 'invalid_request' })
        expect(res.headers.get('cache-control')).toBe('no-store')
      } else {
        expect(res.headers.get('content-type')).toContain('application/problem+json')
        expect(JSON.parse(body)).toMatchObject({ code: 'validation_failed', status: 400 })
      }
      expect(errors).not.toHaveBeenCalled()
    },
  )

  it('names the offending field without echoing the value', async () => {
    const res = await send({
      name: 'field',
      method: 'POST',
      path: '/api-keys',
      auth: 'session',
      body: { type: JSON_TYPE, text: '{"name":"k","metadata":{"tags":["ok","bad\\u0000secret"]}}' },
    })
    expect(res.status, await describeResponse(res)).toBe(400)
    const problem = (await res.json()) as { errors: { field: string }[]; detail: string }
    expect(problem.errors[0]?.field).toBe('body.metadata.tags.1')
    expect(JSON.stringify(problem)).not.toContain('secret')
  })

  it.each([
    [
      'tab, newline and carriage return in a JSON string',
      '/auth/login',
      '{"email":"a@example.test","password":"a\\tb\\nc\\r"}',
    ],
    [
      'an astral character (a surrogate pair)',
      '/auth/login',
      '{"email":"a@example.test","password":"pw\\ud83d\\ude00"}',
    ],
  ])('lets %s through to the route', async (_, path, text) => {
    const res = await call(path, { method: 'POST', headers: { 'content-type': JSON_TYPE }, body: text })
    expect(res.status, await describeResponse(res)).toBe(401)
  })

  it('lets a literal % and + through in a query string', async () => {
    const res = await call('/admin/users?q=100%25+%&limit=5', { headers: adminHeaders() })
    expect(res.status, await describeResponse(res)).toBe(200)
  })

  it('reads JSON behind a byte order mark as the route does: checked at the edge, parsed by the route', async () => {
    const post = (text: string) =>
      call('/api-keys/verify', {
        method: 'POST',
        headers: { ...adminHeaders(), 'content-type': JSON_TYPE },
        body: `\ufeff${text}`,
      })
    const refused = await post('{"key":"pk_test_x","endpoint":"a\\u0000"}')
    expect(refused.status, await describeResponse(refused)).toBe(400)
    // body.endpoint: the edge's check, not the route schema's (which names `endpoint`).
    expect(((await refused.json()) as { errors: { field: string }[] }).errors).toEqual([
      { field: 'body.endpoint', message: expect.any(String) },
    ])
    const parsed = await post('{"key":"pk_test_x","endpoint":"/ok"}')
    expect(parsed.status, await describeResponse(parsed)).toBe(200)
    expect(((await parsed.json()) as { code: string }).code).toBe('MALFORMED')
  })

  it('leaves malformed JSON to the route (malformed_json, not a text error)', async () => {
    const res = await call('/auth/login', {
      method: 'POST',
      headers: { 'content-type': JSON_TYPE },
      body: '{"a":',
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { code: string }).code).toBe('malformed_json')
  })

  it('survives a deeply nested JSON body without a stack overflow', async () => {
    const depth = 20_000
    const text = `${'['.repeat(depth)}"\\u0000"${']'.repeat(depth)}`
    const errors = vi.spyOn(console, 'error')
    const res = await call('/auth/login', {
      method: 'POST',
      headers: { 'content-type': JSON_TYPE },
      body: text,
    })
    expect(res.status, await describeResponse(res)).toBe(400)
    expect(errors).not.toHaveBeenCalled()
  })
})

describe('isValidText and percentDecode', () => {
  it.each([
    ['', true],
    ['plain', true],
    ['tab\tnew\nline\r', true],
    ['😀 emoji', true],
    ['é', true],
    ['\u0000', false],
    ['a\u0001', false],
    ['\u001b[31m', false],
    ['\u000b', false],
    ['\ud800', false],
    ['\udc00', false],
    ['x\ud83d', false],
    ['\ude00\ud83d', false],
  ])('isValidText(%j) is %s', (text, valid) => {
    expect(isValidText(text)).toBe(valid)
  })

  it.each([
    ['a%20b+c', 'a b c'],
    ['100%', '100%'],
    ['%zz', '%zz'],
    ['%C3%A9', 'é'],
    ['%ED%A0%80', undefined],
    ['%C0%80', undefined],
    ['%FF', undefined],
  ])('percentDecode(%j) is %j', (text, decoded) => {
    expect(percentDecode(new TextEncoder().encode(text), true)).toBe(decoded)
  })

  it('finds a bad key at depth', () => {
    expect(findJsonTextFault({ a: [{ 'b\u0000': 1 }] }, 'body')).toEqual({ field: 'body.a.0' })
    expect(findJsonTextFault({ a: [{ b: 'fine' }], c: 1, d: null }, 'body')).toBeUndefined()
  })
})
