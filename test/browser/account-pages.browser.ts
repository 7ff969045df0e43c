import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { Page } from 'playwright-core'
import type { BrowserContext } from './context'
import { keepMailCopies, linkFromMail } from './mail'
import { shoot } from './shoot'

async function signInThroughForm(page: Page, baseUrl: string, email: string, password: string) {
  await page.goto(`${baseUrl}/login`)
  await page.fill('input[name="email"]', email)
  await page.fill('input[name="password"]', password)
  await page.click('button[type="submit"]')
}

/** Sign-up → verify email → sign in; forgot password → reset → sign in; without JavaScript. */
export async function run({ baseUrl, databaseUrl, browser }: BrowserContext): Promise<void> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  const context = await browser.newContext({ javaScriptEnabled: false })
  const page = await context.newPage()
  try {
    await keepMailCopies(db)
    const email = `people-${randomUUID().slice(0, 8)}@example.test`
    const password = 'People-Pages-Passphrase-1'

    // Sign up from the sign-in page's link.
    await page.goto(`${baseUrl}/login`)
    await shoot(page, 'login')
    await page.click('a:has-text("Create an account")')
    await page.waitForURL(/\/signup/)
    await shoot(page, 'signup')
    await page.fill('input[name="display_name"]', 'Pat People')
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', 'short')
    await page.click('button[type="submit"]')
    assert.match((await page.textContent('[role="alert"]')) ?? '', /at least/)
    await shoot(page, 'signup-error')
    await page.fill('input[name="password"]', password)
    await page.click('button[type="submit"]')
    await page.waitForURL(`${baseUrl}/`)
    assert.equal((await page.textContent('[data-testid="signed-in-email"]'))?.trim(), email)
    assert.match((await page.textContent('[data-testid="session-expiry"]')) ?? '', /expires\s+in \d+ hours?/)
    await shoot(page, 'home')
    await page.click('button:has-text("Sign out")')
    await page.waitForURL(`${baseUrl}/login`)

    // Verify the address from the mail.
    const verifyLink = await linkFromMail(db, email, 'verify_email')
    await page.goto(verifyLink)
    await shoot(page, 'verify-email')
    await page.click('button[type="submit"]')
    await page.waitForLoadState()
    assert.match(await page.content(), /Email confirmed/)
    await shoot(page, 'verify-email-done')
    const verified = await db.query<{ email_verified_at: Date | null }>(
      'SELECT email_verified_at FROM users WHERE email = $1',
      [email],
    )
    assert.ok(verified.rows[0]?.email_verified_at, 'the address is verified')
    await page.click('a:has-text("Sign in")')
    await page.waitForURL(/\/login/)
    await page.fill('input[name="email"]', email)
    await page.fill('input[name="password"]', password)
    await page.click('button[type="submit"]')
    await page.waitForURL(`${baseUrl}/`)
    await page.click('button:has-text("Sign out")')
    await page.waitForURL(`${baseUrl}/login`)

    // Forgot password → reset → sign in with the new one; the old one no longer works.
    await page.click('a:has-text("Forgot your password?")')
    await page.waitForURL(/\/forgot-password/)
    await shoot(page, 'forgot-password')
    await page.fill('input[name="email"]', email)
    await page.click('button[type="submit"]')
    assert.match((await page.textContent('[data-testid="reset-sent"]')) ?? '', /sent it a link/)
    await shoot(page, 'forgot-password-sent')
    const resetLink = await linkFromMail(db, email, 'password_reset')
    await page.goto(resetLink)
    await shoot(page, 'reset-password')
    const newPassword = 'People-Pages-Passphrase-2'
    await page.fill('input[name="password"]', newPassword)
    await page.click('button[type="submit"]')
    await page.waitForSelector('h1:has-text("Password changed")')
    await shoot(page, 'reset-password-done')
    await signInThroughForm(page, baseUrl, email, password)
    assert.match((await page.textContent('[role="alert"]')) ?? '', /incorrect/)
    await signInThroughForm(page, baseUrl, email, newPassword)
    await page.waitForURL(`${baseUrl}/`)
    assert.equal((await page.textContent('[data-testid="signed-in-email"]'))?.trim(), email)

    // A used link says so in words.
    await page.goto(resetLink)
    await page.fill('input[name="password"]', 'People-Pages-Passphrase-3')
    await page.click('button[type="submit"]')
    await page.waitForSelector('h1:has-text("This link no longer works")')
    await shoot(page, 'link-expired')

    // An authorization request that cannot go back to the client: a page, not JSON.
    const bad = await page.goto(`${baseUrl}/oauth/authorize?client_id=nope&response_type=code`)
    assert.equal(bad?.status(), 400)
    assert.match((await page.textContent('[data-testid="oauth-error"]')) ?? '', /cannot send you back/)
    await shoot(page, 'authorize-error')
  } finally {
    await context.close()
    await db.end()
  }
}
