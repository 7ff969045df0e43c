import argon2Module from './wasm/argon2.wasm'
import blake2bModule from './wasm/blake2b.wasm'

// The WebAssembly cores are hash-wasm's (MIT, github.com/Daninet/hash-wasm, v4.13.0), extracted
// as .wasm files: hash-wasm compiles its embedded bytes at run time, which workerd forbids, while
// a `.wasm` import arrives precompiled. This file drives those cores the way hash-wasm's
// lib/argon2.ts does, plus RFC 9106 associated data so the RFC's own test vector can be checked.

interface HashCoreExports {
  memory: WebAssembly.Memory
  Hash_GetBuffer(): number
  Hash_Init(bits: number): void
  Hash_Update(length: number): void
  Hash_Final(): void
  Hash_SetMemorySize(totalBytes: number): number
  Hash_Calculate(length: number, parameter: number): void
}

const BLOCK_BYTES = 1024
const ARGON2_VERSION = 0x13
const ARGON2ID = 2
// hash-wasm's cores move data through a 16 KiB window at the start of their buffer.
const CORE_WINDOW_BYTES = 16 * 1024

export interface Argon2Input {
  password: Uint8Array
  salt: Uint8Array
  /** K in RFC 9106 (a pepper); empty unless given. */
  secret?: Uint8Array
  /** X in RFC 9106; empty unless given. */
  associatedData?: Uint8Array
  memoryKib: number
  iterations: number
  parallelism: number
  hashLength: number
}

function instantiate(module: WebAssembly.Module): HashCoreExports {
  return new WebAssembly.Instance(module, {}).exports as unknown as HashCoreExports
}

// A WebAssembly memory never shrinks and is freed only when the garbage collector gets to its
// instance, which under a burst of sign-ins it did not: a fresh 19 MiB core per hash took the
// isolate past 1.6 GB at 60 concurrent logins (issue 18). Hashing is synchronous, so one core of
// each kind serves every hash in the isolate; a core is zeroed before it goes back, and one grown
// beyond RETAINED_CORE_MAX_BYTES (an imported hash with large m) is dropped rather than kept.
const RETAINED_CORE_MAX_BYTES = 48 * 1024 * 1024
const MAX_IDLE_CORES = 1

/** A core and the start of its data window (Hash_GetBuffer, fixed for the core's life). */
interface PooledCore {
  exports: HashCoreExports
  offset: number
}

interface CorePool {
  module: WebAssembly.Module
  idle: PooledCore[]
}

const argon2Cores: CorePool = { module: argon2Module, idle: [] }
const blake2bCores: CorePool = { module: blake2bModule, idle: [] }

/** An idle core, or a fresh one. */
function acquire(pool: CorePool): PooledCore {
  const reused = pool.idle.pop()
  if (reused !== undefined) {
    return reused
  }
  const exports = instantiate(pool.module)
  return { exports, offset: exports.Hash_GetBuffer() }
}

function release(pool: CorePool, core: PooledCore): void {
  // Everything from the window on (blocks, parameters, hashed input); the core's own globals,
  // below the window, stay as they are.
  new Uint8Array(core.exports.memory.buffer, core.offset).fill(0)
  if (pool.idle.length < MAX_IDLE_CORES && core.exports.memory.buffer.byteLength <= RETAINED_CORE_MAX_BYTES) {
    pool.idle.push(core)
  }
}

/** How many cores the isolate keeps between hashes, and their memory in bytes (for tests). */
export function retainedCoreStats(): { cores: number; bytes: number } {
  const idle = [...argon2Cores.idle, ...blake2bCores.idle]
  return {
    cores: idle.length,
    bytes: idle.reduce((sum, core) => sum + core.exports.memory.buffer.byteLength, 0),
  }
}

/** BLAKE2b on a pooled core; `outBytes` 1..64 (RFC 7693). */
class Blake2b {
  private readonly core: HashCoreExports
  private readonly offset: number
  constructor(pooled: PooledCore) {
    this.core = pooled.exports
    this.offset = pooled.offset
  }

  digest(outBytes: number, ...parts: Uint8Array[]): Uint8Array {
    this.core.Hash_Init(outBytes * 8)
    for (const part of parts) {
      for (let read = 0; read < part.length; read += CORE_WINDOW_BYTES) {
        const chunk = part.subarray(read, read + CORE_WINDOW_BYTES)
        new Uint8Array(this.core.memory.buffer, this.offset, chunk.length).set(chunk)
        this.core.Hash_Update(chunk.length)
      }
    }
    this.core.Hash_Final()
    return new Uint8Array(this.core.memory.buffer, this.offset, outBytes).slice()
  }

