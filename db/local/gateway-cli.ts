import { startGateway } from './gateway'

/**
 * The local gateway as a process of its own (`tsx db/local/gateway-cli.ts [--port N]
 * [--db-rtt MS] [--max-connections N]`), so a test or bench can freeze it (SIGSTOP), kill it
 * and restart it on the same port. Prints one JSON line, `{"url": …, "port": …}`, once it
 * listens; stops on SIGTERM or SIGINT.
 */
function readFlag(args: string[], name: string): number | undefined {
  const index = args.indexOf(name)
  if (index === -1) {
    return undefined
  }
  const value = Number(args[index + 1])
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} takes a non-negative integer`)
  }
  return value
}

const args = process.argv.slice(2)
const gateway = await startGateway({
  port: readFlag(args, '--port') ?? 0,
  rttMs: readFlag(args, '--db-rtt') ?? 0,
  ...(readFlag(args, '--max-connections') === undefined
    ? {}
    : { maxConnectionsPerDatabase: readFlag(args, '--max-connections') }),
})
process.stdout.write(`${JSON.stringify({ url: gateway.url, port: gateway.port })}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void gateway.close().finally(() => process.exit(0))
  })
}
