import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

// Below this the kernel never picks a port on its own (connect's source ports, listen(0)).
const EPHEMERAL_START = ephemeralRangeStart()
const LOWEST = 20_000

function ephemeralRangeStart(): number {
  try {
    const start = Number(
      readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
    )
    return Number.isInteger(start) && start > LOWEST + 1000 ? start : 32_768
  } catch {
    return 32_768
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer()
    server.once('error', () => done(false))
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)))
  })
}

/**
 * A free port on 127.0.0.1 for a server the harness starts by number (wrangler dev, its
 * inspector, the local gateway, npm start). Chosen below the kernel's ephemeral range: a port
 * handed out by listen(0) and released can be taken as the source port of any outgoing
 * connection before the server binds it, and beside the suite's thousands of connections it
 * was (wrangler dev then never answered on it, and the fault suite timed out). A port below the
 * range is only ever taken by another bind, which the check here sees.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * (EPHEMERAL_START - LOWEST))
    if (await canListen(port)) {
      return port
    }
  }
  throw new Error(`no free port between ${LOWEST} and ${EPHEMERAL_START}`)
}
