import { ByteReader, ByteWriter, rdSetPos, rdVi } from './bytes.js'
import { FormatError } from './errors.js'

/**
 * Block maps of one generation: one object per stored file or volume.
 * See native-notes/format.md §"Block maps".
 */

/** A run of `count` file blocks starting at `fileBlock`. gen 0 = zero/hole; else the data is
 * at stream blocks [streamBlock, streamBlock+count) of generation `gen`. */
export interface Extent {
  fileBlock: number
  count: number
  gen: number
  streamBlock: number
}

export interface MapObject {
  sizeBytes: number
  /** 0 when this is a full map; else the generation holding the base object. */
  baseGen: number
  baseIndex: number
  /** 0 for a full map; base's depth + 1 for a delta. Bounded by MAX_DELTA_DEPTH. */
  depth: number
  /** Sorted, non-overlapping. In a full map, gaps are holes; in a delta, gaps come from the base. */
  extents: Extent[]
}

/** A delta chain never gets longer than this: the writer stores a full map instead. */
export const MAX_DELTA_DEPTH = 16

export function encodeMaps(objects: MapObject[]): Buffer {
  const w = new ByteWriter(64 + objects.length * 16)
  w.varint(objects.length)
  for (const o of objects) {
    w.varint(o.sizeBytes).varint(o.baseGen).varint(o.baseIndex).varint(o.depth)
    writeExtents(w, o.extents)
  }
  return w.finish()
}

/**
 * `varint count`, then each extent as `fileBlockGap, count, gen, streamBlockDelta if gen ≠ 0`
 * (format.md §"Block maps"), the first gap counted from file block `first`.
 */
export function writeExtents(w: ByteWriter, extents: readonly Extent[], first = 0): void {
  w.varint(extents.length)
  let next = first
  let lastStream = 0
  for (const e of extents) {
    if (e.fileBlock < next || e.count <= 0) throw new RangeError('extents must be sorted, non-overlapping and non-empty')
    w.varint(e.fileBlock - next).varint(e.count).varint(e.gen)
    if (e.gen !== 0) {
      w.svarint(e.streamBlock - lastStream)
      lastStream = e.streamBlock + e.count
    }
    next = e.fileBlock + e.count
  }
}

/** Reads object `i` at the reader's position, checking it as it goes. */
function readMapObject(r: ByteReader, i: number, what: string): MapObject
/** `decode` false: only reads and checks it, allocating nothing (MapsIndex's pass over every object). */
function readMapObject(r: ByteReader, i: number, what: string, decode: false): null
function readMapObject(r: ByteReader, i: number, what: string, decode = true): MapObject | null {
  const sizeBytes = r.varint()
  const baseGen = r.varint()
  const baseIndex = r.varint()
  const depth = r.varint()
  if ((baseGen === 0) !== (depth === 0) || depth > MAX_DELTA_DEPTH) throw new FormatError('BAD_VALUE', `${what}: object ${i} has base gen ${baseGen} and depth ${depth}`)
  const count = r.count(3, 'extent')
  const extents: Extent[] = decode ? new Array(count) : []
  let next = 0
  let lastStream = 0
  for (let j = 0; j < count; j++) {
    const fileBlock = next + r.varint()
    const c = r.varint()
    const gen = r.varint()
    let streamBlock = 0
    if (gen !== 0) {
      streamBlock = lastStream + r.svarint()
      if (streamBlock < 0) throw new FormatError('BAD_VALUE', `${what}: object ${i} extent ${j} has a negative stream block`)
      lastStream = streamBlock + c
    }
    if (c <= 0) throw new FormatError('BAD_VALUE', `${what}: object ${i} extent ${j} is empty`)
    if (decode) extents[j] = { fileBlock, count: c, gen, streamBlock }
    next = fileBlock + c
  }
  return decode ? { sizeBytes, baseGen, baseIndex, depth, extents } : null
}

