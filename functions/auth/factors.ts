import type { HttpDb } from '../../db/client'
import { selectActiveTotpStatement } from '../../db/queries/mfa'
import { listPasskeysStatement } from '../../db/queries/passkeys'

/** Which second factors a user has set up (TOTP confirmed, any passkey). One round trip. */
export async function enrolledFactors(
  db: HttpDb,
  userId: string,
): Promise<{ totp: boolean; passkey: boolean }> {
  const [totp, passkeys] = await db.batch([
    selectActiveTotpStatement(db, userId),
    listPasskeysStatement(db, userId),
  ])
  return { totp: totp.length > 0, passkey: passkeys.length > 0 }
}
