import { mkdir } from 'node:fs/promises'
import { type AddressInfo, createServer, type Socket } from 'node:net'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketHandler, type PGLiteSocketHandlerOptions } from '@electric-sql/pglite-socket'

export interface EmbeddedPostgresOptions {
  /** Where PGlite keeps its files; undefined keeps the database in memory. */
  dataDir?: string
  /** 0 (the default) lets the OS pick a free port. */
  port?: number
  host?: string
  /** Client sessions multiplexed onto the one PGlite backend. */
  maxConnections?: number
  /**
   * A session that holds the backend (open transaction) while others wait, and sends
   * nothing for this long, is disconnected and rolled back, like Postgres'
   * idle_in_transaction_session_timeout. 0 disables it.
   */
  idleInTransactionTimeoutMs?: number
}

export interface EmbeddedPostgres {
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  connectionString: string
  port: number
  close(): Promise<void>
}

const DEFAULT_MAX_CONNECTIONS = 100
const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 15_000
const STALL_CHECK_INTERVAL_MS = 1_000

const MESSAGE_SYNC = 0x53
const MESSAGE_QUERY = 0x51
const MESSAGE_FUNCTION_CALL = 0x46
const MESSAGE_TERMINATE = 0x58

type SessionQueue = PGLiteSocketHandlerOptions['queryQueue']

interface QueuedWork {
  handlerId: number
  /** undefined: roll back whatever the (departing) session left open */
  message: Uint8Array | undefined
  onData: (data: Uint8Array) => void
  resolve: (bytes: number) => void
  reject: (error: Error) => void
}

/**
 * Starts PGlite and serves it over the Postgres wire protocol on a loopback TCP port.
 * PGlite is a single backend, so client sessions are multiplexed onto it (see
 * SessionMultiplexer): concurrent sessions work, but run one at a time.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const host = options.host ?? '127.0.0.1'
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  if (options.dataDir !== undefined) {
    await mkdir(options.dataDir, { recursive: true })
  }
  const db = options.dataDir === undefined ? await PGlite.create() : await PGlite.create(options.dataDir)
  await db.waitReady

  const handlers = new Map<number, PGLiteSocketHandler>()
  const multiplexer = new SessionMultiplexer(
    db,
    options.idleInTransactionTimeoutMs ?? DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    (handlerId) => {
      void handlers.get(handlerId)?.detach(true)
    },
  )
  const queryQueue = multiplexer as unknown as SessionQueue

  const server = createServer((socket: Socket) => {
    if (handlers.size >= maxConnections) {
      socket.end(tooManyClientsError())
      return
    }
    const handler = new PGLiteSocketHandler({ queryQueue, closeOnDetach: true })
    handlers.set(handler.handlerId, handler)
    const forget = (): void => {
      handlers.delete(handler.handlerId)
    }
    handler.addEventListener('close', forget)
    handler.addEventListener('error', forget)
    handler.attach(socket).catch(() => {
      forget()
      socket.destroy()
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const urlHost = host.includes(':') ? `[${host}]` : host

  let closing: Promise<void> | undefined
  return {
    connectionString: `postgres://postgres@${urlHost}:${port}/postgres`,
    port,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()))
        await Promise.all([...handlers.values()].map((handler) => handler.detach(true)))
        handlers.clear()
        await serverClosed
        multiplexer.stop()
        await db.close()
      })()
      return closing
    },
  }
}

/**
 * Replaces pglite-socket's query queue, which interleaves sessions message by message:
 * that lets one session's Parse replace another's unnamed statement between its Parse
 * and Bind, and its result then goes to the wrong client. Here a session keeps the
 * backend from its first message until a Sync or simple Query completes with no
 * transaction block open, so extended-protocol sequences and transactions are never
 * split. Session-level state (SET, named prepared statements) is still shared.
 */
class SessionMultiplexer {
  readonly #db: PGlite
  readonly #idleTimeoutMs: number
  readonly #onStall: (handlerId: number) => void
  readonly #stallTimer: NodeJS.Timeout | undefined
  #queue: QueuedWork[] = []
  #draining = false
  #owner: number | null = null
  #ownerMidSequence = false
  #lastActivity = Date.now()

  constructor(db: PGlite, idleTimeoutMs: number, onStall: (handlerId: number) => void) {
    this.#db = db
    this.#idleTimeoutMs = idleTimeoutMs
    this.#onStall = onStall
    if (idleTimeoutMs > 0) {
      this.#stallTimer = setInterval(() => this.#checkStall(), STALL_CHECK_INTERVAL_MS)
      this.#stallTimer.unref()
    }
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return this.#push(handlerId, message, onData)
  }

