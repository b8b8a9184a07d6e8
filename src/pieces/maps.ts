import { FormatError } from '../format/errors.js'
import { type Extent, type PieceRef, BLOCK_BYTES, PieceKind, canonicalExtents, comparePieceRefs, extentDataBlocks } from '../format/v2/common.js'
import type { Entry2, FileMap } from '../format/v2/dir.js'
import { buildMap, clipExtents, expectMapNode, findExtent, innerDataBlocks, mapChildSlot, rootShift } from '../format/v2/map.js'
import { type BiOverlayRow, TableKind } from '../format/v2/idtable.js'
import { IdTableReader } from './idtables.js'
import type { PackWriter } from './packs.js'
import { type PieceReader, Workarounds, isPieceFailure } from './reader.js'

export interface MapWriterStats {
  /** Maps stored inline in their entry. */
  inline: number
  /** Maps stored as a tree. */
  trees: number
  /** Map pieces written. */
  written: number
  /** Map pieces of the previous map reused (ref copied). */
  reused: number
}

/** A file's map as an entry holds it. */
export interface StoredMap {
  map: FileMap | null
  /** Data blocks (st_blocks = 8 × this). */
  dataBlocks: number
}

/**
 * Writes file maps (format.md §2.13.1, §2.14): ≤ 4 extents in ≤ 48 bytes inline in the entry,
 * else a radix tree of MAPLEAF/MAPINNER pieces appended to the run's packs children first
 * (R1). A node whose id equals a node of the file's previous map is not written again: its
 * PieceRef is reused (the "writer's help" of §2.14), so a block-incremental of a big file
 * rewrites only the leaves it touched and their ancestors. An unchanged file needs no call
 * at all: its entry's map is copied.
 */
export class MapWriter {
  readonly stats: MapWriterStats = { inline: 0, trees: 0, written: 0, reused: 0 }
  /** Nodes of previous maps that could not be read (the new map does not reuse them). */
  readonly unreadable = new Workarounds()

  constructor(
    readonly packs: PackWriter,
    readonly pieces: PieceReader,
  ) {}

  /**
   * The stored map of a file of `sizeBytes` whose data is `extents` (sorted, data only;
   * made canonical and clipped to the size here). `prev`: the file's previous entry, for a
   * block-incremental (its map's nodes are read and reused where equal).
   */
  async write(extents: readonly Extent[], sizeBytes: number, prev?: Pick<Entry2, 'map' | 'size' | 'dataBlocks'> | null): Promise<StoredMap> {
    const known = new Map<string, PieceRef>()
    if (prev?.map?.kind === 'ref') await this.collect(prev.map.root, rootShift(prev.size), known)
    const map = buildMap(extents, sizeBytes, (payload) => {
      const id = this.packs.idOf(payload)
      const old = known.get(id.toString('hex'))
      if (old) {
        this.stats.reused++
        return old
      }
      this.stats.written++
      return this.packs.add(payload, id)
    })
    if (map?.kind === 'inline') this.stats.inline++
    else if (map) this.stats.trees++
    const dataBlocks = map === null ? 0 : extentDataBlocks(clipExtents(extents, 0, Math.ceil(sizeBytes / BLOCK_BYTES)))
    await this.packs.settle()
    return { map, dataBlocks }
  }

  /**
   * Ids → refs of a previous map's nodes, each read and checked (a new generation copies a
   * ref only from a piece it has read: §2.20.10; a block-incremental has read them anyway, so
   * they come from the cache). An unreadable node and what is below it are left out (counted
   * in `unreadable`): the new map writes them afresh.
   */
  private async collect(ref: PieceRef, shift: number, known: Map<string, PieceRef>): Promise<void> {
    let p
    try {
      p = await this.pieces.pieceOf(ref, [PieceKind.MapLeaf, PieceKind.MapInner], 'map node')
    } catch (err) {
      if (!isPieceFailure(err)) throw err
      this.unreadable.note(err)
      return
    }
    known.set(ref.id.toString('hex'), ref)
    if (p.kind !== PieceKind.MapInner || shift <= 12) return
    for (const c of p.inner.children) await this.collect(c.ref, shift - 8, known)
  }
}

