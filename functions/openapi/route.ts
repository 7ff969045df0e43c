import { Hono } from 'hono'
import type { AppEnv } from '../env'
import { buildOpenApiDocument } from './registry'

let cached: { issuer: string; body: string } | undefined

/** `GET /openapi.json`: built once per isolate from the registered routes. */
export const openapiJson = new Hono<AppEnv>().get('/', (c) => {
  const issuer = c.var.config.issuer
  if (cached?.issuer !== issuer) {
    cached = { issuer, body: JSON.stringify(buildOpenApiDocument(issuer)) }
  }
  return c.body(cached.body, 200, {
    'content-type': 'application/json',
    'cache-control': 'public, max-age=300',
  })
})
