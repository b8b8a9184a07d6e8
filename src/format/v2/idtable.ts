import { type ByteReader, type ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'
import {
  type Extent,
  type Identity,
  type PieceRef,
  type Xxh64Fn,
  PieceKind,
  compareIdentity,
  expectEnd,
  finishPiece,
  identityBytes,
  pieceReader,
  pieceWriter,
  readExtentList,
  readPieceRef,
  writeExtentList,
  writePieceRef,
} from './common.js'
import { INDEX_CUT_MASK, INDEX_MAX_CHILDREN, INDEX_MAX_LEVEL, INDEX_MIN_CHILDREN } from './dir.js'

/**
 * Identity tables (IDPAGE, IDINDEX): sorted by source identity, paged like directories. Kind
 * 1 is the links table, kind 2 the BI overlay index (issue 14). native-notes/format.md §2.15.
 */

export const TableKind = { Links: 1, BiOverlay: 2 } as const
export type TableKind = (typeof TableKind)[keyof typeof TableKind]

export const IDPAGE_MAX_ROWS = 4096
export const IDPAGE_MIN_ROWS = 256
export const IDPAGE_CUT_MASK = 1023n

export interface LinkRow extends Identity {
  /** Index into the manifest's `sources`. */
  source: number
  /** The group's inode ord in that source. */
  ord: number
  /** Entries of the generation with this identity, ≥ 1. */
  nlinkInGen: number
}

// BI overlay row flags (§2.15)
export const BI_INLINE = 1
export const BI_MAP_REF = 2
export const BI_CREATED_AFTER_T0 = 4
export const BI_RECAPTURED = 8

export interface BiOverlayRow extends Identity {
  igen: number
  t0Size: number
  t0MtimeSec: number
  t0MtimeNsec: number
  t0CtimeSec: number
  t0CtimeNsec: number
  /** BI_CREATED_AFTER_T0, BI_RECAPTURED (the inline/ref bits follow from `overlay`). */
  flags: number
  /** Overlay extents (stream 0 punches zeros), inline or as a map tree; null = none. */
  overlay: { kind: 'inline'; extents: Extent[] } | { kind: 'ref'; root: PieceRef } | null
}

export type IdRow = LinkRow | BiOverlayRow

export interface IdPage {
  tableKind: TableKind
  /** Identities strictly increasing, at least one. */
  rows: IdRow[]
}

export interface IdIndexChild extends Identity {
  ref: PieceRef
  rows: number
}

export interface IdIndex {
  tableKind: TableKind
  level: number
  totalRows: number
  /** Identities strictly increasing; the first is (0, 0, 0). */
  children: IdIndexChild[]
}

function writeIdentity(w: ByteWriter, x: Identity): void {
  w.varint(x.srcDev).varint(x.srcInoHi).varint(x.srcInoLo)
}

function readIdentity(r: ByteReader): Identity {
  return { srcDev: r.varint(), srcInoHi: r.varint(), srcInoLo: r.varint() }
}

function writeRow(w: ByteWriter, kind: TableKind, row: IdRow): void {
  writeIdentity(w, row)
  if (kind === TableKind.Links) {
    const l = row as LinkRow
    if (l.nlinkInGen < 1 || l.ord < 1) throw new RangeError('a links row has an ord ≥ 1 and counts at least one entry')
    w.varint(l.source).varint(l.ord).varint(l.nlinkInGen)
    return
  }
  const b = row as BiOverlayRow
  if (b.flags & ~(BI_CREATED_AFTER_T0 | BI_RECAPTURED)) throw new RangeError('BI overlay row flags: only BI_CREATED_AFTER_T0 and BI_RECAPTURED are set by hand')
  const flags = b.flags | (b.overlay?.kind === 'inline' ? BI_INLINE : b.overlay ? BI_MAP_REF : 0)
  w.varint(b.igen).varint(b.t0Size).svarint(b.t0MtimeSec).varint(b.t0MtimeNsec).svarint(b.t0CtimeSec).varint(b.t0CtimeNsec).varint(flags)
  if (b.overlay?.kind === 'inline') writeExtentList(w, b.overlay.extents, { allowZeros: true })
  else if (b.overlay) writePieceRef(w, b.overlay.root)
}

function readRow(r: ByteReader, kind: TableKind): IdRow {
  const id = readIdentity(r)
  if (kind === TableKind.Links) {
    const row: LinkRow = { ...id, source: r.varint(), ord: r.varint(), nlinkInGen: r.varint() }
    if (row.nlinkInGen < 1 || row.ord < 1) throw new FormatError('BAD_VALUE', `${r.what}: links row with ord ${row.ord} and ${row.nlinkInGen} links`)
    return row
  }
  const row: BiOverlayRow = { ...id, igen: r.varint(), t0Size: r.varint(), t0MtimeSec: r.svarint(), t0MtimeNsec: r.varint(), t0CtimeSec: r.svarint(), t0CtimeNsec: r.varint(), flags: r.varint(), overlay: null }
  if (row.flags & ~15 || (row.flags & 3) === 3) throw new FormatError('BAD_VALUE', `${r.what}: BI overlay row with flags 0x${row.flags.toString(16)}`)
  if (row.t0MtimeNsec > 999_999_999 || row.t0CtimeNsec > 999_999_999) throw new FormatError('BAD_VALUE', `${r.what}: BI overlay row with nanoseconds over 999,999,999`)
  if (row.flags & BI_INLINE) row.overlay = { kind: 'inline', extents: readExtentList(r, { allowZeros: true }) }
  else if (row.flags & BI_MAP_REF) row.overlay = { kind: 'ref', root: readPieceRef(r) }
  row.flags &= BI_CREATED_AFTER_T0 | BI_RECAPTURED
  return row
}

function checkKind(k: number, what: string, asFormat: boolean): TableKind {
  if (k !== TableKind.Links && k !== TableKind.BiOverlay) {
    if (asFormat) throw new FormatError('BAD_VALUE', `${what}: unknown identity table kind ${k}`)
    throw new RangeError(`unknown identity table kind ${k}`)
  }
  return k
}

export function encodeIdPage(p: IdPage): Buffer {
  checkKind(p.tableKind, 'IDPAGE', false)
  if (p.rows.length === 0) throw new RangeError('an IDPAGE has at least one row')
  const w = pieceWriter(PieceKind.IdPage, 64 + p.rows.length * 16)
  w.varint(p.tableKind).varint(p.rows.length)
  for (let i = 0; i < p.rows.length; i++) {
    if (i > 0 && compareIdentity(p.rows[i - 1]!, p.rows[i]!) >= 0) throw new RangeError(`IDPAGE identities are not strictly increasing at row ${i}`)
    writeRow(w, p.tableKind, p.rows[i]!)
  }
  return finishPiece(w)
}

export function decodeIdPage(payload: Buffer, what: string): IdPage {
  const r = pieceReader(payload, PieceKind.IdPage, what)
  const tableKind = checkKind(r.varint(), what, true)
  const n = r.count(6, 'row')
  if (n === 0) throw new FormatError('BAD_VALUE', `${what}: IDPAGE with no rows`)
  const rows: IdRow[] = new Array(n)
  for (let i = 0; i < n; i++) {
    rows[i] = readRow(r, tableKind)
    if (i > 0 && compareIdentity(rows[i - 1]!, rows[i]!) >= 0) throw new FormatError('BAD_VALUE', `${what}: IDPAGE identities are not strictly increasing at row ${i}`)
  }
  expectEnd(r)
  return { tableKind, rows }
}

function indexProblem(x: IdIndex): string | null {
  if (!(x.level >= 0 && x.level <= INDEX_MAX_LEVEL)) return `has level ${x.level}`
  if (x.children.length < 1 || x.children.length > INDEX_MAX_CHILDREN) return `has ${x.children.length} children`
  let sum = 0
  for (let i = 0; i < x.children.length; i++) {
    const c = x.children[i]!
    if (c.rows < 1) return `child ${i} has no rows`
    if (i === 0 && (c.srcDev || c.srcInoHi || c.srcInoLo)) return 'first child is not (0, 0, 0)'
    if (i > 0 && compareIdentity(x.children[i - 1]!, c) >= 0) return `identities are not strictly increasing at child ${i}`
    sum += c.rows
  }
  if (sum !== x.totalRows) return `says ${x.totalRows} rows, its children hold ${sum}`
  return null
}

export function encodeIdIndex(x: IdIndex): Buffer {
  checkKind(x.tableKind, 'IDINDEX', false)
  const p = indexProblem(x)
  if (p) throw new RangeError(`IDINDEX ${p}`)
  const w = pieceWriter(PieceKind.IdIndex, 64 + x.children.length * 56)
  w.varint(x.tableKind).varint(x.level).varint(x.totalRows).varint(x.children.length)
  for (const c of x.children) {
    writeIdentity(w, c)
    writePieceRef(w, c.ref)
    w.varint(c.rows)
  }
  return finishPiece(w)
}

export function decodeIdIndex(payload: Buffer, what: string): IdIndex {
  const r = pieceReader(payload, PieceKind.IdIndex, what)
  const tableKind = checkKind(r.varint(), what, true)
  const level = r.varint()
  const totalRows = r.varint()
  const n = r.count(40, 'child')
  const children: IdIndexChild[] = new Array(n)
  for (let i = 0; i < n; i++) children[i] = { ...readIdentity(r), ref: readPieceRef(r), rows: r.varint() }
  expectEnd(r)
  const x = { tableKind, level, totalRows, children }
  const p = indexProblem(x)
  if (p) throw new FormatError('BAD_VALUE', `${what}: IDINDEX ${p}`)
  return x
}

/** Index of the row with identity `x` (binary search), or −1. */
export function findRow(rows: readonly IdRow[], x: Identity): number {
  let lo = 0
  let hi = rows.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const c = compareIdentity(rows[mid]!, x)
    if (c === 0) return mid
    if (c < 0) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/** The child of an IDINDEX that holds identity `x`: the last whose identity ≤ x. */
export function findIdChild(children: readonly IdIndexChild[], x: Identity): number {
  let lo = 0
  let hi = children.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if (compareIdentity(children[mid]!, x) <= 0) lo = mid
    else hi = mid - 1
  }
  return lo
}

/**
 * Cuts a table's sorted rows into pages (only when it has more than 4,096): after row r when
 * the page holds ≥ 256 rows and XXH64(seed, identity as 3 × u64 LE) & 1023 == 0, or at 4,096.
 */
export function cutIdPages<T extends Identity>(rows: readonly T[], xxh64: Xxh64Fn): T[][] {
  const pages: T[][] = []
  let page: T[] = []
  for (const row of rows) {
    page.push(row)
    if ((page.length >= IDPAGE_MIN_ROWS && (xxh64(identityBytes(row)) & IDPAGE_CUT_MASK) === 0n) || page.length >= IDPAGE_MAX_ROWS) {
      pages.push(page)
      page = []
    }
  }
  if (page.length) pages.push(page)
  return pages
}

/** Groups IDINDEX children into nodes of the next level (≥ 64 children and a cut hash, or 4,096). */
export function groupIdChildren<T extends Identity>(children: readonly T[], xxh64: Xxh64Fn): T[][] {
  const groups: T[][] = []
  let g: T[] = []
  for (const c of children) {
    g.push(c)
    if ((g.length >= INDEX_MIN_CHILDREN && (xxh64(identityBytes(c)) & INDEX_CUT_MASK) === 0n) || g.length >= INDEX_MAX_CHILDREN) {
      groups.push(g)
      g = []
    }
  }
  if (g.length) groups.push(g)
  return groups
}
