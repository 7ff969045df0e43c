import { describe, expect, inject, it } from 'vitest'
import { checkConfig, parseConfig } from '../../functions/config'
import { checkOutboundUrl, publicFetchJson } from '../../functions/outbound/public-fetch'

const fake = inject('fakeOutboundUrl')
const DEV = { allowLoopback: true }

describe('publicFetchJson: what it refuses before any connection', () => {
  it.each([
    'http://example.com/doc',
    'ftp://example.com/doc',
    'https://user:pw@example.com/doc',
    'not a url',
  ])('%s is bad_url', async (url) => {
    const outcome = await publicFetchJson(url, { allowLoopback: false })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'bad_url' })
  })

  it.each([
    'https://127.0.0.1/doc',
    'https://127.1.2.3/doc',
    'https://0x7f.1/doc',
    'https://2130706433/doc',
    'https://localhost/doc',
    'https://api.localhost/doc',
    'https://[::1]/doc',
    'https://10.0.0.1/doc',
    'https://172.16.5.4/doc',
    'https://192.168.1.1/doc',
    'https://169.254.169.254/latest/meta-data',
    'https://100.64.0.1/doc',
    'https://0.0.0.0/doc',
    'https://224.0.0.1/doc',
    'https://[fd00::1]/doc',
    'https://[fe80::1]/doc',
    'https://[::ffff:127.0.0.1]/doc',
    'https://[::ffff:10.0.0.1]/doc',
    'https://[64:ff9b::a9fe:a9fe]/doc',
    'https://[2002:c0a8:101::1]/doc',
    'https://[2001:db8::1]/doc',
    'https://[::]/doc',
    'https://metadata/doc',
    'https://printer.local/doc',
    'https://db.internal/doc',
  ])('%s is non_public_address', async (url) => {
    const outcome = await publicFetchJson(url, { allowLoopback: false })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'non_public_address' })
  })

  it('the loopback setting allows loopback only: private and link-local stay refused', () => {
    expect(checkOutboundUrl('http://127.0.0.1:9/doc', true)).toBeNull()
    expect(checkOutboundUrl('http://[::1]:9/doc', true)).toBeNull()
    expect(checkOutboundUrl('https://10.0.0.1/doc', true)).toMatchObject({ reason: 'non_public_address' })
    expect(checkOutboundUrl('https://169.254.169.254/doc', true)).toMatchObject({
      reason: 'non_public_address',
    })
    expect(checkOutboundUrl('http://127.0.0.1:9/doc', false)).toMatchObject({ reason: 'non_public_address' })
  })

  it('public names and addresses pass the check', () => {
    expect(checkOutboundUrl('https://client.example.com/oauth/metadata.json', false)).toBeNull()
    expect(checkOutboundUrl('https://8.8.8.8/doc', false)).toBeNull()
    expect(checkOutboundUrl('https://[2606:4700::1111]/doc', false)).toBeNull()
  })
})

describe('publicFetchJson against a loopback server', () => {
  it('reads a JSON document and its Cache-Control', async () => {
    const outcome = await publicFetchJson(`${fake}/json`, DEV)
    expect(outcome).toEqual({ kind: 'ok', json: { hello: 'world' }, cacheControl: null })
  })

  it('refuses a redirect instead of following it', async () => {
    const outcome = await publicFetchJson(`${fake}/redirect`, DEV)
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'redirect', detail: '302' })
  })

  it('refuses a body over the cap while reading it (chunked)', async () => {
    const outcome = await publicFetchJson(`${fake}/big`, { ...DEV, maxBytes: 5_120 })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'too_large' })
  })

  it('refuses a declared Content-Length over the cap without reading', async () => {
    const outcome = await publicFetchJson(`${fake}/big-declared`, {
      ...DEV,
      maxBytes: 5_120,
      timeoutMs: 2_000,
    })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'too_large' })
  })

  it('times out a server that never answers', async () => {
    const started = Date.now()
    const outcome = await publicFetchJson(`${fake}/hang`, { ...DEV, timeoutMs: 300 })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'timeout' })
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('times out a body that never ends (the deadline covers the body)', async () => {
    const outcome = await publicFetchJson(`${fake}/stall`, { ...DEV, timeoutMs: 300 })
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'timeout' })
  })

  it('refuses a non-JSON content type', async () => {
    const outcome = await publicFetchJson(`${fake}/text`, DEV)
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'not_json' })
  })

  it('refuses a non-200 answer', async () => {
    const outcome = await publicFetchJson(`${fake}/nothing-here`, DEV)
    expect(outcome).toMatchObject({ kind: 'refused', reason: 'bad_status', detail: '404' })
  })
})

describe('OUTBOUND_ALLOW_LOOPBACK', () => {
  const PUBLIC = {
    ISSUER: 'https://auth.portcullis.dev',
    DATABASE_URL: 'postgres://u:p@db.internal/app',
    MASTER_KEY: 'k1:dGVzdC1tYXN0ZXIta2V5LTAwMDAwMDAwMDAwMDAwMDA',
    ADMIN_TOKEN: 'a'.repeat(40),
    API_KEY_ENV: 'live',
    REGISTRATION_POLICY: 'token',
    MAIL_PROVIDER: 'resend',
    RESEND_API_KEY: 're_123456',
  }

  it('is off by default and a problem with a public issuer', () => {
    expect(parseConfig(PUBLIC).outboundAllowLoopback).toBe(false)
    const { problems } = checkConfig({ ...PUBLIC, OUTBOUND_ALLOW_LOOPBACK: 'true' })
    expect(problems.map((p) => p.variable)).toEqual(['OUTBOUND_ALLOW_LOOPBACK'])
  })

  it('is allowed with a loopback issuer (development)', () => {
    const local = { ...PUBLIC, ISSUER: 'http://127.0.0.1:8787', OUTBOUND_ALLOW_LOOPBACK: 'true' }
    expect(parseConfig(local).outboundAllowLoopback).toBe(true)
    expect(checkConfig(local).problems.map((p) => p.variable)).not.toContain('OUTBOUND_ALLOW_LOOPBACK')
  })
})
