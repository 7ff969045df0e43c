import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { errorForLog } from '../../functions/log'
import { testDb } from '../helpers/db'

describe('errorForLog', () => {
  it('keeps the statement and SQLSTATE of a failed query but never its bound parameters', async () => {
    const secret = 'reset-token-Zq8vTn1sXy'
    const failure = await testDb()
      .execute(sql`select ${secret}::text as t from no_such_table_for_logging`)
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    expect(failure).toBeInstanceOf(Error)
    // Drizzle itself puts the parameters in the message, which is why this helper exists.
    expect((failure as Error).message).toContain(secret)
    const described = errorForLog(failure)
    expect(JSON.stringify(described)).not.toContain(secret)
    expect(described).toMatchObject({ sqlState: '42P01' })
    expect(String(described.message)).toContain('no_such_table_for_logging')
  })

  it('describes a non-Error throw by its type only', () => {
    expect(errorForLog('a string that might be secret')).toEqual({ type: 'string' })
  })
})
