import type { Page } from 'playwright-core'

/**
 * Clicks `selector` and resolves with the URL the page was redirected to under `prefix`, once
 * the page has settled there. Playwright's routes never see the hops of a redirect, so an
 * off-loopback callback (https://app.example.com/…) is not captured: its name does not
 * resolve and Chromium commits an error page. A navigation the test starts before that commit
 * is cut off by it, so wait for the main frame to land (on the callback or the error page).
 */
export async function clickThroughRedirect(page: Page, selector: string, prefix: string): Promise<URL> {
  const request = page.waitForRequest((r) => r.url().startsWith(prefix))
  const settled = page.waitForEvent('framenavigated', {
    predicate: (frame) =>
      frame === page.mainFrame() &&
      (frame.url().startsWith(prefix) || frame.url().startsWith('chrome-error:')),
  })
  await page.click(selector)
  const url = new URL((await request).url())
  await settled
  return url
}
