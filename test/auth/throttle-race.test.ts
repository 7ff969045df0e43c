import { eq } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { loginThrottles } from '../../db/schema'
import { DEFAULT_TENANT_ID } from '../../db/schema/constants'
import { uniqueEmail } from '../helpers/accounts'
import { testDb } from '../helpers/db'
import { postJson, realPostgres } from '../helpers/worker'

describe.skipIf(!realPostgres)('failed-login counters under concurrency', () => {
  it('counts every one of simultaneous failures (atomic upsert, no lost update)', async () => {
    const email = uniqueEmail()
    const answers = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        postJson('/auth/login', { email, password: `Wrong-Password-${i}` }),
      ),
    )
    expect(answers.map((r) => r.status)).toEqual([401, 401, 401, 401])
    const [row] = await testDb()
      .select()
      .from(loginThrottles)
      .where(eq(loginThrottles.subject, `account:${DEFAULT_TENANT_ID}:${email.toLowerCase()}`))
    expect(row?.failures).toBe(4)
  })
})
