import { overlayExtents, type Extent, type MapObject } from '../format/maps.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import { BfsError } from './errors.js'

/** Where to find a generation's block-map objects (the Repository, or a test double over plain arrays). */
export interface MapSource {
  mapObject(gen: number, index: number): MapObject | undefined
  /**
   * The before-image extents generation `gen`'s BI log lays over its object `index`
   * (native-notes/format.md §"Before-image log"), or undefined; absent: no BI logs.
   */
  biOverlay?(gen: number, index: number): Extent[] | undefined
  /** A full map's data blocks counted without decoding it (MapsIndex.fullDataBlocks); -1: decode it. */
  fullDataBlocks?(gen: number, index: number): number
}

/** A MapSource over plain arrays of objects per generation. */
export function arrayMaps(maps: (gen: number) => MapObject[]): MapSource {
  return { mapObject: (gen, index) => maps(gen)[index] }
}

/**
 * Resolves block-map objects through their delta chains (newest wins per block) into full
 * extent lists with no holes listed, memoized: each object is resolved once, so a read
 * never walks the chain. Depth is bounded by MAX_DELTA_DEPTH at write time. With
 * `memoLimit` (the mount) the memo is forgotten whenever it grows past that many objects.
 */
export class ObjectResolver {
  private memo = new Map<string, Extent[]>()
  constructor(
    private readonly src: MapSource,
    private readonly memoLimit = Infinity,
  ) {}

  object(gen: number, index: number): MapObject {
    const o = this.src.mapObject(gen, index)
    if (!o) throw new BfsError('CORRUPT', `gen${gen}: block-map object ${index} does not exist`)
    return o
  }

  /**
   * Data (non-hole) blocks of an object. A full map is counted directly, without resolving
   * or memoizing it: a directory listing asks this of every file (st_blocks), and
   * resolving them all churned the memo the reads depend on.
   */
  dataBlocks(gen: number, index: number): number {
    if (this.src.fullDataBlocks && !this.src.biOverlay?.(gen, index)) {
      const n = this.src.fullDataBlocks(gen, index)
      if (n >= 0) return n
    }
    const hit = this.memo.get(`${gen}:${index}`)
    if (hit) return dataBlocks(hit)
    const o = this.object(gen, index)
    if (o.baseGen !== 0 || this.src.biOverlay?.(gen, index)) return dataBlocks(this.resolve(gen, index))
    const blocks = Math.ceil(o.sizeBytes / BLOCK_BYTES)
    let n = 0
    for (const e of o.extents) if (e.gen !== 0 && e.fileBlock < blocks) n += Math.min(e.count, blocks - e.fileBlock)
    return n
  }

  resolve(gen: number, index: number): Extent[] {
    const key = `${gen}:${index}`
    const hit = this.memo.get(key)
    if (hit) return hit
    const o = this.object(gen, index)
    const blocks = Math.ceil(o.sizeBytes / BLOCK_BYTES)
    let out: Extent[]
    if (o.baseGen === 0) out = overlayExtents([], o.extents, blocks)
    else {
      if (o.baseGen >= gen) throw new BfsError('CORRUPT', `gen${gen}: object ${index} has base in a later generation ${o.baseGen}`)
      out = overlayExtents(this.resolve(o.baseGen, o.baseIndex), o.extents, blocks)
    }
    // an --online generation's before-images: the blocks changed after T0 before bfs read them
    const bi = this.src.biOverlay?.(gen, index)
    if (bi) out = overlayExtents(out, bi, blocks)
    if (this.memo.size >= this.memoLimit) this.memo = new Map()
    this.memo.set(key, out)
    return out
  }
}

/** Index of the first extent that ends after file block `fileBlock` (extents.length if none): where a read at that block starts. */
export function firstExtentEndingAfter(extents: Extent[], fileBlock: number): number {
  let lo = 0
  let hi = extents.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (extents[mid]!.fileBlock + extents[mid]!.count <= fileBlock) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Number of data (non-hole) blocks in resolved extents. */
export function dataBlocks(extents: Extent[]): number {
  let n = 0
  for (const e of extents) n += e.count
  return n
}
