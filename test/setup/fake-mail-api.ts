import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of a local stand-in for Resend's API and a mail webhook receiver. */
    fakeMailUrl: string
  }
}

/** The API key the fake Resend accepts (test/email/providers.test.ts sends it); others get a 401. */
const FAKE_RESEND_API_KEY = 're_test_fake_0123456789'

interface Recorded {
  path: string
  headers: IncomingHttpHeaders
  body: string
}

/**
 * A loopback fake of Resend's `POST /emails` and of a webhook receiver (`POST /webhook`), for
 * the mail tests: no test reaches the internet. Recipients starting with `fail-` get a 500.
 * `GET /__requests?to=<address>` returns what was received for that recipient.
 */
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const received: Recorded[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake')
      const body = Buffer.concat(chunks).toString('utf8')
      const reply = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(payload))
      }
      if (req.method === 'GET' && url.pathname === '/__requests') {
        const to = url.searchParams.get('to') ?? ''
        reply(
          200,
          received.filter((r) => r.body.includes(JSON.stringify(to))),
        )
        return
      }
      if (req.method !== 'POST' || (url.pathname !== '/emails' && url.pathname !== '/webhook')) {
        reply(404, { name: 'not_found' })
        return
      }
      received.push({ path: url.pathname, headers: req.headers, body })
      if (url.pathname === '/emails' && req.headers.authorization !== `Bearer ${FAKE_RESEND_API_KEY}`) {
        reply(401, { statusCode: 401, name: 'validation_error', message: 'API key is invalid' })
        return
      }
      if (body.includes('"fail-')) {
        reply(500, { statusCode: 500, name: 'internal_server_error', message: 'scripted failure' })
        return
      }
      reply(200, { id: crypto.randomUUID() })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  project.provide('fakeMailUrl', `http://127.0.0.1:${port}`)
  return () => new Promise<void>((resolve) => server.close(() => resolve()))
}
