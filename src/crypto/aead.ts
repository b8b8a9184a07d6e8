/**
 * Authenticated encryption of one message (native-notes/format.md §2.22): AES-256-GCM or
 * ChaCha20-Poly1305 from node:crypto, a 12-byte nonce = u32 LE region tag ‖ u64 LE counter,
 * output = ciphertext ‖ 16-byte tag. A message that does not authenticate (a flipped byte of
 * ciphertext or tag, another AAD, tag or counter, another key) is a FormatError BAD_CHECKSUM:
 * to every caller, tampering reads exactly like corruption.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { FormatError } from '../format/errors.js'
import type { AeadName } from '../format/v2/keyfile.js'

export type { AeadName }

export const TAG_BYTES = 16
export const NONCE_BYTES = 12
export const SALT_BYTES = 32
export const KEY_BYTES = 32

/** Region tags: the first 4 bytes of every nonce, one per kind of message (§2.22's table). */
export const NONCE_TAG = {
  envelope: 0,
  unitFrame: 1,
  unitIndex: 2,
  packPiece: 3,
  packTable: 4,
  hashesChunk: 5,
  dedupPage: 6,
  dedupDirectory: 7,
  // 8 is the key file's row: its wrap uses the file's own random `nonce` field under a KEK
  // that is the file's alone (makeKeyFile), never a tag and counter under an object key
} as const
export type NonceTag = (typeof NONCE_TAG)[keyof typeof NONCE_TAG]
const TAGS: ReadonlySet<number> = new Set(Object.values(NONCE_TAG))

/** A per-object key (HKDF of kEnc and the object's salt, keys.ts) with its AEAD. */
export interface ObjectKey {
  readonly aead: AeadName
  /** 32 bytes. */
  readonly key: Buffer
}

const U64_MAX = (1n << 64n) - 1n

/** The 12-byte nonce of message `counter` in region `tag`: u32 LE tag ‖ u64 LE counter. */
export function nonceOf(tag: NonceTag, counter: number | bigint): Buffer {
  if (!TAGS.has(tag)) throw new RangeError(`nonce region tag ${tag} is not one of §2.22's`)
  const c = BigInt(counter)
  if ((typeof counter === 'number' && !Number.isSafeInteger(counter)) || c < 0n || c > U64_MAX) throw new RangeError(`nonce counter ${counter} is not a u64`)
  const n = Buffer.allocUnsafe(NONCE_BYTES)
  n.writeUInt32LE(tag, 0)
  n.writeBigUInt64LE(c, 4)
  return n
}

function checkKey(k: ObjectKey): void {
  if (k.key.length !== KEY_BYTES) throw new RangeError(`an object key is ${KEY_BYTES} bytes, not ${k.key.length}`)
  if (k.aead !== 'aes-256-gcm' && k.aead !== 'chacha20-poly1305') throw new RangeError(`unknown AEAD ${String(k.aead)}`)
}

/** AEAD under an explicit nonce (the key file's wrap uses a random one; objects use nonceOf). */
export function sealWithNonce(k: ObjectKey, nonce: Buffer, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  checkKey(k)
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`)
  const opts = { authTagLength: TAG_BYTES }
  // (two calls: @types/node's overloads take one AEAD name each)
  const c = k.aead === 'aes-256-gcm' ? createCipheriv(k.aead, k.key, nonce, opts) : createCipheriv(k.aead, k.key, nonce, opts)
  c.setAAD(aad, { plaintextLength: plaintext.length })
  const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES)
  const body = c.update(plaintext)
  body.copy(out, 0)
  const fin = c.final() // empty for both AEADs (stream modes)
  fin.copy(out, body.length)
  c.getAuthTag().copy(out, plaintext.length)
  return out
}

/** The inverse of sealWithNonce: the plaintext, or FormatError BAD_CHECKSUM naming `what`. */
export function openWithNonce(k: ObjectKey, nonce: Buffer, aad: Uint8Array, sealed: Uint8Array, what: string): Buffer {
  checkKey(k)
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`)
  if (sealed.length < TAG_BYTES) throw new FormatError('TRUNCATED', `${what}: ${sealed.length} bytes, shorter than an authentication tag`)
  const ctLen = sealed.length - TAG_BYTES
  const opts = { authTagLength: TAG_BYTES }
  const d = k.aead === 'aes-256-gcm' ? createDecipheriv(k.aead, k.key, nonce, opts) : createDecipheriv(k.aead, k.key, nonce, opts)
  d.setAAD(aad, { plaintextLength: ctLen })
  d.setAuthTag(sealed.subarray(ctLen))
  const body = d.update(sealed.subarray(0, ctLen))
  try {
    d.final()
  } catch {
    // one message for every cause: the bytes, the tag, the AAD, the nonce or the key are not what sealed it
    throw new FormatError('BAD_CHECKSUM', `${what}: authentication failed (corrupt or tampered with)`)
  }
  return body
}

/**
 * Seals message `counter` of region `tag` under a per-object key: ciphertext ‖ 16-byte tag.
 * The caller guarantees (tag, counter) is used once under `k` (§2.22: each object has its own
 * salt, hence key; a rewrite takes a new salt).
 */
export function seal(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  return sealWithNonce(k, nonceOf(tag, counter), aad, plaintext)
}

/** What sealInto feeds the cipher at a time (see there). */
const SEAL_SLICE = 16 << 10

/**
 * seal() written into `out` at `at` instead of a new buffer: the same bytes (ciphertext ‖
 * 16-byte tag); returns how many, plaintext.length + TAG_BYTES. node:crypto's update() returns
 * a new buffer for what it is given: a whole compressed frame (~150 KiB) is a fresh allocation
 * past malloc's mmap threshold, page-faulted in, and seal() copied it once more into its
 * result. Fed SEAL_SLICE bytes at a time, each piece comes from memory malloc reuses at once,
 * and is copied once, where it goes (the compress workers' unit buffer, repo/worker.ts).
 */
export function sealInto(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, plaintext: Uint8Array, out: Buffer, at: number): number {
  checkKey(k)
  const n = plaintext.length
  if (at < 0 || at + n + TAG_BYTES > out.length) throw new RangeError(`sealInto: ${n + TAG_BYTES} bytes do not fit at ${at} of ${out.length}`)
  const opts = { authTagLength: TAG_BYTES }
  const nonce = nonceOf(tag, counter)
  const c = k.aead === 'aes-256-gcm' ? createCipheriv(k.aead, k.key, nonce, opts) : createCipheriv(k.aead, k.key, nonce, opts)
  c.setAAD(aad, { plaintextLength: n })
  let pos = at
  for (let i = 0; i < n; i += SEAL_SLICE) pos += c.update(plaintext.subarray(i, Math.min(n, i + SEAL_SLICE))).copy(out, pos)
  pos += c.final().copy(out, pos) // empty for both AEADs (stream modes)
  if (pos !== at + n) throw new Error(`sealInto: the cipher gave ${pos - at} bytes for ${n}`)
  return pos + c.getAuthTag().copy(out, pos) - at
}

/** Opens what seal() made with the same key, tag, counter and AAD; else FormatError BAD_CHECKSUM. */
export function open(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, sealed: Uint8Array, what: string): Buffer {
  return openWithNonce(k, nonceOf(tag, counter), aad, sealed, what)
}

/** A fresh object salt: 32 random bytes, never all zeros (§2.6 refuses that as a missing salt). */
export function newSalt(): Buffer {
  for (;;) {
    const s = randomBytes(SALT_BYTES)
    if (s.some((b) => b !== 0)) return s
  }
}
