import { env, SELF } from 'cloudflare:test'

export const BASE = 'http://portcullis.test'

/**
 * What Cloudflare's edge attaches as `request.cf`. Requests built with it count as having come
 * through Cloudflare, so their `CF-Connecting-IP` is trusted (functions/middleware/client-ip.ts).
 */
export const EDGE_CF: RequestInitCfProperties = { cacheTtl: 0 }

/** A request to the Worker under test, the way a client on the network would send it. */
export function call(path: string, init: RequestInit = {}): Promise<Response> {
  const viaEdge: RequestInit<RequestInitCfProperties> = { cf: EDGE_CF, ...init }
  return SELF.fetch(`${BASE}${path}`, viaEdge)
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
