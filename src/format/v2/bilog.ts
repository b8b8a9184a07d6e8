import type { ByteReader } from '../bytes.js'
import { FormatError } from '../errors.js'
import {
  type Extent,
  type PieceRef,
  BLOCK_BYTES,
  PieceKind,
  expectEnd,
  finishPiece,
  pieceReader,
  pieceWriter,
  readExtentList,
  readPieceRef,
  writeExtentList,
  writePieceRef,
} from './common.js'

/**
 * A format 2 generation's BI log (native-notes/format.md §2.16, issue 14): BILOG pages of
 * self-describing records in interception order, listed by one BILIST (the manifest's
 * `biLog`). Pure: buffers in, objects out.
 */

/** Record kinds of a BILOG page (§2.16). */
export const Bi2Kind = { firstSight: 0, image: 1, truncate: 2, uncovered: 3 } as const

export interface Bi2Record {
  seq: number
  kind: number
  srcDev: number
  srcInoHi: number
  srcInoLo: number
  igen: number
  /** Bytes; kind 1 a multiple of 4096. */
  offset: number
  /** Kind 1: bytes of the image as captured (1 … 1 MiB); else 0. */
  length: number
  /** The file's size at T0. */
  oldSize: number
  mtimeSec: number
  mtimeNsec: number
  ctimeSec: number
  ctimeNsec: number
  /** XXH64 (repository seed) of the image bytes as captured, 8 bytes LE. */
  check: Buffer
  /** Kind 1: the image's blocks, from file block offset / 4096 (stream 0: all zeros); else []. */
  data: Extent[]
  /** Kind 3: why the file is not covered; else 0. */
  reason: number
}

export interface BiLogPage {
  firstSeq: number
  records: Bi2Record[]
}

export interface BiList {
  pages: PieceRef[]
  totalRecords: number
}

/** A writer cuts a BILOG page once it holds this many bytes (any cut is valid: readers do not depend on it). */
export const BILOG_PAGE_BYTES = 64 << 10

const NS_MAX = 999_999_999

function recordProblem(r: Bi2Record): string | null {
  if (r.kind < 0 || r.kind > 3) return `kind ${r.kind}`
  if (r.mtimeNsec > NS_MAX || r.ctimeNsec > NS_MAX || r.mtimeNsec < 0 || r.ctimeNsec < 0) return 'nanoseconds over 999,999,999'
  if (r.check.length !== 8) return 'a check that is not 8 bytes'
  if (r.kind === Bi2Kind.image) {
    if (r.offset % BLOCK_BYTES !== 0) return `an image at offset ${r.offset}, not a multiple of 4096`
    if (r.length < 1 || r.length > 1 << 20) return `an image of ${r.length} bytes`
    const first = r.offset / BLOCK_BYTES
    const end = first + Math.ceil(r.length / BLOCK_BYTES)
    let covered = 0
    let next = first
    for (const x of r.data) {
      if (x.fileBlock !== next) return 'image extents that do not cover the image'
      next += x.count
      covered += x.count
    }
    if (next !== end || covered !== end - first) return 'image extents that do not cover the image'
  } else if (r.length !== 0 || r.data.length) return `a kind ${r.kind} record with data`
  if (r.kind !== Bi2Kind.uncovered && r.reason !== 0) return `a kind ${r.kind} record with a reason`
  return null
}

export function encodeBiLogPage(p: BiLogPage): Buffer {
  if (p.records.length === 0) throw new RangeError('a BILOG page holds at least one record')
  const w = pieceWriter(PieceKind.BiLog, 256 + p.records.length * 64)
  w.varint(p.firstSeq).varint(p.records.length)
  let prev = p.firstSeq
  for (let i = 0; i < p.records.length; i++) {
    const r = p.records[i]!
    const problem = recordProblem(r)
    if (problem) throw new RangeError(`BILOG record ${r.seq}: ${problem}`)
    const delta = r.seq - prev
    if (i === 0 ? delta !== 0 : delta < 1) throw new RangeError(`BILOG record ${r.seq}: seq not increasing`)
    prev = r.seq
    w.varint(delta).u8(r.kind).varint(r.srcDev).varint(r.srcInoHi).varint(r.srcInoLo).varint(r.igen).varint(r.offset).varint(r.length).varint(r.oldSize)
    w.svarint(r.mtimeSec).varint(r.mtimeNsec).svarint(r.ctimeSec).varint(r.ctimeNsec).bytes(r.check)
    writeExtentList(w, r.data, { base: r.offset / BLOCK_BYTES, allowZeros: true })
    if (r.kind === Bi2Kind.uncovered) w.varint(r.reason)
  }
  return finishPiece(w)
}

function readRecord(r: ByteReader, seq: number): Bi2Record {
  const kind = r.u8()
  const rec: Bi2Record = {
    seq, kind, srcDev: r.varint(), srcInoHi: r.varint(), srcInoLo: r.varint(), igen: r.varint(), offset: r.varint(), length: r.varint(), oldSize: r.varint(),
    mtimeSec: r.svarint(), mtimeNsec: r.varint(), ctimeSec: r.svarint(), ctimeNsec: r.varint(), check: r.bytes(8), data: [], reason: 0,
  }
  if (kind === Bi2Kind.image && rec.offset % BLOCK_BYTES !== 0) throw new FormatError('BAD_VALUE', `${r.what}: BILOG record ${seq}: an image at offset ${rec.offset}`)
  rec.data = readExtentList(r, { base: Math.floor(rec.offset / BLOCK_BYTES), allowZeros: true })
  if (kind === Bi2Kind.uncovered) rec.reason = r.varint()
  const problem = recordProblem(rec)
  if (problem) throw new FormatError('BAD_VALUE', `${r.what}: BILOG record ${seq}: ${problem}`)
  return rec
}

export function decodeBiLogPage(payload: Buffer, what: string): BiLogPage {
  const r = pieceReader(payload, PieceKind.BiLog, what)
  const firstSeq = r.varint()
  const n = r.count(30, 'record')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: BILOG page with no records`)
  const records: Bi2Record[] = new Array(n)
  let seq = firstSeq
  for (let i = 0; i < n; i++) {
    const d = r.varint()
    if (i > 0 && d < 1) throw new FormatError('BAD_VALUE', `${what}: BILOG record ${i}: seq not increasing`)
    if (i === 0 && d !== 0) throw new FormatError('BAD_VALUE', `${what}: BILOG: the first record's seq is not firstSeq`)
    seq += d
    records[i] = readRecord(r, seq)
  }
  expectEnd(r)
  return { firstSeq, records }
}

export function encodeBiList(l: BiList): Buffer {
  if (l.pages.length === 0) throw new RangeError('a BILIST lists at least one page')
  const w = pieceWriter(PieceKind.BiList, 16 + l.pages.length * 48)
  w.varint(l.pages.length)
  for (const p of l.pages) writePieceRef(w, p)
  w.varint(l.totalRecords)
  return finishPiece(w)
}

export function decodeBiList(payload: Buffer, what: string): BiList {
  const r = pieceReader(payload, PieceKind.BiList, what)
  const n = r.count(36, 'page')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: BILIST with no pages`)
  const pages: PieceRef[] = new Array(n)
  for (let i = 0; i < n; i++) pages[i] = readPieceRef(r)
  const totalRecords = r.varint()
  expectEnd(r)
  return { pages, totalRecords }
}
