import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { BrowserContext } from './context'

/**
 * A person signs in through /login the way the authorize flow sends them there, without
 * JavaScript doing anything special, and lands on return_to with a session.
 */
export async function run({ baseUrl, browser }: BrowserContext): Promise<void> {
  const email = `browser-${randomUUID().slice(0, 8)}@example.test`
  const password = 'Browser-Test-Passphrase-42'
  const registered = await fetch(`${baseUrl}/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password, display_name: 'Browser Tester' }),
  })
  assert.equal(registered.status, 201, await registered.text())

  const context = await browser.newContext({ javaScriptEnabled: false })
  const page = await context.newPage()
  try {
    const returnTo = '/?from=login-browser-test'
    await page.goto(`${baseUrl}/login?return_to=${encodeURIComponent(returnTo)}`)
    assert.equal(await page.title(), 'Sign in · Portcullis')

    // A wrong password first: the form comes back with an error and no session.
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', 'Not-The-Password-1')
    await page.click('button[type="submit"]')
    assert.match((await page.textContent('[role="alert"]')) ?? '', /incorrect/)
    assert.equal(
      (await context.cookies()).some((c) => c.name === 'portcullis_session'),
      false,
    )

    await page.fill('input[name="password"]', password)
    await page.click('button[type="submit"]')
    await page.waitForURL(`${baseUrl}${returnTo}`)
    assert.equal((await page.textContent('[data-testid="signed-in-email"]'))?.trim(), email)

    const session = (await context.cookies()).find((c) => c.name === 'portcullis_session')
    assert.ok(session, 'a session cookie is set')
    assert.equal(session.httpOnly, true)
    assert.equal(session.sameSite, 'Lax')
    const me = await page.request.get(`${baseUrl}/auth/session`)
    assert.equal(me.status(), 200)
    assert.equal(((await me.json()) as { user: { email: string } }).user.email, email)

    // An off-origin return_to is never followed.
    await page.click('button[type="submit"]')
    await page.waitForURL(`${baseUrl}/login`)
    await page.goto(`${baseUrl}/login?return_to=${encodeURIComponent('https://evil.example/')}`)
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('button[type="submit"]')
    await page.waitForURL(`${baseUrl}/`)
  } finally {
    await context.close()
  }
}
