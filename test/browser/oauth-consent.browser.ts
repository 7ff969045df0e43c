import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { argon2id } from 'hash-wasm'
import pg from 'pg'
import type { BrowserContext } from './context'
import { clickThroughRedirect } from './redirect'

const REDIRECT_URI = 'https://app.example.com/callback'

function base64url(bytes: Buffer): string {
  return bytes.toString('base64url')
}

/**
 * login → consent → redirect back with a code, in a real browser, then the code is exchanged.
 * Signs in through the /login form (never a seeded cookie: the form is part of what is tested).
 */
export async function run({ baseUrl, databaseUrl, browser, adminToken }: BrowserContext): Promise<void> {
  const email = `browser-${randomBytes(6).toString('hex')}@example.com`
  const password = `Pw-${randomBytes(12).toString('hex')}`
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  try {
    const salt = randomBytes(16)
    const passwordHash = await argon2id({
      password,
      salt,
      parallelism: 1,
      iterations: 2,
      memorySize: 19_456,
      hashLength: 32,
      outputType: 'encoded',
    })
    const { rows } = await db.query<{ id: string }>(
      `insert into users (email, password_hash, display_name, status, email_verified_at) values ($1, $2, 'Browser User', 'active', now()) returning id`,
      [email, passwordHash],
    )
    const userId = rows[0]?.id
    assert.ok(userId)
  } finally {
    await db.end()
  }

  const created = await fetch(`${baseUrl}/admin/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Browser Test App',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      scope: 'openid email offline_access',
    }),
  })
  assert.equal(created.status, 201, await created.clone().text())
  const client = (await created.json()) as { client_id: string; client_secret: string }

  const verifier = base64url(randomBytes(32))
  const challenge = base64url(createHash('sha256').update(verifier).digest())
  const authorizeUrl = `${baseUrl}/oauth/authorize?${new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email',
    state: 'browser-state',
    code_challenge: challenge,
    code_challenge_method: 'S256',
  })}`

  const context = await browser.newContext()
  const page = await context.newPage()
  try {
    await page.goto(authorizeUrl)
    // A signed-out visitor must be sent to the /login form; no fallback to a planted cookie,
    // or a broken login page would go unnoticed.
    assert.equal(new URL(page.url()).pathname, '/login', `expected the login page, got ${page.url()}`)
    assert.ok((await page.locator('input[name="email"]').count()) > 0, '/login rendered no email field')
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await Promise.all([
      page.waitForURL((url) => url.pathname !== '/login'),
      page.locator('form button[type="submit"], form input[type="submit"]').first().click(),
    ])
    assert.equal(
      new URL(page.url()).pathname,
      '/oauth/authorize',
      `expected the consent page, got ${page.url()}`,
    )
    assert.ok(await page.getByText('Browser Test App').first().isVisible())
    // The client's host does not exist here: observe the redirect rather than load it.
    const callback = await clickThroughRedirect(
      page,
      'button[name="decision"][value="approve"]',
      REDIRECT_URI,
    )
    assert.equal(callback.searchParams.get('state'), 'browser-state')
    assert.equal(callback.searchParams.get('iss'), baseUrl.replace(/\/+$/, ''))
    const code = callback.searchParams.get('code')
    assert.ok(code)

    const token = await fetch(`${baseUrl}/oauth/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URI,
      }),
    })
    assert.equal(token.status, 200, await token.clone().text())
    const body = (await token.json()) as { access_token: string; id_token?: string }
    assert.ok(body.access_token)
    assert.ok(body.id_token)
  } finally {
    await context.close()
  }
}
