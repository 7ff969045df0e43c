import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import pg from 'pg'
import type { Page } from 'playwright-core'
import type { BrowserContext } from './context'
import { clickThroughRedirect } from './redirect'
import { shoot } from './shoot'

const REDIRECT_URI = 'https://app.example.com/callback'

/** The newest session's amr of this user, read from the database. */
async function newestAmr(db: pg.Client, email: string): Promise<string[]> {
  const { rows } = await db.query<{ amr: string[] }>(
    `SELECT s.amr FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE lower(u.email) = lower($1) ORDER BY s.created_at DESC LIMIT 1`,
    [email],
  )
  return rows[0]?.amr ?? []
}

async function signOut(page: Page, baseUrl: string): Promise<void> {
  await page.goto(`${baseUrl}/`)
  await page.click('form[action="/logout"] button[type="submit"]')
  await page.waitForURL(`${baseUrl}/login`)
}

/**
 * Passkeys in Chromium with a CDP virtual authenticator (CTAP2, built in, resident keys, user
 * verification): add one from /account after a password sign-in, sign out, sign in with it and no
 * email (also inside an OAuth authorization request, back to consent), and use it in place of a
 * TOTP code in a two-step sign-in. Screenshots of every passkey page.
 */
export async function run({ baseUrl, databaseUrl, browser, adminToken }: BrowserContext): Promise<void> {
  const email = `passkey-${randomUUID().slice(0, 8)}@example.test`
  const password = 'Passkey-Browser-Passphrase-7'
  const registered = await fetch(`${baseUrl}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, display_name: 'Pat Passkey' }),
  })
  assert.equal(registered.status, 201, await registered.text())
  const created = await fetch(`${baseUrl}/admin/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Passkey Photos',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      scope: 'openid email',
    }),
  })
  assert.equal(created.status, 201, await created.clone().text())
  const client = (await created.json()) as { client_id: string }

  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  const context = await browser.newContext()
  const page = await context.newPage()
  try {
    const cdp = await context.newCDPSession(page)
    await cdp.send('WebAuthn.enable', { enableUI: false })
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'internal',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    })

    // Password sign-in, then add a passkey from /account.
    await page.goto(`${baseUrl}/login`)
    await page.waitForSelector('[data-testid="passkey-sign-in"]', { state: 'visible' })
    await shoot(page, 'passkey-login')
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('form[action="/login"] button[type="submit"]')
    await page.waitForURL(`${baseUrl}/`)
    await page.goto(`${baseUrl}/account`)
    await page.fill('#passkey_name', 'Test laptop')
    await page.click('[data-testid="add-passkey"]')
    await page.waitForURL(`${baseUrl}/account?passkey=added#passkeys`)
    assert.match((await page.textContent('[data-testid="passkey-notice"]')) ?? '', /added/)
    assert.match((await page.textContent('[data-testid="passkeys"]')) ?? '', /Test laptop/)
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
    assert.equal(credentials.length, 1)
    assert.equal(credentials[0]?.isResidentCredential, true)
    await page.locator('#passkeys').scrollIntoViewIfNeeded()
    await shoot(page, 'passkey-account')

    // Sign out; sign in with the passkey alone.
    await signOut(page, baseUrl)
    await page.click('[data-testid="passkey-sign-in"]')
    await page.waitForURL(`${baseUrl}/`)
    assert.equal((await page.textContent('[data-testid="signed-in-email"]'))?.trim(), email)
    assert.deepEqual(await newestAmr(db, email), ['hwk', 'user', 'mfa'])
    const signCount = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials[0]
      ?.signCount
    assert.ok((signCount ?? 0) >= 1, `the authenticator signed (count ${signCount})`)

    // Inside an OAuth authorization request: /login with return_to, the passkey, then consent.
    await signOut(page, baseUrl)
    const authorizeUrl = `${baseUrl}/oauth/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: REDIRECT_URI,
      scope: 'openid email',
      state: 'pk-state',
      code_challenge: randomBytes(32).toString('base64url'),
      code_challenge_method: 'S256',
    })}`
    await page.goto(authorizeUrl)
    await page.waitForURL((url) => url.pathname === '/login')
    await page.click('[data-testid="passkey-sign-in"]')
    await page.waitForURL((url) => url.pathname === '/oauth/authorize')
    assert.match((await page.content()) ?? '', /Passkey Photos/)
    const callback = await clickThroughRedirect(page, 'button[value="approve"]', REDIRECT_URI)
    assert.equal(callback.searchParams.get('state'), 'pk-state')
    assert.ok(callback.searchParams.get('code'))

    // Two-step sign-in (TOTP on): the passkey answers the second step instead of a code.
    await db.query(
      `INSERT INTO user_totp (user_id, master_key_id, secret_sealed, confirmed_at)
       SELECT id, 'k1', 'not-used-by-this-test', now() FROM users WHERE lower(email) = lower($1)`,
      [email],
    )
    await page.goto(`${baseUrl}/`)
    await signOut(page, baseUrl)
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('form[action="/login"] button[type="submit"]')
    await page.waitForSelector('[data-testid="passkey-second-factor"]', { state: 'visible' })
    await shoot(page, 'passkey-second-step')
    await page.click('[data-testid="passkey-second-factor"]')
    await page.waitForURL(`${baseUrl}/`)
    assert.deepEqual(await newestAmr(db, email), ['pwd', 'hwk', 'user', 'mfa'])
  } finally {
    await context.close()
    await db.end()
  }
}
