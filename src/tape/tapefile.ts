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
 *
 * Sealed (flags bit0; an encrypted repository, format.md §2.18): the blob count at 44 is 0
 * and from 64 on the record holds the sealer's output over `u32 count ‖ the blob list`, with
 * bytes 0–59 ‖ "bfs tape file header" as its AAD: 32-byte salt ‖ AEAD ‖ 16-byte tag (the
 * repository's envelope sealing, its keys; this layer only calls the sealer). The CRC-32
 * still covers the whole record, so damage is told from a wrong key without the keys.
 */
import { lazyBuiltin } from '../os/builtin.js'

const zlib = lazyBuiltin<typeof import('node:zlib')>('node:zlib')
const crc32 = (b: Buffer): number => zlib().crc32(b)

export const TAPE_FILE_MAGIC = 'BFSTFIL\0'
export const TAPE_FILE_VERSION = 1
const FIXED = 64
/** Flags bit0: the blob list is sealed. */
export const TAPE_FILE_FLAG_SEALED = 1
/** What sealing adds to the blob list: the count (4), the salt (32) and the tag (16). */
export const SEALED_OVERHEAD = 4 + 32 + 16
const SEALED_AAD_TAIL = Buffer.from('bfs tape file header', 'latin1')

/** Seals and opens a header's blob list (an encrypted repository's keys, given by the repository layer). */
export interface TapeFileSealer {
  /** salt ‖ AEAD(plain) ‖ tag: plain.length + 48 bytes. */
  seal(aad: Buffer, plain: Buffer): Buffer
  /** The plaintext; throws (FormatError) when it does not authenticate. */
  open(aad: Buffer, sealed: Buffer, what: string): Buffer
}

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

/** Bytes a header with these keys takes (to keep it within one record); `sealed`: with SEALED_OVERHEAD. */
export function tapeFileHeaderBytes(keys: Iterable<string>, sealed = false): number {
  let n = FIXED + (sealed ? SEALED_OVERHEAD : 0)
  for (const k of keys) n += 2 + Buffer.byteLength(k) + 16
  return n
}

export function encodeTapeFileHeader(h: TapeFileHeader, sealer: TapeFileSealer | null = null): Buffer {
  const size = tapeFileHeaderBytes(h.blobs.map((b) => b.key), !!sealer)
  const b = Buffer.alloc(size)
  b.write(TAPE_FILE_MAGIC, 0, 'latin1')
  b.writeUInt16LE(TAPE_FILE_VERSION, 8)
  b.writeUInt16LE(sealer ? TAPE_FILE_FLAG_SEALED : 0, 10)
  b.writeUInt32LE(size, 12)
  if (h.repoId.length !== 16 || h.batch.length !== 8) throw new RangeError('repo id is 16 bytes, batch id 8')
  h.repoId.copy(b, 16)
  h.batch.copy(b, 32)
  b.writeUInt32LE(h.recordBytes, 40)
  b.writeUInt32LE(sealer ? 0 : h.blobs.length, 44)
  b.writeBigUInt64LE(BigInt(h.dataBytes), 48)
  if (sealer) {
    const list = Buffer.alloc(size - FIXED - 32 - 16)
    list.writeUInt32LE(h.blobs.length, 0)
    writeList(list, 4, h.blobs)
    const sealed = sealer.seal(Buffer.concat([b.subarray(0, 60), SEALED_AAD_TAIL]), list)
    if (sealed.length !== size - FIXED) throw new RangeError(`a sealed blob list of ${sealed.length} bytes (${size - FIXED})`)
    sealed.copy(b, FIXED)
  } else writeList(b, FIXED, h.blobs)
  b.writeUInt32LE(crc32(b), 60)
  return b
}

function writeList(b: Buffer, at: number, blobs: TapeFileBlob[]): void {
  let o = at
  for (const x of blobs) {
    const k = Buffer.from(x.key, 'utf8')
    b.writeUInt16LE(k.length, o)
    k.copy(b, o + 2)
    o += 2 + k.length
    b.writeBigUInt64LE(BigInt(x.bytes), o)
    b.writeBigUInt64LE(BigInt(x.offset), o + 8)
    o += 16
  }
}

/**
 * Decodes a header record; throws TapeFileError for anything that is not one (or is damaged),
 * and for a sealed one without `sealer` (the sealer's own error when it does not open).
 */
export function decodeTapeFileHeader(b: Buffer, what: string, sealer: TapeFileSealer | null = null): TapeFileHeader {
  const bad = (m: string): never => {
    throw new TapeFileError(`${what}: ${m}`)
  }
  if (b.length < FIXED || b.toString('latin1', 0, 8) !== TAPE_FILE_MAGIC) bad('not a bfs tape file header (bad magic)')
  if (b.readUInt16LE(8) !== TAPE_FILE_VERSION) bad(`tape file version ${b.readUInt16LE(8)} is not supported`)
  const flags = b.readUInt16LE(10)
  if ((flags & ~TAPE_FILE_FLAG_SEALED) !== 0 || b.readUInt32LE(56) !== 0) bad('unknown flags or reserved field not 0')
  const size = b.readUInt32LE(12)
  if (size !== b.length) bad(`header of ${size} bytes in a record of ${b.length}`)
  const want = b.readUInt32LE(60)
  const z = Buffer.from(b)
  z.writeUInt32LE(0, 60)
  if (crc32(z) !== want) bad('header checksum mismatch')
  const head = { repoId: Buffer.from(b.subarray(16, 32)), batch: Buffer.from(b.subarray(32, 40)), recordBytes: b.readUInt32LE(40), dataBytes: Number(b.readBigUInt64LE(48)) }
  if (flags & TAPE_FILE_FLAG_SEALED) {
    if (!sealer) bad("sealed (an encrypted repository's tape file): its blob list needs the repository's keys")
    if (b.readUInt32LE(44) !== 0 || size < FIXED + SEALED_OVERHEAD) bad('bad sealed header')
    const list = sealer!.open(Buffer.concat([b.subarray(0, 60), SEALED_AAD_TAIL]), b.subarray(FIXED), what)
    if (list.length < 4) bad('bad sealed header')
    return { ...head, blobs: readList(list, 4, list.readUInt32LE(0), bad) }
  }
  return { ...head, blobs: readList(b, FIXED, b.readUInt32LE(44), bad) }
}

function readList(b: Buffer, at: number, n: number, bad: (m: string) => never): TapeFileBlob[] {
  const size = b.length
  const blobs: TapeFileBlob[] = []
  let o = at
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
  return blobs
}
