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

/** BLAKE2b on a fresh core; `outBytes` 1..64 (RFC 7693). */
class Blake2b {
  private readonly core = instantiate(blake2bModule)
  private readonly offset = this.core.Hash_GetBuffer()

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
 * it allocates about 19 MiB for the duration of the call, on a core instantiated for this call
 * alone so no password-derived memory outlives it.
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
  const secret = input.secret ?? new Uint8Array(0)
  const associatedData = input.associatedData ?? new Uint8Array(0)
  const blake = new Blake2b()
  const core = instantiate(argon2Module)
  const offset = core.Hash_GetBuffer()
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
  memory().fill(0)
  return blake.variable(hashLength, finalBlock)
}