  /** H' of RFC 9106 §3.3: variable-length hash built from BLAKE2b. */
  variable(outBytes: number, input: Uint8Array): Uint8Array {
    const length = le32(outBytes)
    if (outBytes <= 64) {
      return this.digest(outBytes, length, input)
    }
    const rounds = Math.ceil(outBytes / 32) - 2
    const out = new Uint8Array(outBytes)
    let v = this.digest(64, length, input)
    out.set(v.subarray(0, 32), 0)
    for (let i = 1; i < rounds; i++) {
      v = this.digest(64, v)
      out.set(v.subarray(0, 32), i * 32)
    }
    const tail = outBytes - 32 * rounds
    out.set(this.digest(tail, v), rounds * 32)
    return out
  }
}

function le32(value: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setUint32(0, value, true)
  return bytes
}

/**
 * Raw argon2id (RFC 9106, version 0x13). Synchronous and CPU-bound: at m=19456 KiB, t=2, p=1
 * it uses about 19 MiB of a pooled core, zeroed before the call returns so no password-derived
 * memory outlives it.
 */
export function argon2idRaw(input: Argon2Input): Uint8Array {
  const { memoryKib, iterations, parallelism, hashLength } = input
  if (
    !Number.isInteger(parallelism) ||
    parallelism < 1 ||
    !Number.isInteger(iterations) ||
    iterations < 1 ||
    !Number.isInteger(memoryKib) ||
    memoryKib < 8 * parallelism ||
    !Number.isInteger(hashLength) ||
    hashLength < 4 ||
    input.salt.length < 8
  ) {
    throw new RangeError('argon2id: parameters out of range')
  }
  const blakeCore = acquire(blake2bCores)
  const core = acquire(argon2Cores)
  try {
    return computeArgon2id(input, new Blake2b(blakeCore), core)
  } finally {
    release(argon2Cores, core)
    release(blake2bCores, blakeCore)
  }
}

function computeArgon2id(input: Argon2Input, blake: Blake2b, pooled: PooledCore): Uint8Array {
  const { memoryKib, iterations, parallelism, hashLength } = input
  const secret = input.secret ?? new Uint8Array(0)
  const associatedData = input.associatedData ?? new Uint8Array(0)
  const core = pooled.exports
  const offset = pooled.offset
  // The last block holds the parameters the core reads.
  const totalBytes = memoryKib * BLOCK_BYTES + BLOCK_BYTES
  if (core.memory.buffer.byteLength - offset < totalBytes && core.Hash_SetMemorySize(totalBytes) === -1) {
    throw new RangeError('argon2id: not enough memory')
  }
  const memory = () => new Uint8Array(core.memory.buffer, offset, totalBytes)

  const parameters = new Uint8Array(24)
  const view = new DataView(parameters.buffer)
  view.setUint32(0, parallelism, true)
  view.setUint32(4, hashLength, true)
  view.setUint32(8, memoryKib, true)
  view.setUint32(12, iterations, true)
  view.setUint32(16, ARGON2_VERSION, true)
  view.setUint32(20, ARGON2ID, true)
  memory().set(parameters, memoryKib * BLOCK_BYTES)

  // RFC 9106 §3.2 step 1: H0.
  const h0 = blake.digest(
    64,
    parameters,
    le32(input.password.length),
    input.password,
    le32(input.salt.length),
    input.salt,
    le32(secret.length),
    secret,
    le32(associatedData.length),
    associatedData,
  )
  // Steps 3-4: the first two blocks of every lane.
  const laneBlocks = Math.floor(memoryKib / (parallelism * 4)) * 4
  const seed = new Uint8Array(72)
  seed.set(h0)
  for (let lane = 0; lane < parallelism; lane++) {
    seed.set(le32(lane), 68)
    for (const column of [0, 1]) {
      seed.set(le32(column), 64)
      memory().set(blake.variable(BLOCK_BYTES, seed), (lane * laneBlocks + column) * BLOCK_BYTES)
    }
  }
  // Steps 5-7 run in the core, which leaves the XOR of the last column (C) in block 0.
  core.Hash_Calculate(0, memoryKib)
  const finalBlock = memory().slice(0, BLOCK_BYTES)
  return blake.variable(hashLength, finalBlock)
}
