import { describe, expect, it } from 'vitest'
import { retryOnDeadlock } from '../../db/errors'

/** An error shaped like the Neon driver's: the SQLSTATE on the error or on its cause. */
function pgError(code: string): Error {
  return new Error('Failed query', { cause: Object.assign(new Error(code), { code }) })
}

describe('retryOnDeadlock', () => {
  it('runs a deadlock victim again until it succeeds (at most three runs in all)', async () => {
    let runs = 0
    const result = await retryOnDeadlock(async () => {
      runs++
      if (runs < 3) {
        throw pgError('40P01')
      }
      return 'charged'
    })
    expect(result).toBe('charged')
    expect(runs).toBe(3)
  })

  it('gives up after the third deadlock and throws it', async () => {
    let runs = 0
    const failure = await retryOnDeadlock(async () => {
      runs++
      throw pgError('40P01')
    }).catch((error: unknown) => error)
    expect(runs).toBe(3)
    expect((failure as Error).cause).toMatchObject({ code: '40P01' })
  })

  it('never runs again for any other failure (a constraint, an unavailable database)', async () => {
    for (const code of ['23505', '57P01', '40001']) {
      let runs = 0
      await expect(
        retryOnDeadlock(async () => {
          runs++
          throw pgError(code)
        }),
      ).rejects.toThrow('Failed query')
      expect(runs, code).toBe(1)
    }
  })
})
