import { toBase64Url, utf8 } from '../../functions/crypto/encoding'

/**
 * A software authenticator for the suite (issue 14): an ES256 key made with WebCrypto, the
 * authenticator data, client data and `none` attestation (CBOR) a browser would send, so the
 * server's WebAuthn checks run against real signatures without a browser.
 */

// The few CBOR (RFC 8949) shapes an attestation object needs: maps, byte and text strings, ints.
type Cbor = number | string | Uint8Array | Map<Cbor, Cbor>

function head(major: number, length: number): number[] {
  if (length < 24) {
    return [(major << 5) | length]
  }
  if (length < 256) {
    return [(major << 5) | 24, length]
  }
  return [(major << 5) | 25, length >> 8, length & 0xff]
}

export function cbor(value: Cbor): Uint8Array {
  const out: number[] = []
  const write = (v: Cbor): void => {
    if (typeof v === 'number') {
      out.push(...(v >= 0 ? head(0, v) : head(1, -1 - v)))
    } else if (typeof v === 'string') {
      const bytes = utf8(v)
      out.push(...head(3, bytes.length), ...bytes)
    } else if (v instanceof Uint8Array) {
      out.push(...head(2, v.length), ...v)
    } else {
      out.push(...head(5, v.size))
      for (const [k, item] of v) {
        write(k)
        write(item)
      }
    }
  }
  write(value)
  return Uint8Array.from(out)
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** WebCrypto's ECDSA signature is r||s; WebAuthn wants it as an ASN.1 DER SEQUENCE of two INTEGERs. */
function derSignature(raw: Uint8Array): Uint8Array {
  const integer = (bytes: Uint8Array) => {
    let i = 0
    while (i < bytes.length - 1 && bytes[i] === 0) {
      i++
    }
    const trimmed = bytes.slice(i)
    const body = (trimmed[0] ?? 0) & 0x80 ? concat(Uint8Array.of(0), trimmed) : trimmed
    return concat(Uint8Array.of(0x02, body.length), body)
  }
  const seq = concat(integer(raw.slice(0, 32)), integer(raw.slice(32)))
  return concat(Uint8Array.of(0x30, seq.length), seq)
}

const FLAG_UP = 0x01
const FLAG_UV = 0x04
const FLAG_AT = 0x40

export interface Options {
  /** Where the "browser" says it ran (clientData.origin). */
  origin: string
  /** The RP ID whose SHA-256 the authenticator data carries. */
  rpId: string
}

export interface SoftAuthenticator {
  credentialId: string
  /** The signature counter the next assertion reports (settable to simulate a clone). */
  counter: number
  userVerified: boolean
  /** Answers creation options (as the server sent them) like navigator.credentials.create(). */
  create(
    options: { challenge: string; user: { id: string } },
    overrides?: Partial<Options>,
  ): Promise<Attestation>
  /** Answers request options like navigator.credentials.get(). */
  get(options: { challenge: string }, overrides?: Partial<Options>): Promise<Assertion>
}

export interface Attestation {
  id: string
  rawId: string
  type: 'public-key'
  clientExtensionResults: Record<string, never>
  response: { clientDataJSON: string; attestationObject: string; transports: string[] }
}

export interface Assertion {
  id: string
  rawId: string
  type: 'public-key'
  clientExtensionResults: Record<string, never>
  response: { clientDataJSON: string; authenticatorData: string; signature: string; userHandle?: string }
}

/** A new authenticator holding one ES256 credential for `defaults.rpId`. */
export async function softAuthenticator(defaults: Options): Promise<SoftAuthenticator> {
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair
  const jwk = (await crypto.subtle.exportKey('jwk', keys.publicKey)) as JsonWebKey
  const b64 = (s: string | undefined) =>
    Uint8Array.from(atob((s ?? '').replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))
  const coseKey = cbor(
    new Map<Cbor, Cbor>([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, b64(jwk.x)],
      [-3, b64(jwk.y)],
    ]),
  )
  const rawId = crypto.getRandomValues(new Uint8Array(32))
  const credentialId = toBase64Url(rawId)
  let userHandle: string | undefined

  const authData = async (rpId: string, flags: number, counter: number, attested?: Uint8Array) => {
    const count = new Uint8Array(4)
    new DataView(count.buffer).setUint32(0, counter)
    return concat(await sha256(utf8(rpId)), Uint8Array.of(flags), count, attested ?? new Uint8Array(0))
  }
  const clientData = (type: string, challenge: string, origin: string) =>
    utf8(JSON.stringify({ type, challenge, origin, crossOrigin: false }))

  const authenticator: SoftAuthenticator = {
    credentialId,
    counter: 0,
    userVerified: true,
    async create(options, overrides = {}) {
      const { origin, rpId } = { ...defaults, ...overrides }
      userHandle = options.user.id
      const idLength = Uint8Array.of(rawId.length >> 8, rawId.length & 0xff)
      const attested = concat(new Uint8Array(16), idLength, rawId, coseKey)
      const flags = FLAG_UP | FLAG_AT | (authenticator.userVerified ? FLAG_UV : 0)
      const data = await authData(rpId, flags, authenticator.counter, attested)
      const attestationObject = cbor(
        new Map<Cbor, Cbor>([
          ['fmt', 'none'],
          ['attStmt', new Map()],
          ['authData', data],
        ]),
      )
      return {
        id: credentialId,
        rawId: credentialId,
        type: 'public-key',
        clientExtensionResults: {},
        response: {
          clientDataJSON: toBase64Url(clientData('webauthn.create', options.challenge, origin)),
          attestationObject: toBase64Url(attestationObject),
          transports: ['internal'],
        },
      }
    },
    async get(options, overrides = {}) {
      const { origin, rpId } = { ...defaults, ...overrides }
      authenticator.counter += 1
      const data = await authData(
        rpId,
        FLAG_UP | (authenticator.userVerified ? FLAG_UV : 0),
        authenticator.counter,
      )
      const client = clientData('webauthn.get', options.challenge, origin)
      const signed = concat(data, await sha256(client))
      const raw = new Uint8Array(
        await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, signed),
      )
      return {
        id: credentialId,
        rawId: credentialId,
        type: 'public-key',
        clientExtensionResults: {},
        response: {
          clientDataJSON: toBase64Url(client),
          authenticatorData: toBase64Url(data),
          signature: toBase64Url(derSignature(raw)),
          ...(userHandle === undefined ? {} : { userHandle }),
        },
      }
    },
  }
  return authenticator
}
