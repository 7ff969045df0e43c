import type { Executor } from '../../db/client'
import { type IdentityProviderRow, selectUsableProviderStatement } from '../../db/queries/identity-providers'
import type { Config } from '../config'
import type { FederatedProvider } from './config'
import { openText } from './sealed-text'

/** Associated data of a provider's sealed client secret: it opens only in its own row. */
export function clientSecretContext(rowId: string): string {
  return `identity_provider:${rowId}:client_secret`
}

/** The deployment's provider with this id (GITHUB_*, OIDC_PROVIDERS): they win over database rows. */
export function configProvider(config: Config, id: string): FederatedProvider | undefined {
  return config.federation.providers.find((p) => p.id === id)
}

/** A row of identity_providers as a provider the flow can use (its client secret opened). */
export async function storedProvider(config: Config, row: IdentityProviderRow): Promise<FederatedProvider> {
  const clientSecret = await openText(config, row.clientSecretSealed, clientSecretContext(row.id))
  const origin = { kind: 'database', rowId: row.id, tenantId: row.tenantId } as const
  if (row.kind === 'github') {
    return {
      kind: 'github',
      id: row.slug,
      origin,
      name: row.name,
      clientId: row.clientId,
      clientSecret,
      webUrl: row.webUrl ?? '',
      apiUrl: row.apiUrl ?? '',
    }
  }
  return {
    kind: 'oidc',
    id: row.slug,
    origin,
    name: row.name,
    issuer: row.issuer ?? '',
    clientId: row.clientId,
    clientSecret,
    scope: row.scope ?? 'openid email profile',
  }
}

/**
 * The enabled provider with this id: the deployment's first, else a usable database row (one
 * round trip). Undefined when neither exists or the row is disabled or its tenant deactivated.
 */
export async function resolveProvider(
  db: Executor,
  config: Config,
  id: string,
): Promise<FederatedProvider | undefined> {
  const fromConfig = configProvider(config, id)
  if (fromConfig !== undefined) {
    return fromConfig
  }
  const [row] = await selectUsableProviderStatement(db, id)
  return row === undefined ? undefined : storedProvider(config, row.provider)
}

/**
 * Whether what this provider asserts is trusted beyond its own identities: the deployment's and
 * the platform's providers are; a tenant's provider is run by the tenant, so its verified emails
 * never link to an existing account by themselves and never match the allowlist.
 */
export function operatorTrusted(provider: FederatedProvider): boolean {
  return provider.origin.kind === 'config' || provider.origin.tenantId === null
}
