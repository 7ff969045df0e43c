import { sql } from 'drizzle-orm'
import { Hono } from 'hono'
import { describe, expect, it, vi } from 'vitest'
import { ProblemError } from '../../functions/errors/problem'
import { renderError } from '../../functions/errors/render'
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

describe('renderError log levels', () => {
  function appThrowing(error: Error): Hono {
    const app = new Hono()
    app.get('/x', () => {
      throw error
    })
    app.onError(renderError)
    return app
  }

  it('logs shed load (503 overloaded) as a warning and a real failure as an error', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const error = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const shed = await appThrowing(new ProblemError('overloaded')).request('/x')
      expect(shed.status).toBe(503)
      expect(warn.mock.calls.map(([line]) => JSON.parse(String(line)).code)).toEqual(['overloaded'])
      expect(error).not.toHaveBeenCalled()

      const broken = await appThrowing(new Error('boom')).request('/x')
      expect(broken.status).toBe(500)
      expect(error.mock.calls.map(([line]) => JSON.parse(String(line)))).toMatchObject([
        { level: 'error', event: 'request_failed', code: 'internal_error' },
      ])
    } finally {
      warn.mockRestore()
      error.mockRestore()
    }
  })
})
