import type { SQL } from 'drizzle-orm'
import type { Db } from '../db/client'
import type { Principal } from './auth/principal'
import type { Config } from './config'
import type { DpopProof } from './tokens/dpop'

/** Bindings as wrangler provides them: `[vars]` plus secrets, all strings. */
export interface Bindings {
  DATABASE_URL?: string
  MASTER_KEY?: string
  ADMIN_TOKEN?: string
  /** Local gateway for the Neon driver (development and tests only). */
  DB_GATEWAY_URL?: string
  [variable: string]: string | undefined
}

/** Per-request state, each set by exactly one middleware. */
export interface Variables {
  requestId: string
  config: Config
  db: Db
  /** Set by `authenticate()` on routes that require a caller. */
  principal: Principal
  /**
   * Set by the API-key verifier check: the database half of the caller's access-token check,
   * folded into the verify statement so the hot path stays one round trip (undefined: admin token).
   */
  callerGuard: SQL | undefined
  /** SHA-256 of the caller's `psk_…` service key on verify (issue 10), checked inside the verify statement. */
  serviceKeyHash: string | undefined
  /** The DPoP proof of a DPoP-bound caller token on verify, whose `jti` the verify statement spends. */
  callerProof: DpopProof | undefined
}

export interface AppEnv {
  Bindings: Bindings
  Variables: Variables
}
