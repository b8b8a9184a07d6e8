import { ByteReader, ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'

/**
 * What every format 2 piece shares: PieceRefs, extent lists, the piece header and the
 * limits. See native-notes/format.md §2.4, §2.12.
 */

/** A piece's raw payload is at most this long (bigger structures are paged). */
export const MAX_PIECE_RAW_BYTES = 1 << 20
/** A piece's stored bytes: ≥ zstd's bound for 1 MiB, + a 16-byte AEAD tag. */
export const MAX_PIECE_STORED_BYTES = (1 << 20) + (1 << 16)
/** Pieces start after the pack header. */
export const PACK_HEADER_BYTES = 64
/** Pack and unit numbers are 8 decimal digits in store keys. */
export const MAX_OBJECT_NUMBER = 99_999_999
export const ID_BYTES = 32
export const BLOCK_BYTES = 4096

/** Piece kinds (the first byte of every piece payload). */
export const PieceKind = {
  Dir: 1,
  DirDelta: 2,
  DirIndex: 3,
  MapLeaf: 4,
  MapInner: 5,
  IdPage: 6,
  IdIndex: 7,
  BiLog: 8,
  BiList: 9,
} as const
export type PieceKind = (typeof PieceKind)[keyof typeof PieceKind]
export const PIECE_KIND_NAMES: Record<number, string> = { 1: 'DIR', 2: 'DIRDELTA', 3: 'DIRINDEX', 4: 'MAPLEAF', 5: 'MAPINNER', 6: 'IDPAGE', 7: 'IDINDEX', 8: 'BILOG', 9: 'BILIST' }
export const PIECE_KIND_VERSION = 1

/**
 * Keyed BLAKE3 of a raw piece payload (the caller supplies it: format/ computes no hashes of
 * its own; with the all-zero key in unencrypted repositories).
 */
export type IdFn = (rawPayload: Buffer) => Buffer

/** XXH64 with the repository's seed, as an unsigned 64-bit number (page cuts; caller supplies it). */
export type Xxh64Fn = (bytes: Buffer) => bigint

/** Where a piece is and what it must hash to. Compared by (run, pack, offset). */
export interface PieceRef {
  run: number
  pack: number
  /** Byte offset in `gens/<run>/pack-<pack>`, ≥ 64. */
  offset: number
  /** Stored (compressed [+ tag]) length, 1 … MAX_PIECE_STORED_BYTES. */
  storedLen: number
  /** 32-byte keyed BLAKE3 of the raw payload. */
  id: Buffer
}

/** Decoders throw FormatError; encoders (what === 'encoder') RangeError: bad input there is a bug. */
function checkRef(ref: PieceRef, what: string): PieceRef {
  const bad = (m: string): never => {
    if (what === 'encoder') throw new RangeError(`piece reference ${m}`)
    throw new FormatError('BAD_VALUE', `${what}: piece reference ${m}`)
  }
  if (!Number.isSafeInteger(ref.run) || ref.run < 1 || ref.run > MAX_OBJECT_NUMBER) bad(`has run ${ref.run}`)
  if (!Number.isSafeInteger(ref.pack) || ref.pack < 0 || ref.pack > MAX_OBJECT_NUMBER) bad(`has pack ${ref.pack}`)
  if (!Number.isSafeInteger(ref.offset)) bad(`has offset ${ref.offset}`)
  if (ref.offset < PACK_HEADER_BYTES) bad(`has offset ${ref.offset} inside the pack header`)
  if (ref.storedLen < 1 || ref.storedLen > MAX_PIECE_STORED_BYTES) bad(`has stored length ${ref.storedLen}`)
  if (ref.id.length !== ID_BYTES) bad(`has an id of ${ref.id.length} bytes`)
  return ref
}

export function writePieceRef(w: ByteWriter, ref: PieceRef): void {
  checkRef(ref, 'encoder')
  w.varint(ref.run).varint(ref.pack).varint(ref.offset).varint(ref.storedLen).bytes(ref.id)
}

export function readPieceRef(r: ByteReader): PieceRef {
  const ref = { run: r.varint(), pack: r.varint(), offset: r.varint(), storedLen: r.varint(), id: Buffer.from(r.bytes(ID_BYTES)) }
  return checkRef(ref, r.what)
}

/** `"RUN.PACK.OFFSET.STOREDLEN:ID"` (JSON form). */
export function pieceRefToString(ref: PieceRef): string {
  checkRef(ref, 'encoder')
  return `${ref.run}.${ref.pack}.${ref.offset}.${ref.storedLen}:${ref.id.toString('hex')}`
}

const REF_RE = /^([1-9]\d{0,15})\.(0|[1-9]\d{0,15})\.([1-9]\d{0,15})\.([1-9]\d{0,15}):([0-9a-f]{64})$/

export function parsePieceRef(s: unknown, what: string): PieceRef {
  const m = typeof s === 'string' ? REF_RE.exec(s) : null
  if (!m) throw new FormatError('BAD_VALUE', `${what}: not a piece reference: ${JSON.stringify(s)?.slice(0, 100)}`)
  const n = (x: string): number => {
    const v = Number(x)
    if (!Number.isSafeInteger(v)) throw new FormatError('BAD_VALUE', `${what}: piece reference number ${x} too large`)
    return v
  }
  return checkRef({ run: n(m[1]!), pack: n(m[2]!), offset: n(m[3]!), storedLen: n(m[4]!), id: Buffer.from(m[5]!, 'hex') }, what)
}

/** Order of R1: (run, pack, offset). */
export function comparePieceRefs(a: PieceRef, b: PieceRef): number {
  return a.run - b.run || a.pack - b.pack || a.offset - b.offset
}

export function samePieceRef(a: PieceRef, b: PieceRef): boolean {
  return a.run === b.run && a.pack === b.pack && a.offset === b.offset && a.storedLen === b.storedLen && a.id.equals(b.id)
}

/** `count` file blocks from `fileBlock`: stream 0 = zeros (BI overlays only), else stream blocks from `streamBlock`. */
export interface Extent {
  fileBlock: number
  count: number
  stream: number
  streamBlock: number
}

export interface ExtentListOptions {
  /** The list's base: 0 for an entry's inline map, the node's base in a map leaf. */
  base?: number
  /** Stream 0 (zeros) allowed: BI overlays only. */
  allowZeros?: boolean
  /** Every extent must end at or before this file block. */
  limit?: number
}

function extentProblem(extents: readonly Extent[], o: ExtentListOptions): string | null {
  let next = o.base ?? 0
  let prev: Extent | undefined
  for (let i = 0; i < extents.length; i++) {
    const e = extents[i]!
    if (!Number.isSafeInteger(e.count) || e.count < 1) return `extent ${i} is empty`
    if (!(e.fileBlock >= next)) return `extent ${i} overlaps or is out of order`
    if (e.stream === 0 ? !o.allowZeros : !(e.stream >= 1)) return `extent ${i} has stream ${e.stream}`
    if (e.stream !== 0 && !(e.streamBlock >= 0)) return `extent ${i} has stream block ${e.streamBlock}`
    if (o.limit !== undefined && e.fileBlock + e.count > o.limit) return `extent ${i} ends beyond block ${o.limit}`
    if (prev && prev.fileBlock + prev.count === e.fileBlock && prev.stream === e.stream && (e.stream === 0 || prev.streamBlock + prev.count === e.streamBlock)) {
      return `extents ${i - 1} and ${i} continue each other (not canonical)`
    }
    next = e.fileBlock + e.count
    prev = e
  }
  return null
}

/** Writes `varint count` and the extents (native-notes/format.md §2.4 "Extent list"). */
export function writeExtentList(w: ByteWriter, extents: readonly Extent[], o: ExtentListOptions = {}): void {
  const p = extentProblem(extents, o)
  if (p) throw new RangeError(`extent list: ${p}`)
  w.varint(extents.length)
  let next = o.base ?? 0
  let lastStream = 0
  for (const e of extents) {
    w.varint(e.fileBlock - next).varint(e.count).varint(e.stream)
    if (e.stream !== 0) {
      w.svarint(e.streamBlock - lastStream)
      lastStream = e.streamBlock + e.count
    }
    next = e.fileBlock + e.count
  }
}

export function readExtentList(r: ByteReader, o: ExtentListOptions = {}, maxCount = Number.MAX_SAFE_INTEGER): Extent[] {
  const n = r.count(3, 'extent')
  if (n > maxCount) throw new FormatError('BAD_VALUE', `${r.what}: ${n} extents, at most ${maxCount} allowed here`)
  const out: Extent[] = new Array(n)
  let next = o.base ?? 0
  let lastStream = 0
  for (let i = 0; i < n; i++) {
    const fileBlock = next + r.varint()
    const count = r.varint()
    const stream = r.varint()
    let streamBlock = 0
    if (stream !== 0) {
      streamBlock = lastStream + r.svarint()
      lastStream = streamBlock + count
    }
    if (!Number.isSafeInteger(fileBlock + count)) throw new FormatError('BAD_VALUE', `${r.what}: extent ${i} runs past 2^53`)
    out[i] = { fileBlock, count, stream, streamBlock }
    next = fileBlock + count
  }
  const p = extentProblem(out, o)
  if (p) throw new FormatError('BAD_VALUE', `${r.what}: ${p}`)
  return out
}

/** Data blocks of an extent list (zero extents do not count). */
export function extentDataBlocks(extents: readonly Extent[]): number {
  let n = 0
  for (const e of extents) if (e.stream !== 0) n += e.count
  return n
}

/**
 * The canonical form of a sorted, non-overlapping list: neighbours that continue each other
 * merged, empty extents dropped (writers call this before encoding).
 */
export function canonicalExtents(extents: readonly Extent[]): Extent[] {
  const out: Extent[] = []
  for (const e of extents) {
    if (e.count <= 0) continue
    const last = out[out.length - 1]
    if (last && last.fileBlock + last.count === e.fileBlock && last.stream === e.stream && (e.stream === 0 || last.streamBlock + last.count === e.streamBlock)) {
      last.count += e.count
    } else out.push({ ...e, streamBlock: e.stream === 0 ? 0 : e.streamBlock })
  }
  return out
}

/**
 * The reader format 2 decoders use: as ByteReader, but a varint must be in its shortest form
 * (no trailing 0x80 … 0x00 padding), so every value has exactly one encoding and a decoder
 * accepts only what its encoder writes.
 */
export class StrictReader extends ByteReader {
  override varint(): number {
    const start = this.pos
    const v = super.varint()
    if (this.pos - start > 1 && this.buf[this.pos - 1] === 0) throw new FormatError('BAD_VALUE', `${this.what}: varint at byte ${start} is not in its shortest form`)
    return v
  }
}

/** A piece payload's writer, its two-byte header (kind, kindVersion) already written. */
export function pieceWriter(kind: PieceKind, initialBytes = 1024): ByteWriter {
  return new ByteWriter(initialBytes).u8(kind).u8(PIECE_KIND_VERSION)
}

/** Finishes a piece payload, checking the size limit. */
export function finishPiece(w: ByteWriter): Buffer {
  if (w.length > MAX_PIECE_RAW_BYTES) throw new RangeError(`piece of ${w.length} bytes is over the ${MAX_PIECE_RAW_BYTES}-byte limit: page it`)
  return w.finish()
}

/** The kind of a raw piece payload (checks the header and the size limit). */
export function pieceKind(payload: Buffer, what: string): PieceKind {
  if (payload.length > MAX_PIECE_RAW_BYTES) throw new FormatError('BAD_VALUE', `${what}: piece of ${payload.length} bytes is over the limit`)
  if (payload.length < 2) throw new FormatError('TRUNCATED', `${what}: ${payload.length} bytes, too short for a piece`)
  const kind = payload[0]!
  if (!PIECE_KIND_NAMES[kind]) throw new FormatError('BAD_VALUE', `${what}: unknown piece kind ${kind}`)
  if (payload[1] !== PIECE_KIND_VERSION) throw new FormatError('BAD_VERSION', `${what}: ${PIECE_KIND_NAMES[kind]} piece version ${payload[1]} is not supported (this bfs reads ${PIECE_KIND_VERSION})`)
  return kind as PieceKind
}

/** A reader over a piece's body after checking its header is `kind`. */
export function pieceReader(payload: Buffer, kind: PieceKind, what: string): ByteReader {
  const k = pieceKind(payload, what)
  if (k !== kind) throw new FormatError('BAD_VALUE', `${what}: is a ${PIECE_KIND_NAMES[k]} piece, expected ${PIECE_KIND_NAMES[kind]}`)
  return new StrictReader(payload, what, 2)
}

export function expectEnd(r: ByteReader): void {
  if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${r.what}: ${r.remaining} bytes after the end`)
}

/** Checks a raw payload against the id a PieceRef promises. */
export function checkPieceId(payload: Buffer, ref: PieceRef, idFn: IdFn, what: string): void {
  if (!idFn(payload).equals(ref.id)) throw new FormatError('BAD_CHECKSUM', `${what}: piece id mismatch (the piece is corrupt or not the one referenced)`)
}

/** A source identity (srcDev, srcInoHi, srcInoLo), compared in that order. */
export interface Identity {
  srcDev: number
  srcInoHi: number
  srcInoLo: number
}

export function compareIdentity(a: Identity, b: Identity): number {
  return a.srcDev - b.srcDev || a.srcInoHi - b.srcInoHi || a.srcInoLo - b.srcInoLo
}

/** 24 bytes: the identity as 3 × u64 LE (input of the identity-table page cut hash). */
export function identityBytes(x: Identity): Buffer {
  const b = Buffer.alloc(24)
  b.writeBigUInt64LE(BigInt(x.srcDev), 0)
  b.writeBigUInt64LE(BigInt(x.srcInoHi), 8)
  b.writeBigUInt64LE(BigInt(x.srcInoLo), 16)
  return b
}
