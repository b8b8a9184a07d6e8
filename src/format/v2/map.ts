import { ByteWriter } from '../bytes.js'
import { FormatError } from '../errors.js'
import {
  type Extent,
  type PieceRef,
  BLOCK_BYTES,
  PieceKind,
  canonicalExtents,
  expectEnd,
  extentDataBlocks,
  finishPiece,
  pieceReader,
  pieceWriter,
  readExtentList,
  readPieceRef,
  writeExtentList,
  writePieceRef,
} from './common.js'
import { type FileMap, fitsInline } from './dir.js'

/**
 * Map pieces: a file's block map as a radix tree of fanout 256 (MAPLEAF, MAPINNER), built
 * deterministically from its extent list so that equal regions give equal pieces.
 * native-notes/format.md §2.14.
 */

/** Node shifts: a node covers 2^shift file blocks. */
export const MAP_SHIFTS = [12, 20, 28, 36, 44] as const
export const MAP_LEAF_SHIFT = 12
export const MAP_ROOT_MIN_SHIFT = 20
export const MAP_MAX_SHIFT = 44
export const LEAF_MAX_EXTENTS = 1024
export const LEAF_MAX_BYTES = 16 * 1024
export const FANOUT = 256

export interface MapLeaf {
  shift: number
  base: number
  /** Inside [base, base + 2^shift), canonical, data only (stream ≥ 1), at least one. */
  extents: Extent[]
}

export interface MapInnerChild {
  /** 0 … 255: the child covers [base + slot·2^(shift−8), base + (slot+1)·2^(shift−8)). */
  slot: number
  ref: PieceRef
  /** ≥ 1: data blocks under the child. */
  dataBlocks: number
}

export interface MapInner {
  shift: number
  base: number
  /** Present children in slot order (absent slots are holes), at least one. */
  children: MapInnerChild[]
}

const span = (shift: number): number => 2 ** shift

/** The root node's shift for a file of `sizeBytes`: the smallest of 20 … 44 that covers it. */
export function rootShift(sizeBytes: number): number {
  const blocks = Math.ceil(sizeBytes / BLOCK_BYTES)
  for (const s of MAP_SHIFTS) if (s >= MAP_ROOT_MIN_SHIFT && span(s) >= blocks) return s
  throw new RangeError(`a file of ${sizeBytes} bytes is too large for a map`)
}

function nodeProblem(shift: number, base: number, inner: boolean): string | null {
  if (!(MAP_SHIFTS as readonly number[]).includes(shift) || (inner && shift === MAP_LEAF_SHIFT)) return `has shift ${shift}`
  if (!Number.isSafeInteger(base) || base < 0 || base % span(shift) !== 0) return `has base ${base}, not a multiple of 2^${shift}`
  return null
}

/** Extents cut to [lo, hi). */
export function clipExtents(extents: readonly Extent[], lo: number, hi: number): Extent[] {
  const out: Extent[] = []
  for (const e of extents) {
    const s = Math.max(e.fileBlock, lo)
    const t = Math.min(e.fileBlock + e.count, hi)
    if (t > s) out.push({ fileBlock: s, count: t - s, stream: e.stream, streamBlock: e.stream === 0 ? 0 : e.streamBlock + (s - e.fileBlock) })
  }
  return out
}

function leafListBytes(extents: readonly Extent[], base: number): number {
  const w = new ByteWriter(256)
  writeExtentList(w, extents, { base })
  return w.length
}

/** Whether a node with these (clipped) extents is a leaf: ≤ 1,024 extents in ≤ 16 KiB, or shift 12. */
export function isLeafNode(extents: readonly Extent[], shift: number, base: number): boolean {
  return shift === MAP_LEAF_SHIFT || (extents.length <= LEAF_MAX_EXTENTS && leafListBytes(extents, base) <= LEAF_MAX_BYTES)
}

export function encodeMapLeaf(n: MapLeaf): Buffer {
  const p = nodeProblem(n.shift, n.base, false)
  if (p) throw new RangeError(`MAPLEAF ${p}`)
  if (n.extents.length === 0) throw new RangeError('MAPLEAF with no extents')
  const w = pieceWriter(PieceKind.MapLeaf, 64 + n.extents.length * 8)
  w.varint(n.shift).varint(n.base)
  writeExtentList(w, n.extents, { base: n.base, limit: n.base + span(n.shift) })
  return finishPiece(w)
}

