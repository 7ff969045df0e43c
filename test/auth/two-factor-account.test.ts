import { decodeQR } from '@paulmillr/qr/decode.js'
import { and, eq, isNull } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { auditEvents, recoveryCodes } from '../../db/schema'
import { seedUser, sessionCookieOf } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { accountPost, codeAt, enrol, firstStep, secondStep } from '../helpers/mfa'
import { postForm } from '../helpers/oauth'

const SCALE = 4

/**
 * Draws the enrolment page's SVG (unit squares `M x y h1v1h-1z` on a white square) into an RGB
 * image, SCALE pixels a module, so a QR decoder reads it as a camera would read the screen.
 */
function rasterize(svg: string): { width: number; height: number; data: Uint8Array } {
  const size = Number(/viewBox="0 0 (\d+) \1"/.exec(svg)?.[1])
  const px = size * SCALE
  const data = new Uint8Array(px * px * 3).fill(255)
  for (const m of svg.matchAll(/M(\d+) (\d+)h1v1h-1z/g)) {
    const x0 = Number(m[1]) * SCALE
    const y0 = Number(m[2]) * SCALE
    for (let y = y0; y < y0 + SCALE; y++) {
      data.fill(0, (y * px + x0) * 3, (y * px + x0 + SCALE) * 3)
    }
  }
  return { width: px, height: px, data }
}

type Image = ReturnType<typeof rasterize>

/** The image turned a quarter clockwise. */
function quarterTurn(image: Image): Image {
  const { width, height, data } = image
  const turned = new Uint8Array(data.length)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const to = (x * height + (height - 1 - y)) * 3
      turned.set(data.subarray((y * width + x) * 3, (y * width + x) * 3 + 3), to)
    }
  }
  return { width: height, height: width, data: turned }
}

/**
 * What a scanner reads from the image, held upright and then turned a quarter at a time, as a
 * phone reads a screen at any angle. The decoder here misreads about 0.65% of valid symbols
 * upright (130 of 20,000 otpauth URIs: a misplaced grid, "invalid version pattern"); every one
 * of them read in another orientation. A symbol that does not hold the text reads in none.
 */
function scan(image: Image): string | undefined {
  let view = image
  for (let turn = 0; turn < 4; turn++) {
    try {
      return decodeQR(view)
    } catch {
      view = quarterTurn(view)
    }
  }
  return undefined
}

async function auditTypes(userId: string, type: string) {
  return testDb()
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.userId, userId), eq(auditEvents.type, type)))
}

describe('TOTP enrolment QR code', () => {
  it('is an inline SVG drawn on the server that decodes to the otpauth URI of the page', async () => {
    const user = await seedUser({ session: true })
    const { uri, setupHtml, secret } = await enrol(user)
    const svg = /<svg class="qr"[\s\S]*?<\/svg>/.exec(setupHtml)?.[0] ?? ''
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"')
    // A version-v symbol is 17 + 4v modules a side; the view box adds the 4-module quiet zone.
    const modules = Number(/data-modules="(\d+)"/.exec(svg)?.[1])
    expect((modules - 17) % 4).toBe(0)
    expect(modules).toBeGreaterThanOrEqual(21)
    expect(svg).toContain(`viewBox="0 0 ${modules + 8} ${modules + 8}"`)
    // No script, no external reference: the image is geometry only.
    expect(svg).not.toMatch(/<script|href=|src=/)
    expect(uri).toContain(`secret=${secret}`)
    expect(scan(rasterize(svg))).toBe(uri)
  })
})

describe('recovery codes regenerated', () => {
  it('needs the password or a code, replaces every old code (used or not), and is audited', async () => {
    const user = await seedUser({ session: true })
    const { recovery, secret } = await enrol(user)
    const used = recovery[0] ?? ''
    expect((await secondStep(await firstStep(user), used)).status).toBe(200)

    const refused = await accountPost(user, '/account/recovery-codes', {
      current_password: 'wrong-password-1',
    })
    expect(refused.status).toBe(400)
    expect(await auditTypes(user.id, 'recovery_codes_regenerated')).toHaveLength(0)
    const before = await testDb().select().from(recoveryCodes).where(eq(recoveryCodes.userId, user.id))
    expect(before).toHaveLength(10)

    const renewed = await accountPost(user, '/account/recovery-codes', { current_password: user.password })
    const page = await renewed.text()
    expect(renewed.status, page).toBe(200)
    const fresh = [...page.matchAll(/<li><code>([a-z2-7]{5}-[a-z2-7]{5})<\/code><\/li>/g)].map(
      (m) => m[1] ?? '',
    )
    expect(fresh).toHaveLength(10)
    expect(new Set(fresh).size).toBe(10)
    expect(fresh.some((code) => recovery.includes(code))).toBe(false)
    const events = await auditTypes(user.id, 'recovery_codes_regenerated')
    expect(events).toHaveLength(1)
    expect(JSON.stringify(events[0]?.metadata)).not.toMatch(/[a-z2-7]{5}-[a-z2-7]{5}/)
    const unused = await testDb()
      .select()
      .from(recoveryCodes)
      .where(and(eq(recoveryCodes.userId, user.id), isNull(recoveryCodes.usedAt)))
    expect(unused).toHaveLength(10)

    // Every old code is dead, the one used before and one never used.
    for (const old of [used, recovery[5] ?? '']) {
      const res = await secondStep(await firstStep(user), old)
      expect(res.status).toBe(401)
      expect(sessionCookieOf(res)).toBeUndefined()
    }
    const ok = await secondStep(await firstStep(user), fresh[3] ?? '')
    expect(ok.status).toBe(200)
    expect((await secondStep(await firstStep(user), fresh[3] ?? '')).status).toBe(401)

    // A current code from the app is proof too.
    const byCode = await accountPost(user, '/account/recovery-codes', { code: await codeAt(secret, 1) })
    expect(byCode.status).toBe(200)
    expect(await auditTypes(user.id, 'recovery_codes_regenerated')).toHaveLength(2)
  })

  it('refuses without two-factor sign-in on, and writes no codes', async () => {
    const user = await seedUser({ session: true })
    const res = await accountPost(user, '/account/recovery-codes', { current_password: user.password })
    expect(res.status).toBe(400)
    expect(await testDb().select().from(recoveryCodes).where(eq(recoveryCodes.userId, user.id))).toHaveLength(
      0,
    )
  })

  it('refuses a post without the CSRF token', async () => {
    const user = await seedUser({ session: true })
    await enrol(user)
    const res = await postForm(
      '/account/recovery-codes',
      { current_password: user.password },
      { cookie: user.cookie },
    )
    expect(res.status).toBe(403)
    expect(await auditTypes(user.id, 'recovery_codes_regenerated')).toHaveLength(0)
  })
})
