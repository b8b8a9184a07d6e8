import fs from 'node:fs'
import { BLOCK_BYTES, blockHash, HASH_BYTES, isZeroBlock, zeroBlockHash, type HashAlg } from '../codec/hash.js'
import { MAX_DELTA_DEPTH, overlayExtents, type Extent, type MapObject } from '../format/maps.js'
import type { StreamWriter } from './stream.js'
import { BfsError } from './errors.js'

/** The previous version of an object, for block-level incrementals. */
export interface BaseObject {
  gen: number
  index: number
  depth: number
  sizeBytes: number
  /** Resolved extents (no holes listed). */
  extents: Extent[]
  /** Block hashes of generation `gen`'s stream, for any gen an extent names. */
  hashesOf(gen: number): Buffer
  hashAlg: HashAlg
}

export interface StoredObject {
  object: MapObject
  bytesRead: number
  /** True when the read hit EOF early (the file shrank while being read). */
  short: boolean
  /** Nothing differs from the base: the caller may keep referring to the base object. */
  sameAsBase: boolean
}

const scratchHash = Buffer.alloc(HASH_BYTES)

/** Finds the extent covering fileBlock in sorted extents (binary search); -1 if a hole. */
function findExtent(extents: Extent[], fileBlock: number): number {
  let lo = 0
  let hi = extents.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const e = extents[mid]!
    if (fileBlock < e.fileBlock) hi = mid - 1
    else if (fileBlock >= e.fileBlock + e.count) lo = mid + 1
    else return mid
  }
  return -1
}

class ExtentList {
  readonly list: Extent[] = []
  add(fileBlock: number, count: number, gen: number, streamBlock: number): void {
    const last = this.list[this.list.length - 1]
    if (last && last.gen === gen && last.fileBlock + last.count === fileBlock && (gen === 0 || last.streamBlock + last.count === streamBlock)) last.count += count
    else this.list.push({ fileBlock, count, gen, streamBlock: gen === 0 ? 0 : streamBlock })
  }
}

/**
 * Reads `regions` ([start, end, …] byte ranges holding data) of an open file or device
 * into the stream. All-zero blocks become holes. With a base, only blocks whose hash
 * differs from the base's block at the same position are stored (a delta object).
 */
export interface StoreHooks {
  /** Checked between reads: a long volume read stops promptly on Ctrl-C. */
  signal?: AbortSignal
  /** Called after each read with the bytes read so far (progress). */
  onRead?(bytesRead: number): void
}

export async function storeObject(fd: number, sizeBytes: number, regions: number[], stream: StreamWriter, base: BaseObject | null, hooks: StoreHooks = {}): Promise<StoredObject> {
  const blocks = Math.ceil(sizeBytes / BLOCK_BYTES)
  const ext = new ExtentList()
  const gen = stream.genId
  let bytesRead = 0
  let short = false
  let changed = false
  let cursor = 0 // next file block not yet classified
  const ZERO_BLOCK_HASH = base ? zeroBlockHash(base.hashAlg) : Buffer.alloc(0)
  const oldHash = (fb: number): Buffer => {
    const i = findExtent(base!.extents, fb)
    if (i < 0) return ZERO_BLOCK_HASH
    const e = base!.extents[i]!
    const sb = e.streamBlock + (fb - e.fileBlock)
    return base!.hashesOf(e.gen).subarray(sb * HASH_BYTES, (sb + 1) * HASH_BYTES)
  }
  const holeUpTo = (endBlock: number): void => {
    // A hole in the new version: in a delta, punch it only where the base had data.
    if (base && endBlock > cursor) {
      for (let fb = cursor; fb < endBlock; fb++) {
        if (findExtent(base.extents, fb) >= 0) {
          ext.add(fb, 1, 0, 0)
          changed = true
        }
      }
    }
    cursor = Math.max(cursor, endBlock)
  }
  for (let r = 0; r < regions.length && !short; r += 2) {
    const startBlock = Math.floor(regions[r]! / BLOCK_BYTES)
    const endBlock = Math.min(blocks, Math.ceil(regions[r + 1]! / BLOCK_BYTES))
    holeUpTo(startBlock)
    let fb = Math.max(startBlock, cursor)
    while (fb < endBlock) {
      const space = await stream.reserve()
      const n = Math.min(space.blocks, endBlock - fb)
      const pos = fb * BLOCK_BYTES
      const want = Math.min(n * BLOCK_BYTES, sizeBytes - pos)
      let got = 0
      while (got < want) {
        const k = fs.readSync(fd, space.buf, space.offsetBytes + got, want - got, pos + got)
        if (k === 0) {
          short = true
          break
        }
        got += k
      }
      bytesRead += got
      if (hooks.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
      hooks.onRead?.(bytesRead)
      if (got < n * BLOCK_BYTES) space.buf.fill(0, space.offsetBytes + got, space.offsetBytes + n * BLOCK_BYTES)
      const sb0 = stream.nextStreamBlock
      let keep = 0
      for (let i = 0; i < n; i++) {
        const off = space.offsetBytes + i * BLOCK_BYTES
        const zero = isZeroBlock(space.buf, off)
        let store = !zero
        if (base) {
          let h = ZERO_BLOCK_HASH
          if (!zero) {
            blockHash(base.hashAlg, space.buf.subarray(off, off + BLOCK_BYTES), scratchHash, 0)
            h = scratchHash
          }
          if (h.equals(oldHash(fb + i))) store = false
          else {
            changed = true
            if (zero) ext.add(fb + i, 1, 0, 0)
          }
        }
        if (store) {
          if (keep !== i) space.buf.copyWithin(space.offsetBytes + keep * BLOCK_BYTES, off, off + BLOCK_BYTES)
          ext.add(fb + i, 1, gen, sb0 + keep)
          keep++
        }
      }
      stream.commit(keep)
      fb += n
      cursor = fb
    }
  }
  holeUpTo(blocks)
  if (!base) return { object: { sizeBytes, baseGen: 0, baseIndex: 0, depth: 0, extents: ext.list }, bytesRead, short, sameAsBase: false }
  const sameAsBase = !changed && !short && base.sizeBytes === sizeBytes
  if (base.depth + 1 > MAX_DELTA_DEPTH) {
    // Bound the chain: store the resolved map as a full object.
    return { object: { sizeBytes, baseGen: 0, baseIndex: 0, depth: 0, extents: overlayExtents(base.extents, ext.list, blocks) }, bytesRead, short, sameAsBase }
  }
  return { object: { sizeBytes, baseGen: base.gen, baseIndex: base.index, depth: base.depth + 1, extents: ext.list }, bytesRead, short, sameAsBase }
}