export function decodeMapLeaf(payload: Buffer, what: string): MapLeaf {
  const r = pieceReader(payload, PieceKind.MapLeaf, what)
  const shift = r.varint()
  const base = r.varint()
  const p = nodeProblem(shift, base, false)
  if (p) throw new FormatError('BAD_VALUE', `${what}: MAPLEAF ${p}`)
  const extents = readExtentList(r, { base, limit: base + span(shift) })
  if (extents.length === 0) throw new FormatError('BAD_VALUE', `${what}: MAPLEAF with no extents`)
  expectEnd(r)
  return { shift, base, extents }
}

export function encodeMapInner(n: MapInner): Buffer {
  const p = nodeProblem(n.shift, n.base, true)
  if (p) throw new RangeError(`MAPINNER ${p}`)
  if (n.children.length === 0) throw new RangeError('MAPINNER with no children')
  const bitmap = Buffer.alloc(32)
  let last = -1
  for (const c of n.children) {
    if (!(c.slot > last && c.slot < FANOUT)) throw new RangeError('MAPINNER children must be in slot order, 0 … 255')
    if (!(c.dataBlocks >= 1 && c.dataBlocks <= span(n.shift - 8))) throw new RangeError(`MAPINNER child ${c.slot} has ${c.dataBlocks} data blocks`)
    bitmap[c.slot >> 3]! |= 1 << (c.slot & 7)
    last = c.slot
  }
  const w = pieceWriter(PieceKind.MapInner, 64 + n.children.length * 48)
  w.varint(n.shift).varint(n.base).bytes(bitmap)
  for (const c of n.children) {
    writePieceRef(w, c.ref)
    w.varint(c.dataBlocks)
  }
  return finishPiece(w)
}

export function decodeMapInner(payload: Buffer, what: string): MapInner {
  const r = pieceReader(payload, PieceKind.MapInner, what)
  const shift = r.varint()
  const base = r.varint()
  const p = nodeProblem(shift, base, true)
  if (p) throw new FormatError('BAD_VALUE', `${what}: MAPINNER ${p}`)
  const bitmap = r.bytes(32)
  const children: MapInnerChild[] = []
  for (let slot = 0; slot < FANOUT; slot++) {
    if (!(bitmap[slot >> 3]! & (1 << (slot & 7)))) continue
    const ref = readPieceRef(r)
    const dataBlocks = r.varint()
    if (!(dataBlocks >= 1 && dataBlocks <= span(shift - 8))) throw new FormatError('BAD_VALUE', `${what}: MAPINNER child ${slot} has ${dataBlocks} data blocks`)
    children.push({ slot, ref, dataBlocks })
  }
  if (children.length === 0) throw new FormatError('BAD_VALUE', `${what}: MAPINNER with no children`)
  expectEnd(r)
  return { shift, base, children }
}

/** Data blocks under an inner node. */
export function innerDataBlocks(n: MapInner): number {
  return n.children.reduce((s, c) => s + c.dataBlocks, 0)
}

/**
 * A reader's check that a node read through a parent (or as the root) is the one its place
 * implies: `shift` and `base` as expected, and its data blocks as the parent said.
 */
export function expectMapNode(node: MapLeaf | MapInner, shift: number, base: number, dataBlocks: number, what: string): void {
  const got = 'extents' in node ? extentDataBlocks(node.extents) : innerDataBlocks(node)
  if (node.shift !== shift || node.base !== base) throw new FormatError('BAD_VALUE', `${what}: map node covers 2^${node.shift} blocks from ${node.base}, its place says 2^${shift} from ${base}`)
  if (got !== dataBlocks) throw new FormatError('BAD_VALUE', `${what}: map node holds ${got} data blocks, its parent says ${dataBlocks}`)
}

/** The child slot of an inner node that covers file block `block`. */
export function mapChildSlot(node: MapInner, block: number): number {
  return Math.floor((block - node.base) / span(node.shift - 8))
}

