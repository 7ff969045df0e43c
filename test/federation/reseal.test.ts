import {
  createExecutionContext,
  createScheduledController,
  env,
  waitOnExecutionContext,
} from 'cloudflare:test'
import { eq, sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { queryRows } from '../../db/client'
import { externalIdentities, identityProviders, signingKeys, userTotp } from '../../db/schema'
import { openTotpSecret, totpSealContext } from '../../functions/auth/mfa'
import { type Config, parseConfig } from '../../functions/config'
import { seal, unseal } from '../../functions/crypto/aes-gcm'
import type { Bindings } from '../../functions/env'
import { clientSecretContext } from '../../functions/federation/providers'
import { openText } from '../../functions/federation/sealed-text'
import { openSealed } from '../../functions/federation/tokens'
import worker from '../../functions/index'
import { resetKeyCache, signingKeyContext } from '../../functions/tokens/keys'
import { seedUser, uniqueEmail } from '../helpers/accounts'
import { testDb, unique } from '../helpers/db'
import { adminClient, basicAuth, clientCredentialsToken } from '../helpers/oauth'
import { adminHeaders, callWith, fileEnv, realPostgres, useIsolatedDatabase } from '../helpers/worker'
import { FAKE_CLIENT_SECRET } from '../setup/fake-federation'
import { createStoredProvider, FED, githubUser, oidcUser, signIn } from './flow'

// Re-sealing rewrites every sealed row of the database: a database of its own.
useIsolatedDatabase('reseal')

const K1 = env.MASTER_KEY
const K2 = `k2:${Buffer.from('a second master key, 32 bytes!!!').toString('base64url')}`
const ROTATED = `${K2},${K1}`

function vars(masterKey = K1): Record<string, string> {
  return {
    ...FED,
    OUTBOUND_ALLOW_LOOPBACK: 'true',
    DATABASE_URL: fileEnv().DATABASE_URL ?? '',
    MASTER_KEY: masterKey,
  }
}

function configWith(masterKey: string): Config {
  return parseConfig({ ...(env as unknown as Bindings), MASTER_KEY: masterKey } as Bindings)
}

async function createProvider(masterKey: string): Promise<string> {
  return (await createStoredProvider(vars(masterKey))).slug
}

/** Every sealed value's key id, per table (`<id>:` prefixes and master_key_id columns). */
async function keyIdsInUse(): Promise<Record<string, string[]>> {
  const rows = await queryRows<{ t: string; k: string }>(
    testDb(),
    sql`select distinct 'external_identities' as t, split_part(v, ':', 1) as k
        from external_identities, unnest(array[access_token_sealed, refresh_token_sealed]) as v where v is not null
      union select distinct 'identity_providers', split_part(client_secret_sealed, ':', 1) from identity_providers
      union select distinct 'user_totp', master_key_id from user_totp
      union select distinct 'signing_keys', master_key_id from signing_keys`,
  )
  const byTable: Record<string, string[]> = {}
  for (const row of rows) {
    byTable[row.t] = [...(byTable[row.t] ?? []), row.k].sort()
  }
  return byTable
}

async function reseal(limit: number, masterKey = ROTATED) {
  const res = await callWith(vars(masterKey), `/admin/master-key/reseal?limit=${limit}`, {
    method: 'POST',
    headers: adminHeaders(),
  })
  expect(res.status, await res.clone().text()).toBe(200)
  return (await res.json()) as {
    resealed: Record<string, number>
    remaining: Record<string, number>
    unreadable: Record<string, number>
    done: boolean
  }
}

describe('MASTER_KEY rotation', () => {
  it.skipIf(!realPostgres)(
    'with k2,k1 values under k1 still open; bounded passes re-seal tokens, provider secrets, TOTP secrets and signing keys under k2',
    async () => {
      // Under k1: upstream tokens (GitHub App user tokens with a refresh token), two providers,
      // two TOTP secrets, and the signing keys a first token creates.
      const client = await adminClient({
        client_name: 'Reseal service',
        grant_types: ['client_credentials'],
        scope: 'openid',
      })
      await clientCredentialsToken(client)
      const githubUsers = [1, 2, 3].map(() => githubUser(uniqueEmail(), { expires_in: 28_800 }))
      for (const user of githubUsers) {
        expect((await signIn('github', user, vars())).status).toBe(303)
      }
      const slugs = [await createProvider(K1), await createProvider(K1)]
      const k1Config = configWith(K1)
      const totpSecrets = new Map<string, string>()
      for (const _ of [1, 2]) {
        const user = await seedUser()
        const secret = unique('totp-secret')
        const sealed = await seal(k1Config.masterKeys, secret, totpSealContext(user.id))
        await testDb()
          .insert(userTotp)
          .values({ userId: user.id, masterKeyId: sealed.masterKeyId, secretSealed: sealed.ciphertext })
        totpSecrets.set(user.id, secret)
      }
      const plainTokens = await testDb().select().from(externalIdentities)
      const before = await Promise.all(
        plainTokens.map(async (row) => ({
          id: row.id,
          access: await openSealed(k1Config, row.accessTokenSealed ?? '', row.id, 'access'),
          refresh: await openSealed(k1Config, row.refreshTokenSealed ?? '', row.id, 'refresh'),
        })),
      )
      expect(await keyIdsInUse()).toEqual({
        external_identities: ['k1'],
        identity_providers: ['k1'],
        user_totp: ['k1'],
        signing_keys: ['k1'],
      })

      // MASTER_KEY="k2:…,k1:…" deployed: what k1 sealed still opens (a sign-in through a stored
      // provider opens its k1 client secret), and new values are sealed under k2.
      expect((await signIn(slugs[0] ?? '', oidcUser(uniqueEmail()), vars(ROTATED))).status).toBe(303)
      expect((await createProvider(ROTATED)).length).toBeGreaterThan(0)

      // Bounded passes: one row per table each, until nothing is left under k1.
      const passes: Awaited<ReturnType<typeof reseal>>[] = []
      for (let i = 0; i < 10; i++) {
        const report = await reseal(1)
        passes.push(report)
        for (const count of Object.values(report.resealed)) {
          expect(count).toBeLessThanOrEqual(1)
        }
        if (report.done) {
          break
        }
      }
      expect(passes.length).toBeGreaterThan(2)
      expect(passes.at(-1)?.done).toBe(true)
      expect(passes.at(-1)?.unreadable).toEqual({
        external_identities: 0,
        identity_providers: 0,
        user_totp: 0,
        signing_keys: 0,
      })
      expect(await keyIdsInUse()).toEqual({
        external_identities: ['k2'],
        identity_providers: ['k2'],
        user_totp: ['k2'],
        signing_keys: ['k2'],
      })
      // Nothing left: another pass rewrites nothing.
      const idle = await reseal(100)
      expect(Object.values(idle.resealed)).toEqual([0, 0, 0, 0])

      // Everything opens with k2 alone, to the same plaintext.
      const k2Config = configWith(K2)
      for (const expected of before) {
        const [row] = await testDb()
          .select()
          .from(externalIdentities)
          .where(eq(externalIdentities.id, expected.id))
        expect(await openSealed(k2Config, row?.accessTokenSealed ?? '', expected.id, 'access')).toBe(
          expected.access,
        )
        expect(await openSealed(k2Config, row?.refreshTokenSealed ?? '', expected.id, 'refresh')).toBe(
          expected.refresh,
        )
      }
      for (const row of await testDb().select().from(identityProviders)) {
        expect(await openText(k2Config, row.clientSecretSealed, clientSecretContext(row.id))).toBe(
          FAKE_CLIENT_SECRET,
        )
      }
      for (const [userId, secret] of totpSecrets) {
        const [row] = await testDb().select().from(userTotp).where(eq(userTotp.userId, userId))
        expect(row === undefined ? '' : await openTotpSecret(k2Config, row)).toBe(secret)
      }
      for (const row of await testDb().select().from(signingKeys)) {
        const jwk = await unseal(
          k2Config.masterKeys,
          { masterKeyId: row.masterKeyId, ciphertext: row.privateJwkEncrypted },
          signingKeyContext(row.kid),
        )
        expect(JSON.parse(jwk)).toHaveProperty('d')
      }
      // And the Worker runs on k2 alone: it signs tokens and signs people in through a stored provider.
      resetKeyCache()
      const token = await callWith(vars(K2), '/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...basicAuth(client) },
        body: 'grant_type=client_credentials',
      })
      expect(token.status, await token.clone().text()).toBe(200)
      resetKeyCache()
      expect((await signIn(slugs[1] ?? '', oidcUser(uniqueEmail()), vars(K2))).status).toBe(303)
    },
  )

  it.skipIf(!realPostgres)('the cron runs a pass when MASTER_KEY lists more than one key', async () => {
    const slug = await createProvider(K1)
    const stored = () => testDb().select().from(identityProviders).where(eq(identityProviders.slug, slug))
    expect((await stored())[0]?.clientSecretSealed.startsWith('k1:')).toBe(true)
    const ctx = createExecutionContext()
    await worker.scheduled(
      createScheduledController({ scheduledTime: Date.now(), cron: '*/15 * * * *' }),
      { ...fileEnv(), MASTER_KEY: ROTATED } as Bindings,
      ctx,
    )
    await waitOnExecutionContext(ctx)
    const [row] = await stored()
    expect(row?.clientSecretSealed.startsWith('k2:')).toBe(true)
    expect(
      await openText(configWith(K2), row?.clientSecretSealed ?? '', clientSecretContext(row?.id ?? '')),
    ).toBe(FAKE_CLIENT_SECRET)
  })

  it('with a single key the pass rewrites nothing and reports done', async () => {
    const report = await reseal(10, K1)
    expect(report.done).toBe(true)
    expect(Object.values(report.resealed)).toEqual([0, 0, 0, 0])
  })
})
