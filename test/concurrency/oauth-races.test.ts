import { describe, expect, it } from 'vitest'
import {
  basicAuth,
  exchangeCode,
  obtainCode,
  postForm,
  refresh,
  seedUser,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { realPostgres } from '../helpers/worker'

const CONCURRENCY = 20

describe.skipIf(!realPostgres)('OAuth races on a real Postgres', () => {
  it(`${CONCURRENCY} concurrent exchanges of one code: exactly one success`, async () => {
    const client = await webClient()
    const user = await seedUser()
    const code = await obtainCode(client, user)
    const results = await Promise.all(Array.from({ length: CONCURRENCY }, () => exchangeCode(client, code)))
    const statuses = results.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(1)
    expect(statuses.filter((s) => s === 400)).toHaveLength(CONCURRENCY - 1)
  })

  it(`${CONCURRENCY} concurrent uses of one refresh token: exactly one success and the family revoked`, async () => {
    const client = await webClient()
    const user = await seedUser()
    const first = (await (await exchangeCode(client, await obtainCode(client, user))).json()) as TokenSet
    const results = await Promise.all(
      Array.from({ length: CONCURRENCY }, () => refresh(client, first.refresh_token ?? '')),
    )
    const winners = results.filter((r) => r.status === 200)
    expect(winners).toHaveLength(1)
    const won = (await winners[0]?.json()) as TokenSet
    // The losers presented a rotated token: the family (the winner's new token included) is revoked.
    expect(await (await refresh(client, won.refresh_token ?? '')).json()).toMatchObject({
      error: 'invalid_grant',
    })
    const intro = await postForm('/oauth/introspect', { token: won.access_token }, basicAuth(client))
    expect(await intro.json()).toEqual({ active: false })
  })
})