/** Index of the extent of `extents` (sorted) that holds file block `block`, or −1 (a hole). */
export function findExtent(extents: readonly Extent[], block: number): number {
  let lo = 0
  let hi = extents.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const e = extents[mid]!
    if (block < e.fileBlock) hi = mid - 1
    else if (block >= e.fileBlock + e.count) lo = mid + 1
    else return mid
  }
  return -1
}

/**
 * A file's map in its stored form: null (no data), inline, or a tree whose pieces are handed
 * to `put` children first (R1), which appends each payload to the current pack and returns
 * its PieceRef. `extents`: sorted, data only; made canonical here; clipped to the size.
 */
export function buildMap(extents: readonly Extent[], sizeBytes: number, put: (payload: Buffer, kind: PieceKind) => PieceRef): FileMap | null {
  const limit = Math.ceil(sizeBytes / BLOCK_BYTES)
  const list = canonicalExtents(clipExtents(extents, 0, limit))
  if (list.some((e) => e.stream === 0)) throw new RangeError('a file map holds no zero extents (gaps are holes)')
  if (list.length === 0) return null
  if (fitsInline(list)) return { kind: 'inline', extents: list }
  const node = (shift: number, base: number, ext: readonly Extent[]): PieceRef => {
    if (isLeafNode(ext, shift, base)) return put(encodeMapLeaf({ shift, base, extents: [...ext] }), PieceKind.MapLeaf)
    const childSpan = span(shift - 8)
    // each extent's part in each slot it touches (an extent crossing a slot edge is split)
    const bySlot = new Map<number, Extent[]>()
    for (const e of ext) {
      const first = Math.floor((e.fileBlock - base) / childSpan)
      const last = Math.floor((e.fileBlock + e.count - 1 - base) / childSpan)
      for (let slot = first; slot <= last; slot++) {
        const lo = base + slot * childSpan
        let parts = bySlot.get(slot)
        if (!parts) bySlot.set(slot, (parts = []))
        parts.push(...clipExtents([e], lo, lo + childSpan))
      }
    }
    const children: MapInnerChild[] = []
    for (const [slot, parts] of bySlot) children.push({ slot, ref: node(shift - 8, base + slot * childSpan, parts), dataBlocks: extentDataBlocks(parts) })
    return put(encodeMapInner({ shift, base, children }), PieceKind.MapInner)
  }
  return { kind: 'ref', root: node(rootShift(sizeBytes), 0, list), extentCount: list.length }
}

/**
 * The canonical extent list of a file's map, reading the tree through `load` (which returns
 * a piece's raw payload, id already checked). Checks every node's place and data blocks,
 * and the total against the entry's `dataBlocks`.
 */
export function readMap(map: FileMap | null, sizeBytes: number, dataBlocks: number, load: (ref: PieceRef) => Buffer, what: string): Extent[] {
  if (!map) return []
  if (map.kind === 'inline') return map.extents
  const out: Extent[] = []
  const visit = (ref: PieceRef, shift: number, base: number, blocks: number): void => {
    const payload = load(ref)
    const kind = payload[0]
    if (kind === PieceKind.MapLeaf) {
      const leaf = decodeMapLeaf(payload, what)
      expectMapNode(leaf, shift, base, blocks, what)
      out.push(...leaf.extents)
    } else {
      const inner = decodeMapInner(payload, what)
      expectMapNode(inner, shift, base, blocks, what)
      for (const c of inner.children) visit(c.ref, shift - 8, base + c.slot * span(shift - 8), c.dataBlocks)
    }
  }
  visit(map.root, rootShift(sizeBytes), 0, dataBlocks)
  const list = canonicalExtents(out)
  if (list.length !== map.extentCount) throw new FormatError('BAD_VALUE', `${what}: map has ${list.length} extents, the entry says ${map.extentCount}`)
  const last = list[list.length - 1]
  if (last && last.fileBlock + last.count > Math.ceil(sizeBytes / BLOCK_BYTES)) throw new FormatError('BAD_VALUE', `${what}: map runs beyond the file's size`)
  return list
}
