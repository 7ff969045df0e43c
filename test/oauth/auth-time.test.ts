import { sql } from 'drizzle-orm'
import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { testDb } from '../helpers/db'
import {
  authorize,
  codeRequest,
  exchangeCode,
  obtainCode,
  pkce,
  type SeededUser,
  seedUser,
  type TestClient,
  type TokenSet,
  webClient,
} from '../helpers/oauth'
import { describeResponse } from '../helpers/worker'

/** Pretends the user signed in `secondsAgo` ago (the session's creation time). */
async function signedInAgo(user: SeededUser, secondsAgo: number): Promise<Date> {
  const rows = await testDb().execute<{ created_at: string }>(
    sql`update sessions set created_at = date_trunc('second', now()) - make_interval(secs => ${secondsAgo})
        where user_id = ${user.id} returning created_at`,
  )
  const row = rows.rows[0]
  if (row === undefined) {
    throw new Error('seeded user has no session')
  }
  return new Date(row.created_at)
}

async function authorizeWith(client: TestClient, user: SeededUser, extra: Record<string, string>) {
  const p = await pkce()
  return authorize(
    codeRequest(client, p, {
      scope: 'openid',
      state: 'st',
      ...extra,
    }),
    user.cookie,
  )
}

describe('auth_time and max_age (OIDC Core §3.1.2.1, §2)', () => {
  it('puts the time the user signed in, not the time of the request, in auth_time', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const signedIn = await signedInAgo(user, 3600)
    const res = await exchangeCode(client, await obtainCode(client, user))
    expect(res.status, await describeResponse(res)).toBe(200)
    const tokens = (await res.json()) as TokenSet
    const expected = Math.floor(signedIn.getTime() / 1000)
    expect(decodeJwt(tokens.id_token ?? '').auth_time).toBe(expected)
    expect(decodeJwt(tokens.access_token).auth_time).toBe(expected)
  })

  it('sends a user who signed in longer ago than max_age back to /login, once', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    await signedInAgo(user, 3600)
    const res = await authorizeWith(client, user, { max_age: '60' })
    expect(res.status).toBe(302)
    const location = res.headers.get('location') ?? ''
    expect(location).toMatch(/^\/login\?return_to=/)
    const returnTo = decodeURIComponent(location.split('return_to=')[1] ?? '')
    expect(returnTo).toMatch(/^\/oauth\/authorize\?/)
    expect(returnTo).not.toContain('max_age')
  })

  it('answers login_required for a too-old sign-in with prompt=none', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    await signedInAgo(user, 3600)
    const res = await authorizeWith(client, user, { max_age: '60', prompt: 'none' })
    const location = new URL(res.headers.get('location') ?? '')
    expect(location.searchParams.get('error')).toBe('login_required')
    expect(location.searchParams.get('state')).toBe('st')
  })

  it('issues a code when the sign-in is recent enough', async () => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    await signedInAgo(user, 30)
    const res = await authorizeWith(client, user, { max_age: '3600' })
    expect(new URL(res.headers.get('location') ?? '').searchParams.get('code')).toBeTruthy()
  })

  it.each(['-1', 'abc', '1e3', '99999999999'])('refuses max_age=%s as invalid_request', async (maxAge) => {
    const client = await webClient({ first_party: true })
    const user = await seedUser()
    const res = await authorizeWith(client, user, { max_age: maxAge })
    expect(res.status).toBe(302)
    expect(new URL(res.headers.get('location') ?? '').searchParams.get('error')).toBe('invalid_request')
  })
})