  getQueueLength(): number {
    return this.#queue.length
  }

  clearQueueForHandler(handlerId: number): void {
    const kept: QueuedWork[] = []
    for (const work of this.#queue) {
      if (work.handlerId === handlerId) {
        work.reject(new Error('Handler disconnected'))
      } else {
        kept.push(work)
      }
    }
    this.#queue = kept
  }

  /** Called when a session goes away: end whatever it left open so others can run. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    await this.#push(handlerId, undefined, () => {})
  }

  stop(): void {
    clearInterval(this.#stallTimer)
  }

  #push(
    handlerId: number,
    message: Uint8Array | undefined,
    onData: (data: Uint8Array) => void,
  ): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ handlerId, message, onData, resolve, reject })
      void this.#drain()
    })
  }

  async #drain(): Promise<void> {
    if (this.#draining) {
      return
    }
    this.#draining = true
    try {
      for (;;) {
        const owner = this.#owner
        const index = owner === null ? 0 : this.#queue.findIndex((work) => work.handlerId === owner)
        const work = index < 0 ? undefined : this.#queue.splice(index, 1)[0]
        if (work === undefined) {
          break
        }
        try {
          work.resolve(await this.#run(work))
        } catch (error) {
          work.reject(error instanceof Error ? error : new Error(String(error)))
        }
        this.#lastActivity = Date.now()
      }
    } finally {
      this.#draining = false
    }
  }

  async #run(work: QueuedWork): Promise<number> {
    const { message } = work
    if (message === undefined) {
      if (this.#owner === work.handlerId) {
        await this.#rollbackOwner()
      }
      return 0
    }
    let bytes = 0
    this.#owner = work.handlerId
    await this.#db.runExclusive(() =>
      this.#db.execProtocolRawStream(message, {
        onRawData: (data) => {
          bytes += data.length
          work.onData(data)
        },
      }),
    )
    this.#ownerMidSequence = !endsExchange(message)
    if (!this.#ownerMidSequence && !this.#db.isInTransaction()) {
      this.#owner = null
    }
    return bytes
  }

  async #rollbackOwner(): Promise<void> {
    // execProtocolRaw would hand its output to the last stream callback (the departing
    // client's socket) in PGlite 0.5, so stream it into a callback that drops it.
    const discard = { onRawData: () => {} }
    await this.#db.runExclusive(async () => {
      // A Query is discarded while the backend skips to Sync after an error, hence the
      // Sync; ROLLBACK also aborts an unfinished implicit extended-protocol transaction.
      if (this.#ownerMidSequence) {
        await this.#db.execProtocolRawStream(
          new Uint8Array([...simpleQuery('ROLLBACK'), ...SYNC_MESSAGE]),
          discard,
        )
      }
      if (this.#db.isInTransaction()) {
        await this.#db.execProtocolRawStream(simpleQuery('ROLLBACK'), discard)
      }
    })
    this.#owner = null
    this.#ownerMidSequence = false
  }

  #checkStall(): void {
    const owner = this.#owner
    if (owner === null || this.#draining || Date.now() - this.#lastActivity < this.#idleTimeoutMs) {
      return
    }
    if (this.#queue.some((work) => work.handlerId !== owner)) {
      this.#lastActivity = Date.now()
      this.#onStall(owner)
    }
  }
}

const SYNC_MESSAGE = new Uint8Array([MESSAGE_SYNC, 0, 0, 0, 4])

function endsExchange(message: Uint8Array): boolean {
  const type = message[0]
  // A startup packet begins with its int32 length, so its first byte is 0.
  return (
    type === 0 ||
    type === MESSAGE_SYNC ||
    type === MESSAGE_QUERY ||
    type === MESSAGE_FUNCTION_CALL ||
    type === MESSAGE_TERMINATE
  )
}

function simpleQuery(sql: string): Uint8Array {
  const body = Buffer.from(`${sql}\0`, 'utf8')
  const message = Buffer.alloc(5 + body.length)
  message.writeUInt8(MESSAGE_QUERY, 0)
  message.writeInt32BE(4 + body.length, 1)
  body.copy(message, 5)
  return new Uint8Array(message)
}

function tooManyClientsError(): Buffer {
  const fields = Buffer.from('SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\0', 'utf8')
  const message = Buffer.alloc(5 + fields.length)
  message.write('E', 0, 'latin1')
  message.writeInt32BE(4 + fields.length, 1)
  fields.copy(message, 5)
  return message
}
