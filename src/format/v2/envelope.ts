import { createHash } from 'node:crypto'
import { FormatError } from '../errors.js'

/**
 * Envelope v2: format 1's 64-byte header for small whole objects, with an encrypted flag and,
 * when it is set, the object's salt where the SHA-256 was. native-notes/format.md §2.6.
 */
export const ENVELOPE_BYTES = 64
export const ENVELOPE_V2 = 2
export const ENV_FLAG_ZSTD = 1
export const ENV_FLAG_ENCRYPTED = 2

export const MAGIC2 = {
  config: 'BFSCONF\0',
  keyfile: 'BFSKEYF\0',
  run: 'BFSRUN\0\0',
  manifest: 'BFSMANI\0',
  stream: 'BFSSTRM\0',
  lease: 'BFSLEAS\0',
  history: 'BFSHIST\0',
  plan: 'BFSPLAN\0',
  group: 'BFSGRUP\0',
  tier: 'BFSTIER\0',
  hashes: 'BFSHASH\0',
  /** Tape catalog records: only sealed ones are envelope v2 (an encrypted repository; §2.18). */
  tapecat: 'BFSTCAT\0',
} as const
export type Envelope2Kind = keyof typeof MAGIC2

/** Kinds a format 2 repository may keep from format 1 (version 1 envelopes, read as they are). */
export const KEPT_FROM_V1: ReadonlySet<Envelope2Kind> = new Set(['hashes', 'group', 'tier'])

/** Format 1 magics, to name them when one turns up where a format 2 kind was expected. */
const V1_ONLY: Record<string, string> = { 'BFSCATL\0': 'catalog (format 1)', 'BFSMAPS\0': 'maps (format 1)' }

export interface Envelope2 {
  kind: Envelope2Kind
  version: 1 | 2
  flags: number
  /** Payload length after decryption and decompression. */
  rawBytes: number
  /** The stored payload (compressed and/or encrypted as the flags say). */
  stored: Buffer
  /** Encrypted objects: their 32-byte salt; else null. */
  salt: Buffer | null
}

/**
 * An envelope around an already stored payload. Unencrypted: bytes 32–63 are the payload's
 * SHA-256. Encrypted (`salt` given, flag set): the salt, and the payload is the AEAD output.
 */
export function encodeEnvelope2(kind: Envelope2Kind, flags: number, rawBytes: number, stored: Buffer, salt: Buffer | null = null): Buffer {
  return Buffer.concat(encodeEnvelope2Parts(kind, flags, rawBytes, [stored], salt))
}

/**
 * encodeEnvelope2 as the file's parts, [header, ...stored], the stored bytes not copied: a big
 * payload (a run's hashes, 8 B per stored block) is written without a second copy of it.
 */
export function encodeEnvelope2Parts(kind: Envelope2Kind, flags: number, rawBytes: number, stored: readonly Buffer[], salt: Buffer | null = null): Buffer[] {
  const storedBytes = stored.reduce((n, b) => n + b.length, 0)
  if (flags & ~(ENV_FLAG_ZSTD | ENV_FLAG_ENCRYPTED)) throw new RangeError(`envelope flags 0x${flags.toString(16)}`)
  if (!!(flags & ENV_FLAG_ENCRYPTED) !== !!salt || (salt && (salt.length !== 32 || salt.every((b) => b === 0)))) throw new RangeError('an encrypted envelope has a 32-byte salt (not all zeros), a plain one none')
  if (!(flags & (ENV_FLAG_ZSTD | ENV_FLAG_ENCRYPTED)) && rawBytes !== storedBytes) throw new RangeError('a plain, uncompressed payload has equal raw and stored lengths')
  const head = Buffer.alloc(ENVELOPE_BYTES)
  head.write(MAGIC2[kind], 0, 'latin1')
  head.writeUInt16LE(ENVELOPE_V2, 8)
  head.writeUInt16LE(flags, 10)
  head.writeBigUInt64LE(BigInt(rawBytes), 16)
  head.writeBigUInt64LE(BigInt(storedBytes), 24)
  if (salt) salt.copy(head, 32)
  else {
    const h = createHash('sha256')
    for (const b of stored) h.update(b)
    h.digest().copy(head, 32)
  }
  return [head, ...stored]
}

