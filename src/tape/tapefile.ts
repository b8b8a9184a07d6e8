/**
 * The header record of a tape file bfs writes (native-notes/tape.md §"Tape files"): the
 * first record of every tape file, saying what the file holds, so that a tape can be read
 * without the repository's catalog. After it come the blobs, each starting a record of its
 * own, in records of `recordBytes` (a blob's last record short), then a filemark. A blob's
 * offset is its first record's index (counted from the record after the header) ×
 * recordBytes.
 *
 * All integers little-endian:
 *
 *   0   8  magic "BFSTFIL\0"
 *   8   2  version = 1
 *   10  2  flags = 0
 *   12  4  length of this record, bytes
 *   16  16 repository id (config repoId, 16 bytes; zeros if unknown)
 *   32  8  batch id: random, also in the catalog record
 *   40  4  record bytes of the data stream
 *   44  4  blob count
 *   48  8  data bytes: records after this one × record bytes
 *   56  4  reserved = 0
 *   60  4  CRC-32 of the whole record with these 4 bytes as zeros
 *   64  …  per blob: u16 key length, key (UTF-8), u64 bytes, u64 offset in the stream
 *
 * Checksums of the blobs are in the repository's catalog (the header goes to tape before
 * the bytes are read, so it cannot hold them); a unit checks its own frames anyway.
 */
import { lazyBuiltin } from '../os/builtin.js'

const zlib = lazyBuiltin<typeof import('node:zlib')>('node:zlib')
const crc32 = (b: Buffer): number => zlib().crc32(b)

export const TAPE_FILE_MAGIC = 'BFSTFIL\0'
export const TAPE_FILE_VERSION = 1
const FIXED = 64

export interface TapeFileBlob {
  key: string
  bytes: number
  /** Offset in the data stream. */
  offset: number
}

export interface TapeFileHeader {
  repoId: Buffer
  batch: Buffer
  recordBytes: number
  dataBytes: number
  blobs: TapeFileBlob[]
}

export class TapeFileError extends Error {
  override readonly name = 'TapeFileError'
}

/** Bytes a header with these keys takes (to keep it within one record). */
export function tapeFileHeaderBytes(keys: Iterable<string>): number {
  let n = FIXED
  for (const k of keys) n += 2 + Buffer.byteLength(k) + 16
  return n
}

export function encodeTapeFileHeader(h: TapeFileHeader): Buffer {
  const size = tapeFileHeaderBytes(h.blobs.map((b) => b.key))
  const b = Buffer.alloc(size)
  b.write(TAPE_FILE_MAGIC, 0, 'latin1')
  b.writeUInt16LE(TAPE_FILE_VERSION, 8)
  b.writeUInt16LE(0, 10)
  b.writeUInt32LE(size, 12)
  if (h.repoId.length !== 16 || h.batch.length !== 8) throw new RangeError('repo id is 16 bytes, batch id 8')
  h.repoId.copy(b, 16)
  h.batch.copy(b, 32)
  b.writeUInt32LE(h.recordBytes, 40)
  b.writeUInt32LE(h.blobs.length, 44)
  b.writeBigUInt64LE(BigInt(h.dataBytes), 48)
  let o = FIXED
  for (const x of h.blobs) {
    const k = Buffer.from(x.key, 'utf8')
    b.writeUInt16LE(k.length, o)
    k.copy(b, o + 2)
    o += 2 + k.length
    b.writeBigUInt64LE(BigInt(x.bytes), o)
    b.writeBigUInt64LE(BigInt(x.offset), o + 8)
    o += 16
  }
  b.writeUInt32LE(crc32(b), 60)
  return b
}

/** Decodes a header record; throws TapeFileError for anything that is not one (or is damaged). */
export function decodeTapeFileHeader(b: Buffer, what: string): TapeFileHeader {
  const bad = (m: string): never => {
    throw new TapeFileError(`${what}: ${m}`)
  }
  if (b.length < FIXED || b.toString('latin1', 0, 8) !== TAPE_FILE_MAGIC) bad('not a bfs tape file header (bad magic)')
  if (b.readUInt16LE(8) !== TAPE_FILE_VERSION) bad(`tape file version ${b.readUInt16LE(8)} is not supported`)
  if (b.readUInt16LE(10) !== 0 || b.readUInt32LE(56) !== 0) bad('flags or reserved field not 0')
  const size = b.readUInt32LE(12)
  if (size !== b.length) bad(`header of ${size} bytes in a record of ${b.length}`)
  const want = b.readUInt32LE(60)
  const z = Buffer.from(b)
  z.writeUInt32LE(0, 60)
  if (crc32(z) !== want) bad('header checksum mismatch')
  const n = b.readUInt32LE(44)
  const blobs: TapeFileBlob[] = []
  let o = FIXED
  for (let i = 0; i < n; i++) {
    if (o + 2 > size) bad('truncated blob list')
    const kl = b.readUInt16LE(o)
    if (o + 2 + kl + 16 > size) bad('truncated blob list')
    const key = b.toString('utf8', o + 2, o + 2 + kl)
    o += 2 + kl
    blobs.push({ key, bytes: Number(b.readBigUInt64LE(o)), offset: Number(b.readBigUInt64LE(o + 8)) })
    o += 16
  }
  if (o !== size) bad('bytes after the blob list')
  return { repoId: Buffer.from(b.subarray(16, 32)), batch: Buffer.from(b.subarray(32, 40)), recordBytes: b.readUInt32LE(40), dataBytes: Number(b.readBigUInt64LE(48)), blobs }
}