const span = (shift: number): number => 2 ** shift

/**
 * Reads file maps lazily: `extents` resolves a whole map (every node checked: its place,
 * its data blocks against its parent's, R1, the extent count and the size against the
 * entry), `find` descends to the one leaf that holds a block (1–3 pieces, cached).
 */
export class MapReader {
  /** The generation's BI index (§2.16), whose overlays `extents` lays over a file's map. */
  private readonly bi: IdTableReader | null

  constructor(
    readonly pieces: PieceReader,
    /** The manifest's `biIndex` of the generation whose entries this reads (null: none). */
    readonly biIndex: PieceRef | null = null,
  ) {
    this.bi = biIndex ? new IdTableReader(pieces, TableKind.BiOverlay) : null
  }

  /**
   * The canonical extent list of an entry's map ([] for no map). An entry given with its
   * identity, of a generation with a BI index, reads as it was at T0: the overlay of its
   * identity's row is laid over the map (§2.16: "Readers look a file's identity up").
   */
  async extents(e: Pick<Entry2, 'map' | 'size' | 'dataBlocks'> & Partial<Pick<Entry2, 'srcDev' | 'srcInoHi' | 'srcInoLo'>>): Promise<Extent[]> {
    const list = await this.mapExtents(e)
    if (!this.bi || e.srcDev === undefined) return list
    const row = await this.overlayRow(e as Pick<Entry2, 'srcDev' | 'srcInoHi' | 'srcInoLo'>)
    if (!row?.overlay) return list
    return overlayExtents(list, await this.overlayOf(row), Math.ceil(e.size / BLOCK_BYTES))
  }

  /** The BI index row of a file's identity, or null (none, or no BI index). */
  async overlayRow(e: Pick<Entry2, 'srcDev' | 'srcInoHi' | 'srcInoLo'>): Promise<BiOverlayRow | null> {
    if (!this.bi) return null
    return (await this.bi.find(this.biIndex, { srcDev: e.srcDev, srcInoHi: e.srcInoHi, srcInoLo: e.srcInoLo })) as BiOverlayRow | null
  }

  /** A row's overlay extents (inline, or a MAPLEAF/MAPINNER tree over the T0 size). */
  async overlayOf(row: BiOverlayRow): Promise<Extent[]> {
    const o = row.overlay
    if (!o) return []
    if (o.kind === 'inline') return o.extents
    const p = await this.pieces.pieceOf(o.root, [PieceKind.MapLeaf, PieceKind.MapInner], 'BI overlay map node')
    const blocks = p.kind === PieceKind.MapLeaf ? extentDataBlocks(p.leaf.extents) : innerDataBlocks(p.inner)
    const list = await this.tree(o.root, rootShift(row.t0Size), blocks)
    const last = list[list.length - 1]
    if (last && last.fileBlock + last.count > Math.ceil(row.t0Size / BLOCK_BYTES)) throw new FormatError('BAD_VALUE', `${this.pieces.where(o.root)}: BI overlay runs beyond the file's T0 size`)
    return list
  }

  /** The canonical extent list of an entry's map alone ([] for no map), with no BI overlay. */
  async mapExtents(e: Pick<Entry2, 'map' | 'size' | 'dataBlocks'>): Promise<Extent[]> {
    const map = e.map
    if (!map) return []
    if (map.kind === 'inline') return map.extents
    const list = await this.tree(map.root, rootShift(e.size), e.dataBlocks)
    const what = this.pieces.where(map.root)
    if (list.length !== map.extentCount) throw new FormatError('BAD_VALUE', `${what}: map has ${list.length} extents, the entry says ${map.extentCount}`)
    const last = list[list.length - 1]
    if (last && last.fileBlock + last.count > Math.ceil(e.size / BLOCK_BYTES)) throw new FormatError('BAD_VALUE', `${what}: map runs beyond the file's size`)
    return list
  }

