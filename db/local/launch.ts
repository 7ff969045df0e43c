import pg from 'pg'
import { startEmbeddedPostgres } from './embedded'
import { type Gateway, startGateway } from './gateway'

export interface LaunchLocalDatabaseOptions {
  /** A real Postgres on a loopback host; when absent the embedded one is started. */
  databaseUrl?: string
  /** Where the embedded database keeps its files (ignored with databaseUrl). */
  dataDir: string
  /** Port for the embedded database; 0 or absent picks a free one. */
  pgPort?: number
  /** Port for the gateway; 0 or absent picks a free one. */
  gatewayPort?: number
}

export interface LocalDatabase {
  /** What the Worker's DATABASE_URL should be; the driver reaches it through the gateway. */
  databaseUrl: string
  gateway: Gateway
  embedded: boolean
  close(): Promise<void>
}

// The embedded backend runs one session at a time, so a big pool only queues.
const EMBEDDED_GATEWAY_POOL_SIZE = 10
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', '[::1]', 'localhost'])

/**
 * Brings up the database for local runs, tests and the bench: the given loopback
 * Postgres, or the embedded one on dataDir, with the Neon-compatible gateway in front.
 */
export async function launchLocalDatabase(options: LaunchLocalDatabaseOptions): Promise<LocalDatabase> {
  if (options.databaseUrl !== undefined) {
    assertLoopback(options.databaseUrl)
    await assertReachable(options.databaseUrl)
    const gateway = await startGateway({ port: options.gatewayPort ?? 0 })
    return {
      databaseUrl: options.databaseUrl,
      gateway,
      embedded: false,
      close: () => gateway.close(),
    }
  }

  const database = await startEmbeddedPostgres({ dataDir: options.dataDir, port: options.pgPort ?? 0 })
  try {
    await assertReachable(database.connectionString)
    const gateway = await startGateway({
      port: options.gatewayPort ?? 0,
      maxConnectionsPerDatabase: EMBEDDED_GATEWAY_POOL_SIZE,
    })
    return {
      databaseUrl: database.connectionString,
      gateway,
      embedded: true,
      async close() {
        await gateway.close()
        await database.close()
      },
    }
  } catch (error) {
    await database.close()
    throw error
  }
}

function assertLoopback(databaseUrl: string): void {
  let host: string
  try {
    host = new URL(databaseUrl).hostname
  } catch {
    throw new Error('DATABASE_URL is not a valid postgres:// URL')
  }
  if (!LOOPBACK_HOSTS.has(host.toLowerCase())) {
    throw new Error('the local gateway only serves a Postgres on 127.0.0.1, ::1 or localhost')
  }
}

async function assertReachable(connectionString: string): Promise<void> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 })
  try {
    await client.connect()
    await client.query('select 1')
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(`cannot reach the local database: ${reason}`, { cause: error })
  } finally {
    await client.end().catch(() => {})
  }
}
