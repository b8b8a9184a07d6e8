/**
 * Encrypted envelopes v2 (native-notes/format.md §2.6, §2.22): a whole small object (config
 * aside, which stays plain with a MAC; key files, which are never encrypted) as one AEAD
 * message — flag bit1, header bytes 32–63 the object's fresh salt, payload
 * `AEAD(objKey(salt, "object"), nonce(0, 0), header[0..32) ‖ logical name, payload) ‖ tag16`.
 * The logical name (`manifest/12/r2`, `run/12`, …) is the caller's; compression (bit0) too:
 * this layer never imports zstd, it seals and opens the bytes it is given.
 */
import { FormatError } from '../format/errors.js'
import { ENV_FLAG_ENCRYPTED, ENV_FLAG_ZSTD, ENVELOPE_BYTES, type Envelope2Kind, decodeEnvelope2, encodeEnvelope2, envelopeAad } from '../format/v2/envelope.js'
import { NONCE_TAG, TAG_BYTES, newSalt, open, seal } from './aead.js'
import { aad } from './aad.js'
import { type RepoKeys, objectKey } from './keys.js'

/**
 * An encrypted envelope around `stored` (the payload, already zstd-compressed when
 * `compressed`; `rawBytes` its length before compression). `salt` is for golden vectors
 * only: every object takes a fresh one (§2.22: no nonce repeats under a key).
 */
export function sealEnvelope(keys: RepoKeys, kind: Envelope2Kind, logicalName: string, stored: Buffer, rawBytes: number, o: { compressed?: boolean; salt?: Buffer } = {}): Buffer {
  if (kind === 'keyfile' || kind === 'config') throw new RangeError(`a ${kind} is never encrypted (§2.6, §2.21)`)
  const salt = o.salt ?? newSalt()
  const flags = ENV_FLAG_ENCRYPTED | (o.compressed ? ENV_FLAG_ZSTD : 0)
  // the header first (its bytes 0–31 are AAD), with room for the sealed payload
  const file = encodeEnvelope2(kind, flags, rawBytes, Buffer.alloc(stored.length + TAG_BYTES), salt)
  seal(objectKey(keys, salt, 'object'), NONCE_TAG.envelope, 0, envelopeAad(file, logicalName), stored).copy(file, ENVELOPE_BYTES)
  return file
}

/**
 * The stored payload (still compressed when `compressed`) of an encrypted envelope, checked:
 * header, salt, tag and the logical name. A plain envelope in an encrypted repository is
 * refused (§2.22 downgrade refusal) as damage: FormatError, as a failed tag is.
 */
export function openEnvelope(keys: RepoKeys, kind: Envelope2Kind, logicalName: string, file: Buffer, what: string): { stored: Buffer; rawBytes: number; compressed: boolean } {
  const env = decodeEnvelope2(kind, file, what)
  if (!env.salt) throw new FormatError('BAD_VALUE', `${what}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
  const stored = open(objectKey(keys, env.salt, 'object'), NONCE_TAG.envelope, 0, envelopeAad(file, logicalName), env.stored, what)
  const compressed = (env.flags & ENV_FLAG_ZSTD) !== 0
  if (!compressed && stored.length !== env.rawBytes) throw new FormatError('BAD_VALUE', `${what}: raw length ${env.rawBytes} is not the payload's ${stored.length}`)
  return { stored, rawBytes: env.rawBytes, compressed }
}

/** §2.10: hashes per chunk of an encrypted hashes file (64 KiB of 8-byte hashes). */
export const HASHES_PER_CHUNK = 8192

/**
 * An encrypted hashes file (§2.10): envelope header with bit1 and the salt (raw length = the
 * hashes' bytes), then chunk c of 8,192 hashes as `AEAD(objKey(salt, "hashes"), nonce(5, c),
 * "bfs/hashes" ‖ u32 stream ‖ u64 c, hashes) ‖ tag16`, the last chunk shorter. `hashes` is
 * 8 × blocks bytes. The header's bytes are not in the AAD (the chunk AAD binds stream and
 * position; the raw length is checked against the chunks on opening).
 */
export function sealHashes(keys: RepoKeys, stream: number, hashes: Buffer, o: { salt?: Buffer } = {}): Buffer {
  const salt = o.salt ?? newSalt()
  const k = objectKey(keys, salt, 'hashes')
  const chunk = HASHES_PER_CHUNK * 8
  const parts: Buffer[] = []
  for (let c = 0, at = 0; at < hashes.length; c++, at += chunk) parts.push(seal(k, NONCE_TAG.hashesChunk, c, aad.hashesChunk(stream, c), hashes.subarray(at, Math.min(hashes.length, at + chunk))))
  return encodeEnvelope2('hashes', ENV_FLAG_ENCRYPTED, hashes.length, Buffer.concat(parts), salt)
}

/** The hashes of an encrypted hashes file (every chunk authenticated); FormatError on damage, a plain file refused (§2.22). */
export function openHashes(keys: RepoKeys, stream: number, file: Buffer, what: string): Buffer {
  const env = decodeEnvelope2('hashes', file, what)
  if (!env.salt) throw new FormatError('BAD_VALUE', `${what}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
  if (env.flags !== ENV_FLAG_ENCRYPTED) throw new FormatError('BAD_VALUE', `${what}: an encrypted hashes file is never compressed`)
  const chunk = HASHES_PER_CHUNK * 8
  const chunks = Math.ceil(env.rawBytes / chunk)
  if (env.rawBytes % 8 !== 0 || env.stored.length !== env.rawBytes + chunks * TAG_BYTES) throw new FormatError('BAD_VALUE', `${what}: ${env.stored.length} stored bytes do not hold ${env.rawBytes} bytes of hashes in chunks`)
  const k = objectKey(keys, env.salt, 'hashes')
  const out = Buffer.allocUnsafe(env.rawBytes)
  for (let c = 0; c < chunks; c++) {
    const raw = Math.min(chunk, env.rawBytes - c * chunk)
    const at = c * (chunk + TAG_BYTES)
    open(k, NONCE_TAG.hashesChunk, c, aad.hashesChunk(stream, c), env.stored.subarray(at, at + raw + TAG_BYTES), `${what} (chunk ${c})`).copy(out, c * chunk)
  }
  return out
}
