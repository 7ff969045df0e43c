import type { HttpDb } from '../../db/client'
import {
  countNotUnderNewest,
  resealStatements,
  SEALED_TABLES,
  type SealedTable,
  selectStaleStatements,
} from '../../db/queries/reseal'
import { totpSealContext } from '../auth/mfa'
import type { Config } from '../config'
import { seal, unseal } from '../crypto/aes-gcm'
import { clientSecretContext } from '../federation/providers'
import { openText, sealText } from '../federation/sealed-text'
import { tokenContext } from '../federation/tokens'
import { errorForLog, log } from '../log'
import { signingKeyContext } from '../tokens/keys'

/** Rows per table one pass re-seals (the cron's pass; POST /admin/master-key/reseal may ask for another). */
export const RESEAL_BATCH = 100

export interface ResealReport {
  /** Rows rewritten under the newest key by this pass, per table. */
  resealed: Record<SealedTable, number>
  /** Rows still under an older configured key (a later pass takes them), per table. */
  remaining: Record<SealedTable, number>
  /** Rows under a key MASTER_KEY no longer lists: nothing can open them. */
  unreadable: Record<SealedTable, number>
  /** Nothing is left under an older configured key: the older keys may be dropped from MASTER_KEY. */
  done: boolean
}

type Statement = Parameters<HttpDb['batch']>[0][number]

function perTable(value: (t: SealedTable) => number): Record<SealedTable, number> {
  return Object.fromEntries(SEALED_TABLES.map((t) => [t, value(t)])) as Record<SealedTable, number>
}

/**
 * After MASTER_KEY="k2:…,k1:…": rewrites up to `limit` rows per table from an older key to the
 * newest (k2): upstream tokens and identity-provider client secrets (`<key id>:…` columns), TOTP
 * secrets and signing keys (`master_key_id` columns). Each value is opened with the key it names
 * and sealed again under the same associated data; each write holds only if the row still has
 * what was read. Round trips: none with a single key; else one (read) + one (writes) + one (count).
 * A value that does not open (tampered) is logged and left; it counts as remaining.
 */
export async function resealUnderNewestKey(
  db: HttpDb,
  config: Config,
  limit = RESEAL_BATCH,
): Promise<ResealReport> {
  const [newest, ...older] = config.masterKeys
  const configured = config.masterKeys.map((k) => k.id)
  const resealed = perTable(() => 0)
  if (older.length > 0) {
    const olderIds = older.map((k) => k.id)
    const [identities, providers, totps, keys] = await db.batch(selectStaleStatements(db, olderIds, limit))
    const reseal = async (stored: string | null, context: string): Promise<string | null> =>
      stored === null || stored.startsWith(`${newest.id}:`)
        ? stored
        : sealText(config, await openText(config, stored, context), context)
    const resealColumns = async (masterKeyId: string, sealed: string, context: string) => {
      const plain = await unseal(config.masterKeys, { masterKeyId, ciphertext: sealed }, context)
      const again = await seal(config.masterKeys, plain, context)
      return { masterKeyId: again.masterKeyId, sealed: again.ciphertext }
    }
    // Re-sealed values first (plain data: a query builder is a thenable, so it must not travel
    // through a promise), then the write statements, all in one batch.
    const plans: { table: SealedTable; build: Promise<() => Statement> }[] = [
      ...identities.map((row) => ({
        table: 'external_identities' as const,
        build: Promise.all([
          reseal(row.access, tokenContext(row.id, 'access')),
          reseal(row.refresh, tokenContext(row.id, 'refresh')),
        ]).then(
          ([access, refresh]) =>
            () =>
              resealStatements.identity(db, row.id, row, { access, refresh }),
        ),
      })),
      ...providers.map((row) => ({
        table: 'identity_providers' as const,
        build: reseal(row.secret, clientSecretContext(row.id)).then(
          (after) => () => resealStatements.provider(db, row.id, row.secret, after ?? row.secret),
        ),
      })),
      ...totps.map((row) => ({
        table: 'user_totp' as const,
        build: resealColumns(row.masterKeyId, row.sealed, totpSealContext(row.userId)).then(
          (after) => () => resealStatements.totp(db, row.userId, row.sealed, after),
        ),
      })),
      ...keys.map((row) => ({
        table: 'signing_keys' as const,
        build: resealColumns(row.masterKeyId, row.sealed, signingKeyContext(row.kid)).then(
          (after) => () => resealStatements.signingKey(db, row.kid, row.sealed, after),
        ),
      })),
    ]
    const settled = await Promise.allSettled(plans.map((p) => p.build))
    const ready: { table: SealedTable; statement: Statement }[] = []
    settled.forEach((outcome, index) => {
      const table = plans[index]?.table
      if (table === undefined) {
        return
      }
      if (outcome.status === 'fulfilled') {
        ready.push({ table, statement: outcome.value() })
      } else {
        log('error', 'master_key_reseal_unopenable', { table, error: errorForLog(outcome.reason) })
      }
    })
    if (ready.length > 0) {
      const results = (await db.batch(
        ready.map((r) => r.statement) as [Statement, ...Statement[]],
      )) as unknown as unknown[][]
      results.forEach((rows, index) => {
        const table = ready[index]?.table
        if (table !== undefined) {
          resealed[table] += rows.length
        }
      })
    }
  }
  const counts = await countNotUnderNewest(db, newest.id, configured)
  const remaining = perTable((t) => counts[t].stale)
  const report: ResealReport = {
    resealed,
    remaining,
    unreadable: perTable((t) => counts[t].unreadable),
    done: SEALED_TABLES.every((t) => remaining[t] === 0),
  }
  if (SEALED_TABLES.some((t) => resealed[t] > 0 || remaining[t] > 0 || report.unreadable[t] > 0)) {
    log('info', 'master_key_reseal', { newest: newest.id, ...report })
  }
  return report
}