/**
 * Checks magic, version (2; or 1 for the kinds kept from format 1), flags, the reserved field,
 * lengths and — unencrypted — the SHA-256. An encrypted payload is returned as stored with its
 * salt: the caller authenticates and decrypts it (issue 18).
 */
export function decodeEnvelope2(kind: Envelope2Kind, file: Buffer, what: string): Envelope2 {
  if (file.length < ENVELOPE_BYTES) throw new FormatError('TRUNCATED', `${what}: ${file.length} bytes, too short for a bfs file`)
  const magic = file.toString('latin1', 0, 8)
  if (magic !== MAGIC2[kind]) {
    const known = Object.entries(MAGIC2).find(([, m]) => m === magic)?.[0] ?? V1_ONLY[magic]
    throw new FormatError('BAD_MAGIC', known ? `${what}: is a bfs ${known} file, expected ${kind}` : `${what}: not a bfs ${kind} file (bad magic)`)
  }
  const version = file.readUInt16LE(8)
  if (version !== ENVELOPE_V2 && !(version === 1 && KEPT_FROM_V1.has(kind))) {
    throw new FormatError('BAD_VERSION', `${what}: format version ${version} is not supported here (this bfs reads ${ENVELOPE_V2}${KEPT_FROM_V1.has(kind) ? ' and 1' : ''})`)
  }
  const flags = file.readUInt16LE(10)
  const known = version === 1 ? ENV_FLAG_ZSTD : ENV_FLAG_ZSTD | ENV_FLAG_ENCRYPTED
  if (flags & ~known) throw new FormatError('BAD_VALUE', `${what}: unknown flags 0x${flags.toString(16)}`)
  if (file.readUInt32LE(12) !== 0) throw new FormatError('BAD_VALUE', `${what}: reserved header field is not 0 (corrupt, or a newer format)`)
  const rawBig = file.readBigUInt64LE(16)
  const storedBig = file.readBigUInt64LE(24)
  if (storedBig !== BigInt(file.length - ENVELOPE_BYTES)) {
    throw new FormatError(storedBig > BigInt(file.length - ENVELOPE_BYTES) ? 'TRUNCATED' : 'TRAILING_BYTES', `${what}: payload length ${storedBig} does not match file size ${file.length}`)
  }
  if (rawBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError('BAD_VALUE', `${what}: raw length ${rawBig} too large`)
  const rawBytes = Number(rawBig)
  const stored = file.subarray(ENVELOPE_BYTES)
  const encrypted = (flags & ENV_FLAG_ENCRYPTED) !== 0
  if (!(flags & (ENV_FLAG_ZSTD | ENV_FLAG_ENCRYPTED)) && rawBytes !== stored.length) throw new FormatError('BAD_VALUE', `${what}: raw and stored lengths differ in an uncompressed file`)
  if (encrypted && file.subarray(32, 64).every((b) => b === 0)) throw new FormatError('BAD_VALUE', `${what}: an encrypted object without a salt`)
  if (!encrypted) {
    const sum = createHash('sha256').update(stored).digest()
    if (!sum.equals(file.subarray(32, 64))) throw new FormatError('BAD_CHECKSUM', `${what}: checksum mismatch (file is corrupt)`)
  }
  return { kind, version: version as 1 | 2, flags, rawBytes, stored, salt: encrypted ? Buffer.from(file.subarray(32, 64)) : null }
}

/**
 * The AEAD associated data of an encrypted envelope (issue 18): header bytes 0–31 and the
 * object's logical name (`config`, `run/12`, `manifest/12/r2`, …).
 */
export function envelopeAad(file: Buffer, logicalName: string): Buffer {
  return Buffer.concat([file.subarray(0, 32), Buffer.from(logicalName, 'utf8')])
}

/** Byte offset of stream block `s`'s hash in an unencrypted hashes file (§2.10). */
export function hashOffset(streamBlock: number): number {
  return ENVELOPE_BYTES + 8 * streamBlock
}
