import { createHash } from 'node:crypto'
import { FormatError } from './errors.js'

/**
 * The 64-byte envelope every bfs metadata file starts with (config, manifest,
 * catalog, maps, hashes). See native-notes/format.md §"Envelope".
 */
export const ENVELOPE_BYTES = 64
export const ENVELOPE_VERSION = 1
export const FLAG_ZSTD = 1

export const MAGIC = {
  config: 'BFSCONF\0',
  manifest: 'BFSMANI\0',
  catalog: 'BFSCATL\0',
  maps: 'BFSMAPS\0',
  hashes: 'BFSHASH\0',
  group: 'BFSGRUP\0',
  tier: 'BFSTIER\0',
  tapecat: 'BFSTCAT\0',
  bilog: 'BFSBLOG\0',
} as const
export type EnvelopeKind = keyof typeof MAGIC

export interface Envelope {
  kind: EnvelopeKind
  version: number
  flags: number
  /** Length of the payload before compression. */
  rawBytes: number
  /** The stored (possibly compressed) payload. */
  stored: Buffer
}

export function encodeEnvelope(kind: EnvelopeKind, flags: number, rawBytes: number, stored: Buffer): Buffer {
  const head = Buffer.alloc(ENVELOPE_BYTES)
  head.write(MAGIC[kind], 0, 'latin1')
  head.writeUInt16LE(ENVELOPE_VERSION, 8)
  head.writeUInt16LE(flags, 10)
  head.writeUInt32LE(0, 12)
  head.writeBigUInt64LE(BigInt(rawBytes), 16)
  head.writeBigUInt64LE(BigInt(stored.length), 24)
  createHash('sha256').update(stored).digest().copy(head, 32)
  return Buffer.concat([head, stored])
}

/** Checks magic, version, lengths and the payload's SHA-256; `what` names the file in errors. */
export function decodeEnvelope(kind: EnvelopeKind, file: Buffer, what: string): Envelope {
  if (file.length < ENVELOPE_BYTES) throw new FormatError('TRUNCATED', `${what}: ${file.length} bytes, too short for a bfs file`)
  const magic = file.toString('latin1', 0, 8)
  if (magic !== MAGIC[kind]) {
    const known = Object.entries(MAGIC).find(([, m]) => m === magic)
    throw new FormatError('BAD_MAGIC', known ? `${what}: is a bfs ${known[0]} file, expected ${kind}` : `${what}: not a bfs ${kind} file (bad magic)`)
  }
  const version = file.readUInt16LE(8)
  if (version !== ENVELOPE_VERSION) throw new FormatError('BAD_VERSION', `${what}: format version ${version} is not supported (this bfs reads ${ENVELOPE_VERSION})`)
  const flags = file.readUInt16LE(10)
  if ((flags & ~FLAG_ZSTD) !== 0) throw new FormatError('BAD_VALUE', `${what}: unknown flags 0x${flags.toString(16)}`)
  if (file.readUInt32LE(12) !== 0) throw new FormatError('BAD_VALUE', `${what}: reserved header field is not 0 (corrupt, or a newer format)`)
  const rawBytes = Number(file.readBigUInt64LE(16))
  const storedBytes = Number(file.readBigUInt64LE(24))
  if (storedBytes !== file.length - ENVELOPE_BYTES) {
    throw new FormatError(storedBytes > file.length - ENVELOPE_BYTES ? 'TRUNCATED' : 'TRAILING_BYTES', `${what}: payload length ${storedBytes} does not match file size ${file.length}`)
  }
  if (!(flags & FLAG_ZSTD) && rawBytes !== storedBytes) throw new FormatError('BAD_VALUE', `${what}: raw and stored lengths differ in an uncompressed file`)
  const stored = file.subarray(ENVELOPE_BYTES)
  const sum = createHash('sha256').update(stored).digest()
  if (!sum.equals(file.subarray(32, 64))) throw new FormatError('BAD_CHECKSUM', `${what}: checksum mismatch (file is corrupt)`)
  return { kind, version, flags, rawBytes, stored }
}
