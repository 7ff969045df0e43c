import { describe, expect, it } from 'vitest'
import { call } from '../helpers/worker'

interface Operation {
  security?: Record<string, unknown>[]
  parameters?: { name: string; in: string }[]
  requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> }
}
interface Document {
  paths: Record<string, Record<string, Operation>>
  components: { securitySchemes: Record<string, { type: string; scheme?: string }> }
}

describe('OpenAPI documents DPoP and private_key_jwt (issue 15)', () => {
  it('a DPoP security scheme beside every bearer one, the DPoP header at token and PAR, dpop_jkt and assertions', async () => {
    const doc = (await (await call('/openapi.json')).json()) as Document
    expect(doc.components.securitySchemes.dpop).toMatchObject({ type: 'http', scheme: 'DPoP' })
    const userinfo = doc.paths['/oauth/userinfo']?.get
    expect(userinfo?.security).toEqual(expect.arrayContaining([{ dpop: [] }, { bearerToken: [] }]))
    for (const path of ['/oauth/token', '/oauth/par']) {
      const post = doc.paths[path]?.post
      expect(post?.parameters, path).toEqual(
        expect.arrayContaining([expect.objectContaining({ name: 'DPoP', in: 'header' })]),
      )
      const form = post?.requestBody?.content['application/x-www-form-urlencoded']?.schema.properties ?? {}
      expect(Object.keys(form), path).toEqual(
        expect.arrayContaining(['client_assertion', 'client_assertion_type']),
      )
    }
    const authorize = doc.paths['/oauth/authorize']?.get?.parameters?.map((p) => p.name)
    expect(authorize).toEqual(expect.arrayContaining(['dpop_jkt', 'request_uri']))
    expect(doc.paths['/admin/clients/{client_id}/usage']?.get).toBeDefined()
    expect(doc.paths['/tenants/{id}/clients/{client_id}/usage']?.get).toBeDefined()
  })
})
