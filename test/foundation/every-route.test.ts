import { describe, expect, it } from 'vitest'
import { adminHeaders, call, describeResponse, useIsolatedDatabase } from '../helpers/worker'

// With the admin token these requests reach admin routes (signing-key rotation, purge) that
// change what every file shares: run them against a database of this file's own.
useIsolatedDatabase('routes')

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

/** The status codes the document declares for an operation (an error status counts under `default`). */
function documented(operation: Operation): string[] {
  const codes = Object.keys(operation.responses)
  return codes.includes('default') ? [...codes, ...ERROR_STATUSES] : codes
}
function requiredFields(operation: Operation): string[] {
  const content = operation.requestBody?.content as
    | Record<string, { schema?: { required?: string[] } }>
    | undefined
  return Object.values(content ?? {}).flatMap((media) => media.schema?.required ?? [])
}

/** Routes that refuse on something other than the body before reading it. */
const CHECKED_BEFORE_BODY: Record<string, number> = { '/device': 403 }
const ERROR_STATUSES = ['400', '401', '403', '404', '405', '409', '413', '415', '422', '429']

describe('every POST route', () => {
  it('answers a malformed JSON body with a documented 4xx where a body is read, and a documented status elsewhere', async () => {
    const doc = await openapi()
    const posts = Object.entries(doc.paths).filter(([, ops]) => ops.post !== undefined)
    expect(posts.length).toBeGreaterThan(0)
    for (const [template, ops] of posts) {
      const operation = ops.post as Operation
      const res = await call(concretePath(template), {
        method: 'POST',
        headers: { ...adminHeaders(), 'content-type': 'application/json' },
        body: '{"unterminated": ',
      })
      const what = `POST ${template}: ${await describeResponse(res)}`
      if (operation.requestBody !== undefined) {
        // The admin token passes every admin guard, so the body is what fails; a browser form
        // route checks its CSRF token first.
        expect(res.status, what).toBe(CHECKED_BEFORE_BODY[template] ?? 400)
      }
      expect(documented(operation), what).toContain(String(res.status))
      expect(res.headers.get('content-type'), template).toBeTruthy()
    }
  })

  it('answers a JSON body of the wrong shape with a documented 4xx', async () => {
    const doc = await openapi()
    const withBodies = Object.entries(doc.paths).filter(([, ops]) => ops.post?.requestBody !== undefined)
    for (const [template, ops] of withBodies) {
      const operation = ops.post as Operation
      for (const body of ['[]', '"text"', 'null', '{"email":{"$ne":null},"name":["x"],"key":42}']) {
        const res = await call(concretePath(template), {
          method: 'POST',
          headers: { ...adminHeaders(), 'content-type': 'application/json' },
          body,
        })
        const what = `POST ${template} ${body}: ${await describeResponse(res)}`
        // An object of unknown fields is a valid request where every field is optional.
        const allOptional = body.startsWith('{') && requiredFields(operation).length === 0
        if (!allOptional) {
          // A templated path names a random id: "no such resource" may come first.
          const refusals = template.includes('{') ? [400, 404, 415, 422] : [400, 415, 422]
          expect(refusals, what).toContain(CHECKED_BEFORE_BODY[template] === undefined ? res.status : 400)
          if (CHECKED_BEFORE_BODY[template] !== undefined) {
            expect(res.status, what).toBe(CHECKED_BEFORE_BODY[template])
          }
        }
        expect(documented(operation), what).toContain(String(res.status))
      }
    }
  })
})