  /** A map tree's extents, every node checked (its place, its data blocks against its parent's, R1). */
  private async tree(root: PieceRef, rootShiftBits: number, rootBlocks: number): Promise<Extent[]> {
    const out: Extent[] = []
    const visit = async (ref: PieceRef, shift: number, base: number, blocks: number, parent: PieceRef | null): Promise<void> => {
      const what = this.pieces.where(ref)
      if (parent && comparePieceRefs(ref, parent) >= 0) throw new FormatError('BAD_VALUE', `${what}: map node is not written before its parent (R1)`)
      const p = await this.pieces.pieceOf(ref, [PieceKind.MapLeaf, PieceKind.MapInner], 'map node')
      if (p.kind === PieceKind.MapLeaf) {
        expectMapNode(p.leaf, shift, base, blocks, what)
        out.push(...p.leaf.extents)
      } else {
        expectMapNode(p.inner, shift, base, blocks, what)
        for (const c of p.inner.children) await visit(c.ref, shift - 8, base + c.slot * span(shift - 8), c.dataBlocks, ref)
      }
    }
    await visit(root, rootShiftBits, 0, rootBlocks, null)
    return canonicalExtents(out)
  }

  /** The extent holding file block `block` (clipped to the leaf it was found in), or null for a hole. */
  async find(e: Pick<Entry2, 'map' | 'size' | 'dataBlocks'>, block: number): Promise<Extent | null> {
    const map = e.map
    if (!map || block < 0 || block >= Math.ceil(e.size / BLOCK_BYTES)) return null
    if (map.kind === 'inline') {
      const i = findExtent(map.extents, block)
      return i < 0 ? null : map.extents[i]!
    }
    let ref = map.root
    let shift = rootShift(e.size)
    let base = 0
    let blocks = e.dataBlocks
    let parent: PieceRef | null = null
    for (;;) {
      const what = this.pieces.where(ref)
      if (parent && comparePieceRefs(ref, parent) >= 0) throw new FormatError('BAD_VALUE', `${what}: map node is not written before its parent (R1)`)
      const p = await this.pieces.pieceOf(ref, [PieceKind.MapLeaf, PieceKind.MapInner], 'map node')
      if (p.kind === PieceKind.MapLeaf) {
        expectMapNode(p.leaf, shift, base, blocks, what)
        const i = findExtent(p.leaf.extents, block)
        return i < 0 ? null : p.leaf.extents[i]!
      }
      expectMapNode(p.inner, shift, base, blocks, what)
      const slot = mapChildSlot(p.inner, block)
      const c = p.inner.children.find((x) => x.slot === slot)
      if (!c) return null
      parent = ref
      ref = c.ref
      base += slot * span(shift - 8)
      shift -= 8
      blocks = c.dataBlocks
    }
  }
}

/**
 * `base` (a canonical map) with `overlay` laid over it (§2.15 kind 2): each overlay extent
 * replaces the blocks it covers (stream 0: zeros, a hole); the result canonical and clipped
 * to `limit` blocks.
 */
export function overlayExtents(base: readonly Extent[], overlay: readonly Extent[], limit: number): Extent[] {
  if (!overlay.length) return [...base]
  const out: Extent[] = []
  let k = 0 // the first overlay extent that ends after the current base extent's start
  for (const b of base) {
    const end = b.fileBlock + b.count
    while (k < overlay.length && overlay[k]!.fileBlock + overlay[k]!.count <= b.fileBlock) k++
    let from = b.fileBlock
    for (let j = k; j < overlay.length && overlay[j]!.fileBlock < end && from < end; j++) {
      const o = overlay[j]!
      if (o.fileBlock > from) out.push({ fileBlock: from, count: o.fileBlock - from, stream: b.stream, streamBlock: b.streamBlock + (from - b.fileBlock) })
      from = Math.max(from, o.fileBlock + o.count)
    }
    if (from < end) out.push({ fileBlock: from, count: end - from, stream: b.stream, streamBlock: b.streamBlock + (from - b.fileBlock) })
  }
  for (const o of overlay) if (o.stream !== 0) out.push({ ...o })
  out.sort((a, b) => a.fileBlock - b.fileBlock)
  return canonicalExtents(clipExtents(out, 0, limit))
}
