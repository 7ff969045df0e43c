import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import type { Page } from 'playwright-core'
import { timeStep, totpCode } from '../../functions/crypto/totp'
import type { BrowserContext } from './context'
import { keepMailCopies, linkFromMail } from './mail'
import { shoot } from './shoot'

async function passwordStep(page: Page, baseUrl: string, email: string, password: string) {
  await page.goto(`${baseUrl}/login`)
  await page.fill('form[action="/login"] input[name="email"]', email)
  await page.fill('form[action="/login"] input[name="password"]', password)
  await page.click('form[action="/login"] button[type="submit"]')
  await page.waitForSelector('form[action="/login/mfa"]')
}

async function secondStep(page: Page, code: string) {
  await page.fill('form[action="/login/mfa"] input[name="code"]', code)
  await page.click('form[action="/login/mfa"] button[type="submit"]')
}

async function signOut(page: Page, baseUrl: string) {
  await page.goto(`${baseUrl}/`)
  await page.click('form[action="/logout"] button[type="submit"]')
  await page.goto(`${baseUrl}/`)
  assert.ok(await page.getByText('You are not signed in').isVisible(), 'signed out')
}

/**
 * Two-factor sign-in in Chromium without JavaScript: TOTP enrolment from /account with a code
 * computed here from the key the page shows (the QR code is drawn and visible) → sign out → sign
 * in with password and TOTP; a recovery code signs in once and is refused the second time; new
 * recovery codes; the email change with its mailed link. Screenshots of every page on the way.
 */
export async function run({ baseUrl, databaseUrl, browser }: BrowserContext): Promise<void> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  const context = await browser.newContext({ javaScriptEnabled: false })
  const page = await context.newPage()
  try {
    await keepMailCopies(db)
    const email = `totp-${randomUUID().slice(0, 8)}@example.test`
    const password = 'Two-Factor-Passphrase-1'
    const registered = await fetch(`${baseUrl}/auth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password, display_name: 'Tova Factor' }),
    })
    assert.equal(registered.status, 201, await registered.text())

    await page.goto(`${baseUrl}/login?return_to=%2Faccount`)
    await page.fill('form[action="/login"] input[name="email"]', email)
    await page.fill('form[action="/login"] input[name="password"]', password)
    await page.click('form[action="/login"] button[type="submit"]')
    await page.waitForURL(`${baseUrl}/account`)
    assert.ok(await page.locator('[data-testid="totp-off"]').isVisible())

    // Enrol: the QR code is drawn; the code comes from the key shown as text.
    await page.click('form[action="/account/totp/start"] button[type="submit"]')
    await page.waitForSelector('[data-testid="totp-qr"] svg')
    const box = await page.locator('[data-testid="totp-qr"] svg').boundingBox()
    assert.ok(
      box !== null && box.width >= 150 && Math.abs(box.width - box.height) < 2,
      `QR box ${JSON.stringify(box)}`,
    )
    await shoot(page, 'totp-setup')
    const secret = ((await page.textContent('[data-testid="totp-secret"]')) ?? '').replace(/\s/g, '')
    assert.match(secret, /^[A-Z2-7]{32}$/)
    const step = timeStep(new Date())
    await page.fill('input[name="code"]', await totpCode(secret, step))
    await page.click('form[action="/account/totp/confirm"] button[type="submit"]')
    await page.waitForSelector('[data-testid="recovery-codes"]')
    await shoot(page, 'recovery-codes')
    const recovery = (await page.locator('[data-testid="recovery-codes"] code').allTextContents()).map((c) =>
      c.trim(),
    )
    assert.equal(recovery.length, 10)
    await page.goto(`${baseUrl}/account`)
    assert.ok(await page.locator('[data-testid="totp-on"]').isVisible())
    await shoot(page, 'account-totp-on')

    // Sign out, then sign in with password and a TOTP code (a later step: the enrolment's is spent).
    await signOut(page, baseUrl)
    await passwordStep(page, baseUrl, email, password)
    await shoot(page, 'login-second-step')
    await secondStep(page, await totpCode(secret, step + 1))
    await page.waitForURL(`${baseUrl}/`)
    const me = await page.request.get(`${baseUrl}/auth/session`)
    assert.equal(me.status(), 200)

    // A recovery code works once.
    const code = recovery[0] ?? ''
    await signOut(page, baseUrl)
    await passwordStep(page, baseUrl, email, password)
    await secondStep(page, code)
    await page.waitForURL(`${baseUrl}/`)
    await signOut(page, baseUrl)
    await passwordStep(page, baseUrl, email, password)
    await secondStep(page, code)
    await page.waitForSelector('text=That code is not right, or it was already used.')
    await shoot(page, 'login-second-step-error')
    assert.equal((await page.request.get(`${baseUrl}/auth/session`)).status(), 401)
    await secondStep(page, recovery[1] ?? '')
    await page.waitForURL(`${baseUrl}/`)

    // New recovery codes replace the old ones.
    await page.goto(`${baseUrl}/account`)
    await page.fill('#factor_password', password)
    await page.click('[data-testid="new-recovery-codes"]')
    await page.waitForSelector('[data-testid="recovery-codes"]')
    const renewed = await page.locator('[data-testid="recovery-codes"] code').allTextContents()
    assert.equal(renewed.length, 10)
    assert.ok(!renewed.some((c) => recovery.includes(c.trim())))

    // Email change: the link goes to the new address; the address changes once it is confirmed.
    const next = `moved-${randomUUID().slice(0, 8)}@example.test`
    await page.goto(`${baseUrl}/account`)
    await page.click('[data-testid="change-email"]')
    await page.waitForSelector('form[action="/account/email"]')
    await shoot(page, 'account-email')
    await page.fill('#new_email', next)
    await page.fill('#email_password', password)
    await page.click('form[action="/account/email"] button[type="submit"]')
    await page.waitForSelector('[data-testid="email-change-sent"]')
    await shoot(page, 'email-change-sent')
    const link = await linkFromMail(db, next, 'email_change')
    await page.goto(link)
    await shoot(page, 'email-change-confirm')
    await page.click('form[action="/account/email/confirm"] button[type="submit"]')
    await page.waitForSelector('[data-testid="email-changed"]')
    await shoot(page, 'email-changed')
    await page.goto(`${baseUrl}/account`)
    assert.equal((await page.textContent('[data-testid="account-email"]'))?.trim(), next)
    // The notice to the old address is queued in the same statement as the change.
    const notice = await db.query('SELECT 1 FROM browser_test_mail WHERE to_address = $1 AND template = $2', [
      email,
      'email_changed_notice',
    ])
    assert.equal(notice.rowCount, 1, 'the old address is told')
  } finally {
    await context.close()
    await db.end()
  }
}
