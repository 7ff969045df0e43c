import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Page } from 'playwright-core'

const SCREENSHOTS = join(import.meta.dirname, 'screenshots')

/** The page in three looks (issue 14): light, dark and a narrow phone width, into screenshots/. */
export async function shoot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true })
  const wide = page.viewportSize() ?? { width: 1280, height: 800 }
  await page.emulateMedia({ colorScheme: 'light' })
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-light.png`), fullPage: true })
  await page.emulateMedia({ colorScheme: 'dark' })
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-dark.png`), fullPage: true })
  await page.setViewportSize({ width: 360, height: 740 })
  await page.emulateMedia({ colorScheme: 'light' })
  await page.screenshot({ path: join(SCREENSHOTS, `${name}-narrow.png`), fullPage: true })
  await page.setViewportSize(wide)
}
