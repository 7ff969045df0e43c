import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Page } from 'playwright-core'
import type { BrowserContext } from './context'
import { clickThroughRedirect } from './redirect'
import { shoot } from './shoot'

const REDIRECT_URI = 'https://app.example.com/callback'

async function signIn(page: Page, baseUrl: string, email: string, password: string, returnTo = '/') {
  await page.goto(`${baseUrl}/login?return_to=${encodeURIComponent(returnTo)}`)
  await page.fill('input[name="email"]', email)
  await page.fill('input[name="password"]', password)
  await page.click('form[action="/login"] button[type="submit"]')
}

/**
 * /account in Chromium without JavaScript: signing out another device from the list ends that
 * device's session; removing a connected application makes its refresh token stop working.
 */
export async function run({ baseUrl, browser, adminToken }: BrowserContext): Promise<void> {
  const email = `center-${randomUUID().slice(0, 8)}@example.test`
  const password = 'Account-Center-Passphrase-1'
  const registered = await fetch(`${baseUrl}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, display_name: 'Casey Center' }),
  })
  assert.equal(registered.status, 201, await registered.text())
  const created = await fetch(`${baseUrl}/admin/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'Photo Printer',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      scope: 'openid email offline_access',
    }),
  })
  assert.equal(created.status, 201, await created.clone().text())
  const client = (await created.json()) as { client_id: string; client_secret: string }
  const basic = `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`

  const laptop = await browser.newContext({ javaScriptEnabled: false })
  const phone = await browser.newContext({
    javaScriptEnabled: false,
    userAgent: 'Mozilla/5.0 (iPhone) Safari/604.1',
  })
  try {
    const page = await laptop.newPage()
    const phonePage = await phone.newPage()
    await signIn(phonePage, baseUrl, email, password)
    await phonePage.waitForURL(`${baseUrl}/`)

    // The laptop connects an application (consent page, then a code and a refresh token).
    const verifier = randomBytes(32).toString('base64url')
    const authorizeUrl = `/oauth/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: client.client_id,
      redirect_uri: REDIRECT_URI,
      scope: 'openid email offline_access',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
    })}`
    await signIn(page, baseUrl, email, password, authorizeUrl)
    await page.waitForURL((url) => url.pathname === '/oauth/authorize')
    assert.equal((await page.textContent('[data-testid="consent-account"]'))?.trim(), email)
    await shoot(page, 'consent')
    const callback = await clickThroughRedirect(
      page,
      'button[name="decision"][value="approve"]',
      REDIRECT_URI,
    )
    const code = callback.searchParams.get('code') ?? ''
    const tokenRes = await fetch(`${baseUrl}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URI,
      }),
    })
    assert.equal(tokenRes.status, 200, await tokenRes.clone().text())
    const tokens = (await tokenRes.json()) as { refresh_token?: string }
    assert.ok(tokens.refresh_token)

    // The account center lists both devices and the application.
    await page.goto(`${baseUrl}/account`)
    assert.equal((await page.textContent('[data-testid="account-email"]'))?.trim(), email)
    assert.equal(await page.locator('[data-testid="sessions"] li').count(), 2)
    assert.ok(await page.getByText('Safari on iOS').isVisible())
    assert.ok(await page.getByText('Photo Printer').isVisible())
    await shoot(page, 'account')

    // Sign the phone out from the laptop: the phone's next page is signed out.
    const phoneRow = page.locator('[data-testid="sessions"] li', { hasText: 'Safari on iOS' })
    await phoneRow.locator('button:has-text("Sign out")').click()
    await page.waitForSelector('text=That session is signed out.')
    assert.equal(await page.locator('[data-testid="sessions"] li').count(), 1)
    await phonePage.goto(`${baseUrl}/`)
    assert.ok(await phonePage.getByText('You are not signed in').isVisible(), 'the phone is signed out')
    const me = await phonePage.request.get(`${baseUrl}/auth/session`)
    assert.equal(me.status(), 401)

    // Remove the application: its refresh token stops working.
    await page.locator('[data-testid="apps"] li', { hasText: 'Photo Printer' }).locator('button').click()
    await page.waitForSelector('[data-testid="no-apps"]')
    await shoot(page, 'account-after-revoke')
    const refreshed = await fetch(`${baseUrl}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token }),
    })
    assert.equal(refreshed.status, 400)
    assert.equal(((await refreshed.json()) as { error: string }).error, 'invalid_grant')
  } finally {
    await laptop.close()
    await phone.close()
  }
}
