import type { HttpDb } from '../../db/client'
import { insertClientStatement } from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
import { DEFAULT_TENANT_ID, SECRETLESS_AUTH_METHODS } from '../../db/schema/constants'
import { type AuditEvent, auditStatement } from '../audit/record'
import type { Config } from '../config'
import { sha256Hex } from '../crypto/hash'
import { randomToken } from '../crypto/random'
import { type ClientMetadata, clientInformation, metadataColumns } from './client-metadata'

export interface CreatedClient {
  client: OAuthClientRow
  body: Record<string, unknown>
}

/**
 * Stores a client from validated metadata: a random client_id, a client secret for confidential
 * clients and (when asked) an RFC 7592 registration access token, both only as SHA-256 hashes.
 * Returns the RFC 7591 response, the one place the secrets are shown. The `client_registered`
 * audit event rides in the same batch: one round trip, and no client without its event.
 */
export async function createClient(
  db: HttpDb,
  config: Config,
  metadata: ClientMetadata,
  options: {
    registrationAccessToken: boolean
    now: Date
    ip: string | null
    audit: (client: { clientId: string; tenantId: string }) => AuditEvent
  },
): Promise<CreatedClient> {
  // Public clients and private_key_jwt clients (RFC 7523) have no secret.
  const clientSecret = (SECRETLESS_AUTH_METHODS as readonly string[]).includes(
    metadata.tokenEndpointAuthMethod,
  )
    ? undefined
    : randomToken(32)
  const registrationAccessToken = options.registrationAccessToken ? randomToken(32) : undefined
  const clientId = randomToken(16)
  const [rows] = await db.batch([
    insertClientStatement(db, {
      clientId,
      tenantId: DEFAULT_TENANT_ID,
      clientSecretHash: clientSecret === undefined ? null : await sha256Hex(clientSecret),
      registrationAccessTokenHash:
        registrationAccessToken === undefined ? null : await sha256Hex(registrationAccessToken),
      ...metadataColumns(metadata),
      firstParty: metadata.firstParty,
      createdAt: options.now,
      updatedAt: options.now,
    }),
    auditStatement(db, options.ip, options.audit({ clientId, tenantId: DEFAULT_TENANT_ID })),
  ])
  const client = rows[0]
  if (client === undefined) {
    throw new Error('insert into oauth_clients returned nothing')
  }
  const issued = {
    ...(clientSecret === undefined ? {} : { clientSecret }),
    ...(registrationAccessToken === undefined ? {} : { registrationAccessToken }),
  }
  return { client, body: clientInformation(client, config, issued) }
}
