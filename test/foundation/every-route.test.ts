import { describe, expect, it } from 'vitest'
import { adminHeaders, call, describeResponse } from '../helpers/worker'

interface Operation {
  requestBody?: { content: Record<string, unknown> }
  responses: Record<string, unknown>
  parameters?: { name: string; in: string }[]
}
interface OpenApiDocument {
  openapi: string
  info: { title: string; version: string }
  paths: Record<string, Record<string, Operation>>
  components: Record<string, Record<string, unknown>>
}

async function openapi(): Promise<OpenApiDocument> {
  const res = await call('/openapi.json')
  expect(res.status).toBe(200)
  return (await res.json()) as OpenApiDocument
}

function concretePath(template: string): string {
  return template.replace(/\{[^}]+\}/g, crypto.randomUUID())
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])

describe('OpenAPI document', () => {
  it('is structurally valid OpenAPI 3.1 and every $ref resolves', async () => {
    const doc = await openapi()
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/)
    expect(doc.info.title).toBeTruthy()
    expect(doc.info.version).toBeTruthy()
    const text = JSON.stringify(doc)
    for (const [, ref] of text.matchAll(/"\$ref":"([^"]+)"/g)) {
      const target = (ref ?? '')
        .replace(/^#\//, '')
        .split('/')
        .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], doc)
      expect(target, ref).toBeDefined()
    }
    for (const [path, operations] of Object.entries(doc.paths)) {
      expect(path.startsWith('/'), path).toBe(true)
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
      for (const [method, operation] of Object.entries(operations)) {
        expect(METHODS.has(method), `${method} ${path}`).toBe(true)
        expect(Object.keys(operation.responses).length, `${method} ${path}`).toBeGreaterThan(0)
        const declared = (operation.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name)
        expect(declared.sort(), `${method} ${path}`).toEqual([...templated].sort())
      }
    }
  })
})

describe('every POST route', () => {
  it('answers a malformed JSON body with 4xx where a body is read, and never 5xx', async () => {
    const doc = await openapi()
    const posts = Object.entries(doc.paths).filter(([, ops]) => ops.post !== undefined)
    expect(posts.length).toBeGreaterThan(0)
    for (const [template, ops] of posts) {
      const res = await call(concretePath(template), {
        method: 'POST',
        headers: { ...adminHeaders(), 'content-type': 'application/json' },
        body: '{"unterminated": ',
      })
      if (ops.post?.requestBody !== undefined) {
        expect(res.status, `POST ${template}: ${await describeResponse(res)}`).toBeGreaterThanOrEqual(400)
      }
      expect(res.status, `POST ${template}: ${await describeResponse(res)}`).toBeLessThan(500)
      expect(res.headers.get('content-type'), template).toBeTruthy()
    }
  })

  it('answers a JSON body of the wrong shape with 4xx, never 5xx', async () => {
    const doc = await openapi()
    const withBodies = Object.entries(doc.paths).filter(([, ops]) => ops.post?.requestBody !== undefined)
    for (const [template] of withBodies) {
      for (const body of ['[]', '"text"', 'null', '{"email":{"$ne":null},"name":["x"],"key":42}']) {
        const res = await call(concretePath(template), {
          method: 'POST',
          headers: { ...adminHeaders(), 'content-type': 'application/json' },
          body,
        })
        expect(res.status, `POST ${template} ${body}: ${await describeResponse(res)}`).toBeLessThan(500)
      }
    }
  })
})
