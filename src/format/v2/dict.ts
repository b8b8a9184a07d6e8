import { createHash } from 'node:crypto'
import { FormatError } from '../errors.js'
import { MAX_OBJECT_NUMBER } from './common.js'

/**
 * A stream's compression dictionary (`gens/S/dict-<id>`, native-notes/format.md §2.9.1): a
 * 64-byte header, then a zstd dictionary whose own id is `id`. Units a compact rewrote with
 * it carry the id in their header; every frame of such a unit needs it to decompress.
 */
export const DICT_MAGIC = 'BFSDICT\0'
export const DICT_VERSION = 1
export const DICT_HEADER_BYTES = 64
/** zstd's dictionary magic (ZSTD_MAGIC_DICTIONARY), little-endian at byte 0 of the dictionary. */
export const ZSTD_DICT_MAGIC = 0xec30a437
/** The biggest dictionary a reader accepts (compact trains 112 KiB ones). */
export const MAX_DICT_BYTES = 1 << 20

export interface StreamDict {
  stream: number
  /** The zstd dictionary's own id (bytes 4–7 of `bytes`), ≥ 1. */
  id: number
  /** The zstd dictionary. */
  bytes: Buffer
}

/** The id a zstd dictionary carries (0 for a raw-content dictionary, which bfs never writes). */
export function zstdDictId(bytes: Buffer): number {
  return bytes.length >= 8 && bytes.readUInt32LE(0) === ZSTD_DICT_MAGIC ? bytes.readUInt32LE(4) : 0
}

export function encodeDict(d: StreamDict): Buffer {
  if (!(d.stream >= 1 && d.stream <= MAX_OBJECT_NUMBER)) throw new RangeError(`dictionary of stream ${d.stream}`)
  if (d.bytes.length < 8 || d.bytes.length > MAX_DICT_BYTES || zstdDictId(d.bytes) !== d.id || d.id < 1) throw new RangeError('not a zstd dictionary with that id')
  const h = Buffer.alloc(DICT_HEADER_BYTES)
  h.write(DICT_MAGIC, 0, 'latin1')
  h.writeUInt16LE(DICT_VERSION, 8)
  h.writeUInt16LE(0, 10)
  h.writeUInt32LE(d.stream, 12)
  h.writeUInt32LE(d.id, 16)
  h.writeUInt32LE(d.bytes.length, 20)
  createHash('sha256').update(d.bytes).digest().copy(h, 24, 0, 8)
  return Buffer.concat([h, d.bytes])
}

/** Decodes and checks a dictionary file; `expected`: the stream and id its key names. */
export function decodeDict(b: Buffer, what: string, expected?: { stream: number; id: number }): StreamDict {
  if (b.length < DICT_HEADER_BYTES + 8) throw new FormatError('TRUNCATED', `${what}: too short for a dictionary`)
  if (b.toString('latin1', 0, 8) !== DICT_MAGIC) throw new FormatError('BAD_MAGIC', `${what}: not a bfs dictionary (bad magic)`)
  const version = b.readUInt16LE(8)
  if (version !== DICT_VERSION) throw new FormatError('BAD_VERSION', `${what}: dictionary format version ${version} is not supported here (expected ${DICT_VERSION})`)
  const flags = b.readUInt16LE(10)
  if (flags !== 0) throw new FormatError('BAD_VALUE', `${what}: dictionary has unknown flags 0x${flags.toString(16)}`)
  for (let i = 32; i < DICT_HEADER_BYTES; i++) if (b[i] !== 0) throw new FormatError('BAD_VALUE', `${what}: reserved dictionary header bytes are not 0 (corrupt, or a newer format)`)
  const stream = b.readUInt32LE(12)
  const id = b.readUInt32LE(16)
  const length = b.readUInt32LE(20)
  if (length !== b.length - DICT_HEADER_BYTES || length > MAX_DICT_BYTES) throw new FormatError('TRUNCATED', `${what}: dictionary says ${length} bytes, the file holds ${b.length - DICT_HEADER_BYTES}`)
  const bytes = b.subarray(DICT_HEADER_BYTES)
  if (!createHash('sha256').update(bytes).digest().subarray(0, 8).equals(b.subarray(24, 32))) throw new FormatError('BAD_CHECKSUM', `${what}: dictionary checksum mismatch (file is corrupt)`)
  if (id < 1 || zstdDictId(bytes) !== id) throw new FormatError('BAD_VALUE', `${what}: dictionary id ${id} is not the zstd dictionary's own (${zstdDictId(bytes)})`)
  if (expected && (stream !== expected.stream || id !== expected.id)) {
    throw new FormatError('BAD_VALUE', `${what}: dictionary names stream ${stream}, id ${id} (its key says ${expected.stream}, ${expected.id})`)
  }
  return { stream, id, bytes: Buffer.from(bytes) }
}
