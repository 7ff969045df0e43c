import { createExecutionContext, env, SELF, waitOnExecutionContext } from 'cloudflare:test'
import { afterAll, beforeAll, expect } from 'vitest'
import type { Bindings } from '../../functions/env'
import worker from '../../functions/index'
import { resetKeyCache } from '../../functions/tokens/keys'
import { type IsolationScope, isolatedDatabaseUrl } from './isolation'

export const BASE = 'http://portcullis.test'

/**
 * What Cloudflare's edge attaches as `request.cf`. Requests built with it count as having come
 * through Cloudflare, so their `CF-Connecting-IP` is trusted (functions/middleware/client-ip.ts).
 */
export const EDGE_CF: RequestInitCfProperties = { cacheTtl: 0 }

/** Bindings every `call` of the current test file overrides (see useIsolatedDatabase). */
let fileBindings: Partial<Record<keyof Bindings, string | undefined>> | undefined

/** A request to the Worker under test, the way a client on the network would send it. */
export function call(path: string, init: RequestInit = {}): Promise<Response> {
  if (fileBindings !== undefined) {
    return callWith(fileBindings, path, init)
  }
  const viaEdge: RequestInit<RequestInitCfProperties> = { cf: EDGE_CF, ...init }
  return SELF.fetch(`${BASE}${path}`, viaEdge)
}

/**
 * The suite's one "app with other configuration": the Worker under test (the same entry point
 * as SELF) answering with some bindings changed, as a deployment that set them would. Waits
 * for its waitUntil work, so what it deferred has landed when this resolves.
 */
export async function callWith(
  vars: Partial<Record<keyof Bindings, string | undefined>>,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const ctx = createExecutionContext()
  const viaEdge: RequestInit<RequestInitCfProperties> = { cf: EDGE_CF, ...init }
  const res = await worker.fetch(new Request(`${BASE}${path}`, viaEdge), { ...env, ...vars } as Bindings, ctx)
  await waitOnExecutionContext(ctx)
  return res
}

/** The bindings requests of this file run with (env plus any file-wide override). */
export function fileEnv(): Bindings {
  return { ...env, ...fileBindings } as Bindings
}

/**
 * Runs this file's requests and testDb() against a database of its own, for tests that
 * mutate what every file shares (signing keys, a purge or outbox run on the real clock).
 * Call at the top of the file (or of a describe block).
 */
export function useIsolatedDatabase(scope: IsolationScope): void {
  // Files may share an isolate (vitest --no-isolate): the per-isolate signing-key cache must
  // not carry keys from one database into another.
  overrideBindings(() => ({ DATABASE_URL: isolatedDatabaseUrl(scope) }), resetKeyCache)
}

/** Runs this file's `call`s (and the helpers built on it) with these bindings changed. */
export function useBindings(vars: Partial<Record<keyof Bindings, string | undefined>>): void {
  overrideBindings(() => vars)
}

/**
 * Layers bindings over the enclosing ones for the current file or describe block, and puts
 * back exactly what was there when it ends, so a describe block's override stacks on a
 * file-wide one and a later block still sees the file's.
 */
function overrideBindings(
  vars: () => Partial<Record<keyof Bindings, string | undefined>>,
  onChange: () => void = () => {},
): void {
  let outer: typeof fileBindings
  beforeAll(() => {
    outer = fileBindings
    fileBindings = { ...outer, ...vars() }
    onChange()
  })
  afterAll(() => {
    fileBindings = outer
    onChange()
  })
}

export function postJson(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return call(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

export function adminHeaders(): Record<string, string> {
  return { authorization: `Bearer ${env.ADMIN_TOKEN}` }
}

/** The body for a failure message: status plus text, so a red test says what came back. */
export async function describeResponse(res: Response): Promise<string> {
  return `${res.status} ${await res.clone().text()}`
}

/** True when the suite runs against a real Postgres server (races and locks can be tested). */
export const realPostgres = env.TEST_REAL_POSTGRES === 'true'

/**
 * The one route that runs an interactive transaction (a WebSocket session through the gateway)
 * answers 503 database_unavailable with Retry-After, never 500, under these bindings.
 */
export async function expectTransactionRouteUnavailable(
  vars: Partial<Record<keyof Bindings, string | undefined>>,
): Promise<void> {
  const res = await callWith(vars, '/auth/password-reset/confirm', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: 'a'.repeat(43), password: 'a sturdy passphrase 42' }),
  })
  expect(res.status, await describeResponse(res)).toBe(503)
  expect(res.headers.get('retry-after')).toBe('5')
  expect(await res.json()).toMatchObject({ code: 'database_unavailable' })
}
