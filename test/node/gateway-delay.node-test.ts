import assert from 'node:assert/strict'
import { Agent, request } from 'node:http'
import { createServer, type Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import { WebSocket } from 'ws'
import { startGateway } from '../../db/local/gateway'

/**
 * The gateway's simulated database round trip (`--db-rtt`, issue 16): one delay per round trip,
 * on refused statements as on answered ones, and one delay (not one each) for WebSocket chunks
 * sent back to back. Bounds are loose (the delay is 300 ms) and assert the model, not speed.
 * Also the gateway's idle keep-alive (issue 18 item 5).
 */
const RTT_MS = 300

describe('local gateway --db-rtt', async () => {
  const gateway = await startGateway({ rttMs: RTT_MS })
  after(() => gateway.close())

  it('delays a refused SQL-over-HTTP call like an answered one', async () => {
    const started = performance.now()
    const res = await fetch(`${gateway.url}/sql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'neon-connection-string': 'postgres://postgres@127.0.0.1:5432/unused',
      },
      body: 'not json',
    })
    const elapsed = performance.now() - started
    assert.equal(res.status, 400)
    assert.match(((await res.json()) as { message: string }).message, /not valid JSON/)
    assert.ok(elapsed >= RTT_MS - 1, `answered after ${elapsed} ms, before the ${RTT_MS} ms round trip`)
  })

  it('delays WebSocket chunks sent back to back once, in order, not once each', async () => {
    const arrivals: { at: number; data: string }[] = []
    const sockets = new Set<Socket>()
    const target = createServer((socket) => {
      sockets.add(socket)
      socket.on('data', (chunk: Buffer) => arrivals.push({ at: performance.now(), data: chunk.toString() }))
    })
    await new Promise<void>((done) => target.listen(0, '127.0.0.1', () => done()))
    const port = (target.address() as { port: number }).port
    const ws = new WebSocket(`${gateway.url.replace('http', 'ws')}/v2?address=127.0.0.1:${port}`)
    try {
      await new Promise<void>((done, fail) => {
        ws.once('open', () => done())
        ws.once('error', fail)
      })
      const sent = performance.now()
      for (const part of ['one;', 'two;', 'three;']) {
        ws.send(Buffer.from(part))
      }
      const deadline = Date.now() + 5_000
      while (arrivals.map((a) => a.data).join('') !== 'one;two;three;' && Date.now() < deadline) {
        await new Promise((done) => setTimeout(done, 10))
      }
      assert.equal(arrivals.map((a) => a.data).join(''), 'one;two;three;')
      const first = (arrivals[0]?.at ?? 0) - sent
      const last = (arrivals.at(-1)?.at ?? 0) - sent
      assert.ok(first >= RTT_MS - 1, `first chunk after ${first} ms, before the ${RTT_MS} ms delay`)
      // Chained delays would put the third chunk at 3 × RTT.
      assert.ok(last < 2 * RTT_MS, `last chunk after ${last} ms: the delays were added up`)
    } finally {
      ws.terminate()
      for (const socket of sockets) {
        socket.destroy()
      }
      await new Promise((done) => target.close(done))
    }
  })
})

/**
 * Issue 18 item 5: with Node's default 5 s keep-alive the gateway closed idle connections that
 * the Worker, busy hashing passwords, then reused, and login bursts got spurious 503s. The
 * gateway keeps an idle connection longer than its clients do (65 s): a connection idle for
 * longer than Node's default is still open and is reused.
 */
describe('local gateway keep-alive', async () => {
  const gateway = await startGateway()
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  after(async () => {
    agent.destroy()
    await gateway.close()
  })

  /** A refused SQL call (no database needed): its status and the socket that carried it. */
  function call(): Promise<{ status: number; socket: Socket }> {
    return new Promise((done, fail) => {
      const req = request(
        `${gateway.url}/sql`,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'neon-connection-string': 'postgres://postgres@127.0.0.1:5432/unused',
          },
        },
        (res) => {
          res.resume()
          res.on('end', () => done({ status: res.statusCode ?? 0, socket: req.socket as Socket }))
        },
      )
      req.on('error', fail)
      // Never wait on a reused connection that went dead: fail instead of hanging the suite.
      req.setTimeout(5_000, () => req.destroy(new Error('no answer within 5 s')))
      req.end('not json')
    })
  }

  it('keeps an idle connection open past Node’s 5 s default (7.5 s) and serves the next request on it', async () => {
    const first = await call()
    assert.equal(first.status, 400)
    let closedAt: number | undefined
    first.socket.once('close', () => {
      closedAt = Date.now()
    })
    const idleSince = Date.now()
    // Node closes an idle connection a little after keepAliveTimeout (5 s by default): wait past that.
    await new Promise((done) => setTimeout(done, 7_500))
    assert.equal(
      closedAt,
      undefined,
      `the gateway closed the idle connection after ${(closedAt ?? 0) - idleSince} ms`,
    )
    const second = await call()
    assert.equal(second.status, 400)
    assert.equal(second.socket, first.socket, 'the second request went out on a new connection')
  })
})
