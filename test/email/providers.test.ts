import { createExecutionContext, env, waitOnExecutionContext } from 'cloudflare:test'
import { eq } from 'drizzle-orm'
import { describe, expect, inject, it } from 'vitest'
import { emailOutbox } from '../../db/schema'
import { createApp } from '../../functions/app'
import { type Config, ConfigError, type MailConfig, parseConfig } from '../../functions/config'
import { deliverPendingEmail } from '../../functions/email/deliver'
import { MAIL_SIGNATURE_HEADER } from '../../functions/email/providers'
import type { Bindings } from '../../functions/env'
import { seedUser } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'

// The fake (test/setup/fake-mail-api.ts) accepts only this Resend key.
const RESEND_KEY = 're_test_fake_0123456789'
const WEBHOOK_SECRET = 'whsec-test-0123456789abcdefghijklmnopqrstuv'
const fakeMailUrl = inject('fakeMailUrl')

interface Received {
  path: string
  headers: Record<string, string>
  body: string
}

async function queue(prefix = 'mail') {
  const to = `${unique(prefix)}@example.com`
  const [row] = await testDb()
    .insert(emailOutbox)
    .values({
      toAddress: to,
      template: 'verify_email',
      subject: 'Confirm your email address',
      bodyText: 'https://auth.example.com/verify?token=secret-token',
      bodyHtml: '<p>link</p>',
    })
    .returning()
  if (row === undefined) {
    throw new Error('outbox insert failed')
  }
  return row
}

function configWith(mail: MailConfig): Config {
  return { ...parseConfig(env), mail }
}

async function received(to: string): Promise<Received[]> {
  const res = await fetch(`${fakeMailUrl}/__requests?to=${encodeURIComponent(to)}`)
  return (await res.json()) as Received[]
}

async function outboxRow(id: string) {
  const [row] = await testDb().select().from(emailOutbox).where(eq(emailOutbox.id, id))
  return row
}

/** The README's verifier, written independently of the signer. */
async function verifySignature(secret: string, header: string, body: string, nowSeconds: number) {
  const parts = Object.fromEntries(header.split(',').map((kv) => kv.split('=') as [string, string]))
  const t = Number(parts.t)
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300) {
    return false
  }
  const key = await crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['verify'],
  )
  const mac = Uint8Array.from((parts.v1 ?? '').match(/../g) ?? [], (h) => Number.parseInt(h, 16))
  return crypto.subtle.verify('HMAC', key, mac, new TextEncoder().encode(`${t}.${body}`))
}

describe('mail webhook', () => {
  it('POSTs the documented payload with a verifiable, timestamped HMAC-SHA256 signature', async () => {
    const row = await queue()
    const config = configWith({ provider: 'webhook', url: `${fakeMailUrl}/webhook`, secret: WEBHOOK_SECRET })
    const report = await deliverPendingEmail(testDb(), config, new Date(), { ids: [row.id] })
    expect(report).toEqual({ sent: 1, failed: 0 })
    const [request, ...more] = await received(row.toAddress)
    expect(more).toHaveLength(0)
    expect(request?.path).toBe('/webhook')
    const body = request?.body ?? ''
    expect(JSON.parse(body)).toEqual({
      id: row.id,
      template: 'verify_email',
      from: config.mailFrom,
      to: row.toAddress,
      subject: 'Confirm your email address',
      text: 'https://auth.example.com/verify?token=secret-token',
      html: '<p>link</p>',
    })
    const header = request?.headers[MAIL_SIGNATURE_HEADER.toLowerCase()] ?? ''
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/)
    const now = Math.floor(Date.now() / 1000)
    expect(await verifySignature(WEBHOOK_SECRET, header, body, now)).toBe(true)
    // Tampered body, wrong secret, or a replay from an hour ago: all rejected.
    expect(await verifySignature(WEBHOOK_SECRET, header, body.replace('secret-token', 'other'), now)).toBe(
      false,
    )
    expect(await verifySignature(`${WEBHOOK_SECRET}x`, header, body, now)).toBe(false)
    expect(await verifySignature(WEBHOOK_SECRET, header, body, now + 3600)).toBe(false)
    const after = await outboxRow(row.id)
    expect(after?.sentAt).not.toBeNull()
    expect(after?.bodyText).toBeNull()
  })
})

describe('Resend provider', () => {
  const resend = (apiKey = RESEND_KEY): MailConfig => ({ provider: 'resend', apiKey, baseUrl: fakeMailUrl })

  it('sends through POST /emails with the bearer key and an idempotency key, then clears the body', async () => {
    const row = await queue()
    const config = configWith(resend())
    expect(await deliverPendingEmail(testDb(), config, new Date(), { ids: [row.id] })).toEqual({
      sent: 1,
      failed: 0,
    })
    const [request, ...more] = await received(row.toAddress)
    expect(more).toHaveLength(0)
    expect(request?.path).toBe('/emails')
    expect(request?.headers.authorization).toBe(`Bearer ${RESEND_KEY}`)
    expect(request?.headers['idempotency-key']).toBe(row.id)
    expect(JSON.parse(request?.body ?? '')).toEqual({
      from: config.mailFrom,
      to: [row.toAddress],
      subject: 'Confirm your email address',
      text: 'https://auth.example.com/verify?token=secret-token',
      html: '<p>link</p>',
    })
    const after = await outboxRow(row.id)
    expect(after?.sentAt).not.toBeNull()
    expect(after?.bodyText).toBeNull()
  })

  it.each([
    ['a rejected API key (401)', 'mail', 're_test_wrong', 'resend answered HTTP 401'],
    ['a provider failure (500)', 'fail', RESEND_KEY, 'resend answered HTTP 500'],
  ])('keeps the message for a retry after %s', async (_name, prefix, apiKey, reason) => {
    const row = await queue(prefix)
    const report = await deliverPendingEmail(testDb(), configWith(resend(apiKey)), new Date(), {
      ids: [row.id],
    })
    expect(report).toEqual({ sent: 0, failed: 1 })
    expect(await received(row.toAddress)).toHaveLength(1)
    const after = await outboxRow(row.id)
    expect(after?.sentAt).toBeNull()
    expect(after?.bodyText).not.toBeNull()
    expect(after?.lastError).toBe(reason)
    expect(after?.lastError).not.toContain(apiKey)
  })
})

