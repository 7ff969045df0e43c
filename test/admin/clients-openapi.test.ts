import { describe, expect, it } from 'vitest'
import { call, describeResponse } from '../helpers/worker'

interface JsonSchema {
  properties?: Record<string, JsonSchema>
  items?: JsonSchema
  enum?: string[]
  description?: string
}

describe('OpenAPI: POST /admin/clients', () => {
  it('lists grant_types (with client_credentials) and says how a resource server uses it', async () => {
    const res = await call('/openapi.json')
    expect(res.status, await describeResponse(res)).toBe(200)
    const doc = (await res.json()) as {
      paths: Record<string, { post?: { requestBody?: { content: Record<string, { schema: JsonSchema }> } } }>
    }
    const schema = doc.paths['/admin/clients']?.post?.requestBody?.content['application/json']?.schema
    const grantTypes = schema?.properties?.grant_types
    expect(grantTypes?.items?.enum).toEqual(
      expect.arrayContaining(['client_credentials', 'authorization_code']),
    )
    expect(grantTypes?.description).toContain('apikeys:verify')
    expect(schema?.properties?.token_endpoint_auth_method?.enum).toContain('client_secret_basic')
    expect(schema?.properties?.scope).toBeDefined()
  })
})
