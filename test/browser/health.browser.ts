import assert from 'node:assert/strict'
import type { BrowserContext } from './context'

/** The harness itself: a real browser reaches the Worker and sees JSON from /healthz. */
export async function run({ baseUrl, browser }: BrowserContext): Promise<void> {
  const page = await browser.newPage()
  try {
    const response = await page.goto(`${baseUrl}/healthz`)
    assert.equal(response?.status(), 200)
    const body = JSON.parse((await page.textContent('body')) ?? '') as { status: string }
    assert.equal(body.status, 'ok')
  } finally {
    await page.close()
  }
}
