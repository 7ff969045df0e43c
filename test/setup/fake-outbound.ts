import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of a loopback web server standing in for the public internet (outbound fetches). */
    fakeOutboundUrl: string
  }
}

interface Stored {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * A loopback stand-in for sites Portcullis fetches on a client's behalf (Client ID Metadata
 * Documents, jwks_uri). Scripted answers: `/json`, `/text`, `/redirect` (302), `/big` (chunked,
 * 64 KiB), `/big-declared` (Content-Length 1 MB), `/hang` (never answers), `/stall` (headers,
 * then no body). Documents: `PUT /doc/<name>` with `{ status?, headers?, body }` stores one,
 * `GET /doc/<name>` serves it, `GET /__hits/doc/<name>` counts the GETs it got.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const documents = new Map<string, Stored>()
  const hits = new Map<string, number>()
  const json = (res: ServerResponse, status: number, payload: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(payload))
  }
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://fake').pathname
      if (req.method === 'PUT' && path.startsWith('/doc/')) {
        const stored = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Stored>
        documents.set(path, {
          status: stored.status ?? 200,
          headers: { 'content-type': 'application/json', ...stored.headers },
          body: stored.body ?? '',
        })
        hits.set(path, 0)
        json(res, 200, { stored: path })
        return
      }
      if (req.method === 'GET' && path.startsWith('/__hits/')) {
        json(res, 200, { hits: hits.get(path.slice('/__hits'.length)) ?? 0 })
        return
      }
      if (req.method === 'GET' && path.startsWith('/doc/')) {
        hits.set(path, (hits.get(path) ?? 0) + 1)
        const doc = documents.get(path)
        if (doc === undefined) {
          json(res, 404, { error: 'not_found' })
          return
        }
        res.writeHead(doc.status, doc.headers)
        res.end(doc.body)
        return
      }
      switch (path) {
        case '/json':
          json(res, 200, { hello: 'world' })
          return
        case '/text':
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.end('{"hello":"world"}')
          return
        case '/redirect':
          res.writeHead(302, { location: '/json' })
          res.end()
          return
        case '/big': {
          res.writeHead(200, { 'content-type': 'application/json' })
          const filler = 'x'.repeat(1024)
          res.write('{"filler":"')
          for (let i = 0; i < 64; i++) {
            res.write(filler)
          }
          res.end('"}')
          return
        }
        case '/big-declared':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(1_000_000) })
          res.write('{')
          return // never finishes: the client must stop at the declared length
        case '/hang':
          return // never answers
        case '/stall':
          res.writeHead(200, { 'content-type': 'application/json' })
          res.write('{"a":')
          return // the body never ends
        default:
          json(res, 404, { error: 'not_found' })
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  project.provide('fakeOutboundUrl', `http://127.0.0.1:${port}`)
  return () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
}
