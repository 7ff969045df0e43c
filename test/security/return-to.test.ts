import { describe, expect, it } from 'vitest'
import { safeReturnTo } from '../../functions/pages/return-to'
import { call, describeResponse } from '../helpers/worker'

const ISSUER = 'https://auth.example.com'
const ORIGIN = new URL(ISSUER).origin

/** True when a browser at the issuer would stay on the issuer following `target` as a Location. */
function staysHome(target: string): boolean {
  return (
    target.startsWith('/') &&
    !target.startsWith('//') &&
    !target.includes('\\') &&
    new URL(target, ORIGIN).origin === ORIGIN
  )
}

// Issue 9 item 10 and their relatives: dot segments that normalise to `//host`, and the classics.
const OFF_SITE = [
  '/..//evil.example',
  '/.//evil.example',
  '/%2e%2e//evil.example',
  '/%2E%2E//evil.example',
  '/.%2e//evil.example',
  '/%2e.//evil.example',
  '/%2e//evil.example',
  '/./..//evil.example',
  '/a/..//evil.example',
  '/a/../..//evil.example',
  '/a/b/../../..//evil.example',
  '/..//..//evil.example',
  '/../..//evil.example/path?q=1#f',
  '//evil.example',
  '///evil.example',
  '/\\evil.example',
  '/\\/evil.example',
  '/..\\evil.example',
  '\\\\evil.example',
  'https://evil.example/',
  'http://auth.example.com@evil.example/',
  'javascript:alert(1)',
  'evil.example',
  ' /ok',
  '/\t/evil.example',
  '/\n/evil.example',
  '/\u0000/evil.example',
  '',
]

describe('safeReturnTo', () => {
  it.each(OFF_SITE)('sends %j home to /', (raw) => {
    expect(safeReturnTo(raw, ISSUER)).toBe('/')
  })

  it.each([
    ['/', '/'],
    [
      '/oauth/authorize?client_id=x&scope=openid%20profile',
      '/oauth/authorize?client_id=x&scope=openid%20profile',
    ],
    ['/device?user_code=ABCD-EFGH', '/device?user_code=ABCD-EFGH'],
    ['/a/b/../c', '/a/c'],
    ['/a/./b', '/a/b'],
    ['/a//b', '/a//b'],
    ['/x?next=//evil.example', '/x?next=//evil.example'],
    ['/page#frag', '/page#frag'],
  ])('keeps the same-origin path %j as %j', (raw, expected) => {
    expect(safeReturnTo(raw, ISSUER)).toBe(expected)
  })

  it('refuses non-strings and overlong values', () => {
    expect(safeReturnTo(undefined, ISSUER)).toBe('/')
    expect(safeReturnTo(['/a'], ISSUER)).toBe('/')
    expect(safeReturnTo(`/${'a'.repeat(5000)}`, ISSUER)).toBe('/')
  })

  // Every combination of dot-segment spellings, separators and targets must stay on the issuer.
  const starts = ['/', '/.', '/..', '/%2e', '/%2E%2e', '/.%2e', '/a/..', '/a/../..', '/a/b/%2e%2e/%2e%2e/..']
  const joins = ['/', '//', '/./', '/../', '/%2e/', '/%2e%2e/', '///', '/.//']
  const targets = [
    'evil.example',
    '/evil.example',
    'evil.example/x?y#z',
    '%2f%2fevil.example',
    '@evil.example',
  ]
  const combos = starts.flatMap((s) => joins.flatMap((j) => targets.map((t) => `${s}${j}${t}`)))
  it(`never emits an off-site, protocol-relative or backslash target (${combos.length} combinations)`, () => {
    const escaped = combos.filter((raw) => !staysHome(safeReturnTo(raw, ISSUER)))
    expect(escaped).toEqual([])
  })
})

describe('GET /login?return_to=…', () => {
  it.each(['/..//evil.example', '/.//evil.example', '/%2e%2e//evil.example'])(
    'renders the form returning to / for %j',
    async (raw) => {
      const res = await call(`/login?return_to=${encodeURIComponent(raw)}`)
      expect(res.status, await describeResponse(res)).toBe(200)
      const page = await res.text()
      expect(page).toContain('name="return_to" value="/"')
      expect(page).not.toContain('evil.example')
    },
  )
})
