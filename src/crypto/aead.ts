/**
 * Authenticated encryption of one message (native-notes/format.md §2.22): AES-256-GCM or
 * ChaCha20-Poly1305 (native/aead.c: OpenSSL's EVP calls, on the OpenSSL inside node, the one
 * node:crypto uses, with no allocation but the result's; node:crypto's update() allocated a
 * buffer per call and cost 1.6–3× the CPU per message), a 12-byte nonce = u32 LE region tag ‖ u64 LE counter,
 * output = ciphertext ‖ 16-byte tag. A message that does not authenticate (a flipped byte of
 * ciphertext or tag, another AAD, tag or counter, another key) is a FormatError BAD_CHECKSUM:
 * to every caller, tampering reads exactly like corruption.
 */
import { randomBytes } from 'node:crypto'
import { FormatError } from '../format/errors.js'
import { AEAD_AES256GCM, AEAD_CHACHA20POLY1305, aeadOpen, aeadSeal } from '../native/index.js'
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

/** native/aead.c's number for a key's AEAD (0 AES-256-GCM, 1 ChaCha20-Poly1305; the native read path's too). */
export function algOf(k: ObjectKey): number {
  return k.aead === 'aes-256-gcm' ? AEAD_AES256GCM : AEAD_CHACHA20POLY1305
}

/** AEAD under an explicit nonce (the key file's wrap uses a random one; objects use nonceOf). */
export function sealWithNonce(k: ObjectKey, nonce: Buffer, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  checkKey(k)
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`)
  const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES)
  aeadSeal(algOf(k), k.key, nonce, aad, plaintext, 0, plaintext.length, out, 0)
  return out
}

/** The inverse of sealWithNonce: the plaintext, or FormatError BAD_CHECKSUM naming `what`. */
export function openWithNonce(k: ObjectKey, nonce: Buffer, aad: Uint8Array, sealed: Uint8Array, what: string): Buffer {
  checkKey(k)
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes`)
  if (sealed.length < TAG_BYTES) throw new FormatError('TRUNCATED', `${what}: ${sealed.length} bytes, shorter than an authentication tag`)
  const out = Buffer.allocUnsafe(sealed.length - TAG_BYTES)
  // one message for every cause: the bytes, the tag, the AAD, the nonce or the key are not what sealed it
  if (aeadOpen(algOf(k), k.key, nonce, aad, sealed, 0, sealed.length, out, 0) < 0) throw new FormatError('BAD_CHECKSUM', `${what}: authentication failed (corrupt or tampered with)`)
  return out
}

/**
 * Seals message `counter` of region `tag` under a per-object key: ciphertext ‖ 16-byte tag.
 * The caller guarantees (tag, counter) is used once under `k` (§2.22: each object has its own
 * salt, hence key; a rewrite takes a new salt).
 */
export function seal(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, plaintext: Uint8Array): Buffer {
  return sealWithNonce(k, nonceOf(tag, counter), aad, plaintext)
}

/**
 * seal() written into `out` at `at` instead of a new buffer: the same bytes (ciphertext ‖
 * 16-byte tag); returns how many, plaintext.length + TAG_BYTES. Sealed by native/aead.c, on
 * the OpenSSL inside node, straight into `out` (the compress workers' unit buffer,
 * repo/worker.ts): node:crypto's update() returns a new buffer for what it is given, which
 * cost an allocation and a copy per frame.
 */
export function sealInto(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, plaintext: Uint8Array, out: Buffer, at: number): number {
  checkKey(k)
  const n = plaintext.length
  if (at < 0 || at + n + TAG_BYTES > out.length) throw new RangeError(`sealInto: ${n + TAG_BYTES} bytes do not fit at ${at} of ${out.length}`)
  return aeadSeal(algOf(k), k.key, nonceOf(tag, counter), aad, plaintext, 0, n, out, at)
}

/**
 * open() written into `out` (at least the plaintext's length, sealed.length - TAG_BYTES; it
 * may be `sealed` itself: opened in place): returns out's first bytes, the plaintext. Opened
 * by native/aead.c, on the OpenSSL inside node, with no allocation: node:crypto's update()
 * returns a new buffer for what it is given, a whole frame's (~250 KiB) for every unit frame
 * a restore or a mount opens. On a failure (FormatError BAD_CHECKSUM) out's first bytes are
 * garbage.
 */
export function openInto(k: ObjectKey, tag: NonceTag, counter: number | bigint, aad: Uint8Array, sealed: Uint8Array, out: Buffer, what: string): Buffer {
  checkKey(k)
  if (sealed.length < TAG_BYTES) throw new FormatError('TRUNCATED', `${what}: ${sealed.length} bytes, shorter than an authentication tag`)
  const ctLen = sealed.length - TAG_BYTES
  if (out.length < ctLen) throw new RangeError(`openInto: ${ctLen} bytes do not fit in ${out.length}`)
  // (one message for every cause, as open())
  if (aeadOpen(algOf(k), k.key, nonceOf(tag, counter), aad, sealed, 0, sealed.length, out, 0) < 0) throw new FormatError('BAD_CHECKSUM', `${what}: authentication failed (corrupt or tampered with)`)
  return out.subarray(0, ctLen)
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
