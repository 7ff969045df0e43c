import { getTableColumns, sql } from 'drizzle-orm'
import type { Executor } from '../client'
import { oauthClients } from '../schema'
import type { NewOAuthClient } from './oauth-clients'
import type { OAuthClientRow } from './oauth-tokens'

/** Where a metadata-document client's row records when its document was read and goes stale. */
export const METADATA_DOCUMENT_KEY = 'metadata_document'

/**
 * Stores (or refreshes) the client a Client ID Metadata Document describes, keyed by its URL
 * (the storedid). Only a row that came from a document is overwritten: a registered client
 * never is, and an administrator's `disabled_at` survives a refresh. One round trip; undefined
 * when a registered client holds that storedid. `inserted`: this call created the row.
 */
export async function upsertMetadataDocumentClient(
  x: Executor,
  client: NewOAuthClient,
): Promise<{ row: OAuthClientRow; inserted: boolean } | undefined> {
  const { clientId: _clientId, createdAt: _createdAt, ...fields } = client
  const [row] = await x
    .insert(oauthClients)
    .values(client)
    .onConflictDoUpdate({
      target: oauthClients.clientId,
      set: { ...fields, updatedAt: sql`now()` },
      setWhere: sql`(${oauthClients.metadata} -> ${METADATA_DOCUMENT_KEY}::text) is not null`,
    })
    .returning({ ...getTableColumns(oauthClients), inserted: sql<boolean>`xmax = 0` })
  if (row === undefined) {
    return undefined
  }
  const { inserted, ...stored } = row
  return { row: stored, inserted: inserted === true }
}