export function decodeMaps(payload: Buffer, what: string): MapObject[] {
  const r = new ByteReader(payload, what)
  const n = r.count(5, 'object')
  const objects: MapObject[] = new Array(n)
  for (let i = 0; i < n; i++) objects[i] = readMapObject(r, i, what)
  if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the last object`)
  return objects
}

/**
 * A generation's block maps kept as their bytes plus the offset of each object, decoding
 * an object when asked (the mount: a file's map is needed when it is opened or stat'ed,
 * and holding 78k decoded maps would cost tens of MB). Every object is checked once,
 * by decoding it, when the index is built.
 */
export class MapsIndex {
  readonly length: number
  private readonly offset: Uint32Array

  constructor(
    private readonly payload: Buffer,
    private readonly what: string,
  ) {
    const r = new ByteReader(payload, what)
    const n = (this.length = r.count(5, 'object'))
    this.offset = new Uint32Array(n)
    for (let i = 0; i < n; i++) {
      this.offset[i] = r.pos
      // checked as object() will decode it, without building it (78k objects and their
      // extents were most of the mount's first `ls` of the Linux tree, with their GC)
      readMapObject(r, i, what, false)
    }
    if (r.remaining !== 0) throw new FormatError('TRAILING_BYTES', `${what}: ${r.remaining} bytes after the last object`)
  }

  /**
   * Object i's data (non-hole) blocks within its size, counted in place when it is a full map
   * (as ObjectResolver.dataBlocks counts a full map's decoded extents); -1 for a delta, or no
   * such object (decode it then). A directory listing asks this of every file (st_blocks).
   */
  fullDataBlocks(i: number, blockBytes: number): number {
    if (!(i >= 0 && i < this.length)) return -1
    const b = this.payload
    rdSetPos(this.offset[i]!) // bytes.ts's cursor: no closure per call (this runs per file)
    const size = rdVi(b)
    if (rdVi(b) !== 0) return -1 // baseGen: a delta
    rdVi(b); rdVi(b) // baseIndex, depth
    const blocks = Math.ceil(size / blockBytes)
    const count = rdVi(b)
    let next = 0
    let n = 0
    for (let j = 0; j < count; j++) {
      const fileBlock = next + rdVi(b)
      const c = rdVi(b)
      const gen = rdVi(b)
      if (gen !== 0) {
        rdVi(b) // stream block delta
        if (fileBlock < blocks) n += Math.min(c, blocks - fileBlock)
      }
      next = fileBlock + c
    }
    return n
  }

  object(i: number): MapObject | undefined {
    if (!(i >= 0 && i < this.length)) return undefined
    return readMapObject(new ByteReader(this.payload, this.what, this.offset[i]), i, this.what)
  }
}

/**
 * Overlays a delta's extents on its base's resolved extents (newer wins per block).
 * Both inputs sorted and non-overlapping; zero extents (gen 0) in the delta punch holes.
 * The result has no gen-0 extents (gaps are holes) and is clipped to `blocks`.
 */
export function overlayExtents(base: Extent[], delta: Extent[], blocks: number): Extent[] {
  const out: Extent[] = []
  const push = (e: Extent): void => {
    if (e.gen === 0 || e.count <= 0 || e.fileBlock >= blocks) return
    const count = Math.min(e.count, blocks - e.fileBlock)
    const last = out[out.length - 1]
    if (last && last.gen === e.gen && last.fileBlock + last.count === e.fileBlock && last.streamBlock + last.count === e.streamBlock) {
      last.count += count
    } else out.push({ fileBlock: e.fileBlock, count, gen: e.gen, streamBlock: e.streamBlock })
  }
  let bi = 0
  let cur = 0 // file block up to which output is decided
  for (const d of delta) {
    // base parts before d.fileBlock
    while (bi < base.length && base[bi]!.fileBlock + base[bi]!.count <= d.fileBlock) {
      const b = base[bi++]!
      const start = Math.max(b.fileBlock, cur)
      const end = b.fileBlock + b.count
      if (end > start) push({ fileBlock: start, count: end - start, gen: b.gen, streamBlock: b.streamBlock + (start - b.fileBlock) })
    }
    if (bi < base.length) {
      const b = base[bi]!
      const start = Math.max(b.fileBlock, cur)
      if (start < d.fileBlock) push({ fileBlock: start, count: d.fileBlock - start, gen: b.gen, streamBlock: b.streamBlock + (start - b.fileBlock) })
    }
    push(d)
    cur = d.fileBlock + d.count
    while (bi < base.length && base[bi]!.fileBlock + base[bi]!.count <= cur) bi++
  }
  for (; bi < base.length; bi++) {
    const b = base[bi]!
    const start = Math.max(b.fileBlock, cur)
    const end = b.fileBlock + b.count
    if (end > start) push({ fileBlock: start, count: end - start, gen: b.gen, streamBlock: b.streamBlock + (start - b.fileBlock) })
  }
  return out
}
