import { describe, expect, it } from 'vitest'
import { ConfigError, checkConfig, InvalidConfigError, parseConfig } from '../../functions/config'

const MASTER_KEY = 'k1:dGVzdC1tYXN0ZXIta2V5LTAwMDAwMDAwMDAwMDAwMDA'
const GOOD = {
  ISSUER: 'https://auth.portcullis.dev',
  DATABASE_URL: 'postgres://u:p@db.internal/app',
  MASTER_KEY,
  ADMIN_TOKEN: 'a'.repeat(40),
  API_KEY_ENV: 'live',
  REGISTRATION_POLICY: 'token',
  MAIL_PROVIDER: 'resend',
  RESEND_API_KEY: 're_123456',
}

describe('config check (issue 12: every problem at once)', () => {
  it('passes a complete production configuration with no warnings', () => {
    expect(checkConfig(GOOD)).toEqual({ problems: [], warnings: [] })
  })

  it('lists every problem at once, each variable once, never a value', () => {
    const bad = {
      ...GOOD,
      ISSUER: 'http://auth.portcullis.dev',
      DATABASE_URL: 'mysql://secret-password@x/y',
      MASTER_KEY: 'k1:short-secret-value',
      ADMIN_TOKEN: undefined,
      ACCESS_TOKEN_TTL: '-5',
      REQUIRE_APPROVAL: 'maybe',
      TIER_QUOTAS: 'gold=5',
      RESEND_API_KEY: undefined,
      ARGON2_MEMORY_KIB: '262144',
    }
    const { problems } = checkConfig(bad)
    expect(problems.map((p) => p.variable).sort()).toEqual(
      [
        'ACCESS_TOKEN_TTL',
        'ADMIN_TOKEN',
        'ARGON2_MEMORY_KIB',
        'DATABASE_URL',
        'ISSUER',
        'MASTER_KEY',
        'REQUIRE_APPROVAL',
        'RESEND_API_KEY',
        'TIER_QUOTAS',
      ].sort(),
    )
    const text = problems.map((p) => p.message).join('\n')
    expect(text).not.toContain('secret-password')
    expect(text).not.toContain('short-secret-value')
    // The runtime parse refuses with the same list, in one error.
    let thrown: unknown
    try {
      parseConfig(bad)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(InvalidConfigError)
    expect(thrown).toBeInstanceOf(ConfigError)
    expect((thrown as InvalidConfigError).problems).toHaveLength(problems.length - 2)
  })

  it('reads USAGE_DETAIL_RETENTION_DAYS: defaults to USAGE_RETENTION_DAYS, 0 turns raw rows off', () => {
    expect(parseConfig({ ...GOOD, USAGE_RETENTION_DAYS: '45' }).usageDetailRetentionDays).toBe(45)
    const off = parseConfig({ ...GOOD, USAGE_DETAIL_RETENTION_DAYS: '0' })
    expect([off.usageRetentionDays, off.usageDetailRetentionDays]).toEqual([90, 0])
    for (const value of ['-1', '7.5', 'none']) {
      const { problems } = checkConfig({ ...GOOD, USAGE_DETAIL_RETENTION_DAYS: value })
      expect(problems.map((p) => [p.variable, p.message])).toEqual([
        ['USAGE_DETAIL_RETENTION_DAYS', expect.stringContaining('integer >= 0')],
      ])
    }
  })

  it('refuses the example.com placeholder issuer and a public issuer without mail', () => {
    const { problems } = checkConfig({
      ...GOOD,
      ISSUER: 'https://auth.example.com',
      MAIL_PROVIDER: undefined,
      RESEND_API_KEY: undefined,
    })
    expect(problems.map((p) => p.variable).sort()).toEqual(['ISSUER', 'MAIL_PROVIDER'])
  })

  it("refuses wrangler.toml's example.com MAIL_FROM for a public issuer, not for a loopback one", () => {
    const placeholder = 'Example <no-reply@auth.example.com>'
    expect(checkConfig({ ...GOOD, MAIL_FROM: placeholder }).problems.map((p) => p.variable)).toEqual([
      'MAIL_FROM',
    ])
    expect(
      checkConfig({ ...GOOD, MAIL_FROM: 'no-reply@Example.org' }).problems.map((p) => p.variable),
    ).toEqual(['MAIL_FROM'])
    expect(checkConfig({ ...GOOD, MAIL_FROM: 'Portcullis <no-reply@mail.portcullis.dev>' }).problems).toEqual(
      [],
    )
    expect(
      checkConfig({
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/x',
        MASTER_KEY,
        ADMIN_TOKEN: 'a'.repeat(40),
        MAIL_FROM: placeholder,
      }).problems,
    ).toEqual([])
  })

  it('warns about development defaults left on a public issuer', () => {
    const { problems, warnings } = checkConfig({ ...GOOD, API_KEY_ENV: 'test', REGISTRATION_POLICY: 'open' })
    expect(problems).toEqual([])
    expect(warnings.map((w) => w.variable).sort()).toEqual(['API_KEY_ENV', 'REGISTRATION_POLICY'])
  })

  it('accepts the local defaults (loopback issuer, mail logged)', () => {
    expect(
      checkConfig({
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/x',
        MASTER_KEY,
        ADMIN_TOKEN: 'a'.repeat(40),
      }),
    ).toEqual({ problems: [], warnings: [] })
  })
})