describe('mail configuration', () => {
  const parse = (vars: Bindings) => parseConfig({ ...env, MAIL_WEBHOOK_URL: '', ...vars })
  const failure = (vars: Bindings) => {
    try {
      parse(vars)
    } catch (error) {
      if (error instanceof ConfigError) {
        return error.variable
      }
      throw error
    }
    return undefined
  }

  it.each([
    ['https://auth.example.com', {}, 'MAIL_PROVIDER'],
    ['https://auth.example.com', { MAIL_PROVIDER: 'log' }, 'MAIL_PROVIDER'],
    ['http://10.0.0.5:8787', {}, 'MAIL_PROVIDER'],
    [
      'https://auth.example.com',
      { MAIL_WEBHOOK_URL: 'https://hooks.example.com/mail' },
      'MAIL_WEBHOOK_SECRET',
    ],
    ['https://auth.example.com', { MAIL_PROVIDER: 'resend' }, 'RESEND_API_KEY'],
    ['https://auth.example.com', { MAIL_PROVIDER: 'webhook' }, 'MAIL_WEBHOOK_URL'],
    ['https://auth.example.com', { MAIL_PROVIDER: 'smtp' }, 'MAIL_PROVIDER'],
    [
      'https://auth.example.com',
      { MAIL_WEBHOOK_URL: 'https://hooks.example.com/mail', MAIL_WEBHOOK_SECRET: 'short' },
      'MAIL_WEBHOOK_SECRET',
    ],
  ])('refuses ISSUER %s with %o (names %s)', (issuer, vars, variable) => {
    expect(failure({ ISSUER: issuer, ...vars })).toBe(variable)
  })

  it('selects the provider from what is configured', () => {
    const issuer = 'https://auth.example.com'
    expect(parse({ ISSUER: issuer, RESEND_API_KEY: RESEND_KEY }).mail).toEqual({
      provider: 'resend',
      apiKey: RESEND_KEY,
      baseUrl: 'https://api.resend.com',
    })
    expect(
      parse({
        ISSUER: issuer,
        MAIL_WEBHOOK_URL: 'https://hooks.example.com/mail',
        MAIL_WEBHOOK_SECRET: WEBHOOK_SECRET,
      }).mail,
    ).toEqual({ provider: 'webhook', url: 'https://hooks.example.com/mail', secret: WEBHOOK_SECRET })
    expect(parse({ ISSUER: 'http://127.0.0.1:8801' }).mail).toEqual({ provider: 'log' })
    expect(
      parse({ ISSUER: 'http://localhost:8801', MAIL_WEBHOOK_URL: `${fakeMailUrl}/webhook` }).mail,
    ).toEqual({
      provider: 'webhook',
      url: `${fakeMailUrl}/webhook`,
      secret: undefined,
    })
  })
})

describe('mail from a request, as a deployment configures it', () => {
  /** The app under other bindings; waits for its waitUntil work (the delivery) before returning. */
  async function withVars(vars: Bindings, path: string, body: unknown) {
    const ctx = createExecutionContext()
    const res = await createApp().fetch(
      new Request(`https://auth.example.com${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
      { ...env, MAIL_WEBHOOK_URL: '', ...vars },
      ctx,
    )
    await waitOnExecutionContext(ctx)
    return res
  }

  const outboxFor = (email: string) =>
    testDb().select().from(emailOutbox).where(eq(emailOutbox.toAddress, email))

  it('sends a password reset through Resend (RESEND_BASE_URL) for a public issuer', async () => {
    const user = await seedUser()
    const res = await withVars(
      { ISSUER: 'https://auth.example.com', RESEND_API_KEY: RESEND_KEY, RESEND_BASE_URL: fakeMailUrl },
      '/auth/password-reset',
      { email: user.email },
    )
    expect(res.status).toBe(202)
    const [request, ...more] = await received(user.email)
    expect(more).toHaveLength(0)
    expect(request?.path).toBe('/emails')
    const sent = JSON.parse(request?.body ?? '{}') as { to: string[]; subject: string; text: string }
    expect(sent.to).toEqual([user.email])
    expect(sent.text).toContain('https://auth.example.com/')
    expect(sent.text).toMatch(/token=[\w-]{20,}/)
    const [row] = await outboxFor(user.email)
    expect(row?.sentAt).not.toBeNull()
    expect(row?.bodyText).toBeNull()
  })

  it('refuses to run (500) rather than queue mail it cannot send, for a public issuer without mail', async () => {
    const user = await seedUser()
    const res = await withVars({ ISSUER: 'https://auth.example.com' }, '/auth/password-reset', {
      email: user.email,
    })
    expect(res.status).toBe(500)
    expect(await res.text()).toContain('MAIL_PROVIDER')
    expect(await outboxFor(user.email)).toHaveLength(0)
    expect(await received(user.email)).toHaveLength(0)
  })
})
