import type { Extent } from '../format/maps.js'

/**
 * What a range of a file reads as. Data: stream blocks of a generation (the resolved
 * extents); Hole: zeros (the gaps between extents, never listed); Deferred: served by
 * JavaScript through a Claimer (a range under a before-image overlay, later), never by the
 * native read path.
 */
export const Kind = { Data: 0, Hole: 1, Deferred: 2 } as const
export type Kind = (typeof Kind)[keyof typeof Kind]

/** An object's identity for claimers: its generation and index in that generation's block maps. */
export interface ObjectRef {
  gen: number
  index: number
}

/** A run of file blocks. */
export interface BlockRange {
  fileBlock: number
  count: number
}

/**
 * A layer that serves some ranges of some objects itself (before-image overlays, later).
 * BlockReader.file() asks every claimer; the ranges claimed read through it and are
 * deferred (never native), and backup comparisons treat their old hashes as unknown.
 */
export interface Claimer {
  readonly id: string
  /** Ranges of the object this claimer serves, sorted, not overlapping ([] for none). */
  claims(object: ObjectRef | undefined, sizeBytes: number): readonly BlockRange[]
  /** Fills `dst` with the object's bytes at byte `pos` (the range lies in a claimed range). */
  read(object: ObjectRef | undefined, pos: number, dst: Buffer): Promise<void>
  /** The same without yielding, for the synchronous entry points (cat, restore, verify); optional. */
  readSync?(object: ObjectRef | undefined, pos: number, dst: Buffer): void
}

/** A resolved extent as the reader serves it: data (no kind, or Kind.Data) or a deferred range of a claimer. */
export interface ReadExtent extends Extent {
  kind?: Kind
  claimer?: Claimer
}

/** Index of the first extent that ends after file block `fileBlock` (extents.length if none): where a read at that block starts. */
export function firstExtentEndingAfter(extents: readonly Extent[], fileBlock: number): number {
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
export function dataBlocks(extents: readonly Extent[]): number {
  let n = 0
  for (const e of extents) n += e.count
  return n
}

/**
 * `extents` with `claims` (sorted, not overlapping) laid over them: claimed blocks become
 * Deferred extents of `claimer`, whatever was there (data or hole); data outside them is
 * kept, cut at the claims. The result is sorted and not overlapping.
 */
export function overlayClaims(extents: readonly ReadExtent[], claims: readonly BlockRange[], claimer: Claimer): ReadExtent[] {
  const cut = (e: ReadExtent, from: number, to: number): ReadExtent =>
    e.kind === Kind.Deferred ? { ...e, fileBlock: from, count: to - from } : { fileBlock: from, count: to - from, gen: e.gen, streamBlock: e.streamBlock + (from - e.fileBlock) }
  const out: ReadExtent[] = []
  let c0 = 0
  for (const e of extents) {
    const end = e.fileBlock + e.count
    while (c0 < claims.length && claims[c0]!.fileBlock + claims[c0]!.count <= e.fileBlock) c0++
    let from = e.fileBlock
    for (let c = c0; c < claims.length && claims[c]!.fileBlock < end; c++) {
      const cl = claims[c]!
      if (cl.fileBlock > from) out.push(cut(e, from, cl.fileBlock))
      from = Math.max(from, cl.fileBlock + cl.count)
    }
    if (from < end) out.push(cut(e, from, end))
  }
  for (const r of claims) if (r.count > 0) out.push({ fileBlock: r.fileBlock, count: r.count, gen: 0, streamBlock: 0, kind: Kind.Deferred, claimer })
  return out.sort((a, b) => a.fileBlock - b.fileBlock)
}
