import { describe, expect, it } from 'vitest'
import { STRONG_PASSWORD, uniqueEmail } from '../helpers/accounts'
import { createKey, seedUser as seedKeyOwner } from '../helpers/apikeys'
import { adminClient, DEVICE_GRANT, deviceDecide, devicePoll, deviceStart, seedUser } from '../helpers/oauth'
import { call, describeResponse, postJson, realPostgres } from '../helpers/worker'

// Truly concurrent requests on the real Postgres: each race has exactly one winner and the
// losers get a clean 4xx, never a 500.
describe.skipIf(!realPostgres)('races a reviewer asks about (real Postgres)', () => {
  it('two concurrent registrations of one address: one 201, one 409', async () => {
    const email = uniqueEmail()
    const answers = await Promise.all(
      [email, email.toUpperCase()].map((address) =>
        postJson('/auth/register', { email: address, password: STRONG_PASSWORD }),
      ),
    )
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses, (await Promise.all(answers.map(describeResponse))).join(' | ')).toEqual([201, 409])
  })

  it('concurrent device-code polls after approval: tokens exactly once', async () => {
    const client = await adminClient({
      grant_types: [DEVICE_GRANT, 'refresh_token'],
      token_endpoint_auth_method: 'none',
      scope: 'openid offline_access',
    })
    const device = await deviceStart(client.client_id)
    const user = await seedUser()
    expect((await deviceDecide(user, device.user_code, 'approve')).status).toBe(200)
    const polls = await Promise.all(
      Array.from({ length: 8 }, () => devicePoll(client.client_id, device.device_code)),
    )
    const ok = polls.filter((r) => r.status === 200)
    expect(ok, (await Promise.all(polls.map(describeResponse))).join(' | ')).toHaveLength(1)
    for (const res of polls.filter((r) => r.status !== 200)) {
      expect(res.status).toBe(400)
      expect(['invalid_grant', 'slow_down']).toContain(((await res.json()) as { error: string }).error)
    }
  })

  it('two concurrent rotations of one API key: one 201, one 409', async () => {
    const owner = await seedKeyOwner()
    const key = await createKey(owner.headers)
    const answers = await Promise.all(
      [0, 1].map(() => call(`/api-keys/${key.id}/rotate`, { method: 'POST', headers: owner.headers })),
    )
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses, (await Promise.all(answers.map(describeResponse))).join(' | ')).toEqual([201, 409])
  })
})
