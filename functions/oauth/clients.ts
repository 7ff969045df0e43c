import type { Executor } from '../../db/client'
import { insertClient } from '../../db/queries/oauth-clients'
import type { OAuthClientRow } from '../../db/queries/oauth-tokens'
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
 * Returns the RFC 7591 response, the one place the secrets are shown. One round trip.
 */
export async function createClient(
  x: Executor,
  config: Config,
  metadata: ClientMetadata,
  options: { registrationAccessToken: boolean; now: Date },
): Promise<CreatedClient> {
  const clientSecret = metadata.tokenEndpointAuthMethod === 'none' ? undefined : randomToken(32)
  const registrationAccessToken = options.registrationAccessToken ? randomToken(32) : undefined
  const client = await insertClient(x, {
    clientId: randomToken(16),
    clientSecretHash: clientSecret === undefined ? null : await sha256Hex(clientSecret),
    registrationAccessTokenHash:
      registrationAccessToken === undefined ? null : await sha256Hex(registrationAccessToken),
    ...metadataColumns(metadata),
    firstParty: metadata.firstParty,
    createdAt: options.now,
    updatedAt: options.now,
  })
  const issued = {
    ...(clientSecret === undefined ? {} : { clientSecret }),
    ...(registrationAccessToken === undefined ? {} : { registrationAccessToken }),
  }
  return { client, body: clientInformation(client, config, issued) }
}
