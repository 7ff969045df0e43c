import { describe, expect, it } from 'vitest'
import { equalsConfiguredSecret, secretsEqual } from '../../functions/crypto/compare'

describe('constant-time secret comparison', () => {
  it('secretsEqual: equal only for the same string, whatever the lengths', async () => {
    expect(await secretsEqual('s3cret', 's3cret')).toBe(true)
    expect(await secretsEqual('s3cres', 's3cret')).toBe(false)
    expect(await secretsEqual('s3cret-and-more', 's3cret')).toBe(false)
    expect(await secretsEqual('', 's3cret')).toBe(false)
  })

  it('equalsConfiguredSecret: the same answers, its configured digest kept per configured value', async () => {
    const configured = `admin-${crypto.randomUUID()}`
    expect(await equalsConfiguredSecret(configured, configured)).toBe(true)
    expect(await equalsConfiguredSecret(`${configured}x`, configured)).toBe(false)
    expect(await equalsConfiguredSecret(configured.slice(0, -1), configured)).toBe(false)
    expect(await equalsConfiguredSecret('', configured)).toBe(false)
    // Another configuration (a redeploy with a new token) is compared against its own digest.
    const rotated = `admin-${crypto.randomUUID()}`
    expect(await equalsConfiguredSecret(configured, rotated)).toBe(false)
    expect(await equalsConfiguredSecret(rotated, rotated)).toBe(true)
    // More configured values than the bound: still right for each.
    for (let i = 0; i < 20; i++) {
      expect(await equalsConfiguredSecret(`v${i}`, `v${i}`)).toBe(true)
      expect(await equalsConfiguredSecret(`v${i}`, `v${i + 1}`)).toBe(false)
    }
    expect(await equalsConfiguredSecret(configured, configured)).toBe(true)
  })
})
