import fs from 'node:fs'
import { promisify } from 'node:util'
import { BLOCK_BYTES, hashBlocks, HASH_BYTES, isZeroBlock, type HashAlg } from '../codec/hash.js'
import { MAX_DELTA_DEPTH, overlayExtents, type Extent, type MapObject } from '../format/maps.js'
import type { StreamWriter } from './commit/stream.js'
import { BfsError } from './errors.js'
import { alignedBuffer } from '../native/index.js'
import { hashCursor } from '../blocks/reader.js'

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
  /** The repository's XXH64 seed the base's hashes were stored with (and the new ones are computed with). */
  blockSeed: bigint
}

export interface StoredObject {
  object: MapObject
  bytesRead: number
  /** True when the read hit EOF early (the file shrank while being read). */
  short: boolean
  /** Nothing differs from the base: the caller may keep referring to the base object. */
  sameAsBase: boolean
}

/** Hashes of the blocks just read, and the base's hashes for the same positions (reused). */
let newHashes = Buffer.alloc(0)
let oldHashes = Buffer.alloc(0)

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

/** Index of the first extent starting at or after fileBlock (extents sorted). */
function lowerBound(extents: Extent[], fileBlock: number): number {
  let lo = 0
  let hi = extents.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (extents[mid]!.fileBlock < fileBlock) lo = mid + 1
    else hi = mid
  }
  return lo
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
  /**
   * `fd` was opened with O_DIRECT (a block device): every read goes into a 4096-aligned
   * buffer at a 4096-aligned offset, through the read-ahead chunks (the stream's unit
   * buffers are not aligned, so full reads are copied into them).
   */
  direct?: boolean
  /**
   * Reads the source instead of pread(2) (`bfs backup --online`: the bytes as they were at
   * T0, through the capture engine): fills buf[off…off+len) from file offset pos and returns
   * the bytes read, fewer only where the file ends. Reads are synchronous then (the engine's
   * handle lives on this thread); without it nothing changes.
   */
  read?: (buf: Buffer, off: number, len: number, pos: number) => number
  /**
   * Keep a full read's stream in phase with the file (a volume): a file block and its
   * stream block stay congruent modulo the frame size, so that a read of F aligned blocks
   * needs one frame, not two. All-zero blocks are still holes in the map, but a run of them
   * shorter than a frame leaves its slots in the stream as zeros (nothing refers to them;
   * they compress to a few bytes); only whole frames of them are left out. Without it an
   * image with scattered zero blocks (or an --online image, whose blocks written after T0
   * read as zeros) is stored shifted, and parallel reads of neighbouring ranges wait for
   * each other's loads of the frames they share (a dd of a 1 GiB image through the mount:
   * 19.9k futex calls against 457 aligned, ~1.3-1.5x the time).
   */
  alignFrames?: boolean
  /**
   * A format 2 file (format.md §2.20.3 "Frame placement"): its data does not straddle frames
   * needlessly. Data of at most one frame (the blocks of `regions`) that does not fit in what
   * is left of the stream's current frame starts the next frame, the slots skipped left as
   * zeros (nothing refers to them); more than a frame is read as with `alignFrames` (in
   * phase: each F aligned blocks of the file in one frame). With a base only the first rule
   * applies (the changed blocks of a file of at most a frame then share one frame), and
   * the slots are skipped only once a block goes into the stream (a file found unchanged
   * skips nothing).
   */
  fitFrames?: boolean
  /**
   * Called with every range of the file read, in file order, before anything else touches the
   * buffer (`pos`: the file offset of `buf[off]`); ranges never overlap, and what lies between
   * them was not read (holes). A content digest taken while storing (format 2 dedup).
   */
  onData?(buf: Buffer, off: number, len: number, pos: number): void
  /**
   * Called after each read of the file with its range (`pos`, `len` bytes), once the bytes are
   * in bfs's own buffer: the page cache may let them go (src/repo/cache-guard.ts).
   */
  afterRead?(pos: number, len: number): void
}

export async function storeObject(fd: number, sizeBytes: number, regions: number[], stream: StreamWriter, base: BaseObject | null, hooks: StoreHooks = {}): Promise<StoredObject> {
  const blocks = Math.ceil(sizeBytes / BLOCK_BYTES)
  const ext = new ExtentList()
  const gen = stream.genId
  let bytesRead = 0
  let short = false
  let changed = false
  let cursor = 0 // next file block not yet classified
  /**
   * Fills oldHashes[0…n) with the base's block hashes for file blocks fb…fb+n (a hole
   * hashes as a zero block), through the block reader's hash cursor (fb only grows, so
   * the base extents are walked once). A block whose old hash is unknown (a range another
   * layer claims) is made to differ: it is stored again.
   */
  const old = base ? hashCursor(base.extents, base.hashAlg, base.blockSeed, (g) => base.hashesOf(g)) : null
  let unknown = new Uint8Array(0)
  const fillOldHashes = (fb: number, n: number): void => {
    if (unknown.length < n) unknown = new Uint8Array(n)
    old!.fill(fb, n, oldHashes, unknown)
    for (let i = unknown.indexOf(1); i >= 0 && i < n; i = unknown.indexOf(1, i + 1)) {
      newHashes.copy(oldHashes, i * HASH_BYTES, i * HASH_BYTES, (i + 1) * HASH_BYTES)
      oldHashes[i * HASH_BYTES] ^= 0xff
    }
  }
  const holeUpTo = (endBlock: number): void => {
    // A hole in the new version: in a delta, punch it only where the base had data
    // (walking the base extents that overlap it, not every block of it).
    if (base && endBlock > cursor) {
      const list = base.extents
      let i = findExtent(list, cursor)
      if (i < 0) i = lowerBound(list, cursor)
      for (; i < list.length && list[i]!.fileBlock < endBlock; i++) {
        const e = list[i]!
        const from = Math.max(cursor, e.fileBlock)
        const to = Math.min(endBlock, e.fileBlock + e.count)
        if (to > from) {
          ext.add(from, to - from, 0, 0)
          changed = true
        }
      }
    }
    cursor = Math.max(cursor, endBlock)
  }
  const stopIfAborted = (): void => {
    if (hooks.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
  }
  // alignFrames (full reads only): stream block ≡ file block (mod F), so that the frames of
  // the stream and the file's F-block ranges coincide (units hold whole frames and fill
  // without gaps, so the phase survives unit boundaries)
  let dataBlocks = 0
  if (hooks.fitFrames) for (let r = 0; r < regions.length; r += 2) dataBlocks += Math.max(0, Math.min(blocks, Math.ceil(regions[r + 1]! / BLOCK_BYTES)) - Math.floor(regions[r]! / BLOCK_BYTES))
  const fits = !!hooks.fitFrames && dataBlocks <= stream.frameBlocks
  const F = (hooks.alignFrames || (hooks.fitFrames && !fits)) && !base ? stream.frameBlocks : 0
  /** fitFrames, data of at most a frame: before its first block only */
  let fitPending = fits
  /**
   * alignFrames: zero blocks into the stream, unreferenced, until file block fb's slot is in
   * phase; fitFrames (data of at most a frame), before the first block: until the next frame
   * when the data does not fit in what is left of the current one.
   */
  const padTo = async (fb: number): Promise<void> => {
    let pad = 0
    if (F) pad = (((fb - stream.nextStreamBlock) % F) + F) % F
    else if (fitPending) {
      fitPending = false
      const FB = stream.frameBlocks
      const room = FB - (stream.nextStreamBlock % FB)
      if (room < FB && dataBlocks > room) pad = room
    }
    while (pad > 0) {
      const space = await stream.reserve()
      const k = Math.min(space.blocks, pad)
      space.buf.fill(0, space.offsetBytes, space.offsetBytes + k * BLOCK_BYTES)
      stream.commit(k)
      pad -= k
    }
  }
  /** Appends count blocks of buf at off to the stream (across unit boundaries) as data of file block fb. */
  const putBlocks = async (buf: Buffer, off: number, count: number, fb: number): Promise<void> => {
    await padTo(fb)
    while (count > 0) {
      const space = await stream.reserve()
      const k = Math.min(space.blocks, count)
      buf.copy(space.buf, space.offsetBytes, off, off + k * BLOCK_BYTES)
      ext.add(fb, k, gen, stream.commit(k))
      off += k * BLOCK_BYTES
      fb += k
      count -= k
    }
  }
  for (let r = 0; r < regions.length && !short; r += 2) {
    const startBlock = Math.floor(regions[r]! / BLOCK_BYTES)
    const endBlock = Math.min(blocks, Math.ceil(regions[r + 1]! / BLOCK_BYTES))
    holeUpTo(startBlock)
    let fb = Math.max(startBlock, cursor)
    if (fb >= endBlock) continue
    if (base || hooks.direct) {
      // Incremental: most blocks are unchanged and never reach the stream. Reads run ahead
      // on the threadpool (two cores read the page cache at once) into private buffers; one
      // native call hashes each chunk, and only blocks whose hash differs from the base's
      // are copied into the stream.
      // A full read with O_DIRECT comes this way too (aligned chunk buffers), and copies
      // each run of non-zero blocks into the stream.
      for await (const c of readAhead(fd, fb, endBlock, sizeBytes, !!hooks.direct, hooks.read)) {
        bytesRead += c.got
        hooks.afterRead?.(c.fb * BLOCK_BYTES, c.got)
        stopIfAborted()
        hooks.onRead?.(bytesRead)
        const n = c.blocks
        hooks.onData?.(c.buf, 0, c.got, c.fb * BLOCK_BYTES)
        if (c.got < n * BLOCK_BYTES) c.buf.fill(0, c.got, n * BLOCK_BYTES)
        if (!base) {
          let run = -1
          for (let i = 0; i <= n; i++) {
            const data = i < n && !isZeroBlock(c.buf, i * BLOCK_BYTES)
            if (!data && run >= 0) {
              await putBlocks(c.buf, run * BLOCK_BYTES, i - run, c.fb + run)
              run = -1
            }
            if (data && run < 0) run = i
          }
          cursor = c.fb + n
          if (c.short) {
            short = true
            break
          }
          continue
        }
        if (newHashes.length < n * HASH_BYTES) {
          newHashes = Buffer.alloc(n * HASH_BYTES)
          oldHashes = Buffer.alloc(n * HASH_BYTES)
        }
        hashBlocks(base.hashAlg, c.buf, 0, n, newHashes, 0, base.blockSeed)
        fillOldHashes(c.fb, n)
        if (newHashes.compare(oldHashes, 0, n * HASH_BYTES, 0, n * HASH_BYTES) !== 0) {
          let run = -1 // first block of a run of changed data blocks
          for (let i = 0; i <= n; i++) {
            const h = i * HASH_BYTES
            let data = false
            let zero = false
            if (i < n && newHashes.compare(oldHashes, h, h + HASH_BYTES, h, h + HASH_BYTES) !== 0) {
              changed = true
              if (isZeroBlock(c.buf, i * BLOCK_BYTES)) zero = true
              else data = true
            }
            // Extents must be added in file order: the pending run (blocks before i) first,
            // then a hole at i (a block zeroed since the base).
            if (!data && run >= 0) {
              await putBlocks(c.buf, run * BLOCK_BYTES, i - run, c.fb + run)
              run = -1
            }
            if (zero) ext.add(c.fb + i, 1, 0, 0)
            if (data && run < 0) run = i
          }
        }
        cursor = c.fb + n
        if (c.short) {
          short = true
          break
        }
      }
      continue
    }
    while (fb < endBlock) {
      await padTo(fb)
      const space = await stream.reserve()
      const n = Math.min(space.blocks, endBlock - fb)
      const pos = fb * BLOCK_BYTES
      const want = Math.min(n * BLOCK_BYTES, sizeBytes - pos)
      const got = readUpTo(fd, space.buf, space.offsetBytes, want, pos, hooks.read)
      hooks.afterRead?.(pos, got)
      hooks.onData?.(space.buf, space.offsetBytes, got, pos)
      if (got < want) short = true
      bytesRead += got
      stopIfAborted()
      hooks.onRead?.(bytesRead)
      if (got < n * BLOCK_BYTES) space.buf.fill(0, space.offsetBytes + got, space.offsetBytes + n * BLOCK_BYTES)
      const sb0 = stream.nextStreamBlock
      let keep = 0
      for (let i = 0; i < n; i++) {
        const off = space.offsetBytes + i * BLOCK_BYTES
        if (isZeroBlock(space.buf, off)) continue
        if (F) {
          // in phase: the chunk starts in phase (padTo), so the zero blocks skipped since,
          // modulo F, are the slots to leave as zeros (they are behind i: already looked at)
          const pad = (i - keep) % F
          if (pad) space.buf.fill(0, space.offsetBytes + keep * BLOCK_BYTES, space.offsetBytes + (keep + pad) * BLOCK_BYTES)
          keep += pad
        }
        if (keep !== i) space.buf.copyWithin(space.offsetBytes + keep * BLOCK_BYTES, off, off + BLOCK_BYTES)
        ext.add(fb + i, 1, gen, sb0 + keep)
        keep++
      }
      stream.commit(keep)
      fb += n
      cursor = fb
      if (short) break
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

const fsp = { read: promisify(fs.read) as (fd: number, buf: Buffer, off: number, len: number, pos: number) => Promise<{ bytesRead: number }> }

/** Blocks per read-ahead chunk, and how many chunks are read at once. */
const AHEAD_CHUNK_BLOCKS = 1024
const AHEAD_DEPTH = 3

interface Chunk {
  fb: number
  blocks: number
  buf: Buffer
  /** Bytes read (less than blocks × 4096 only at the end of the file). */
  got: number
  /** The file ended before the bytes it was expected to hold. */
  short: boolean
}

/**
 * File blocks [fromBlock, endBlock) in chunks, in order, with up to AHEAD_DEPTH reads in
 * flight on the threadpool. A chunk's buffer is reused as soon as the consumer asks for
 * the next chunk: use it only until then.
 */
async function* readAhead(fd: number, fromBlock: number, endBlock: number, sizeBytes: number, direct = false, read?: StoreHooks['read']): AsyncGenerator<Chunk> {
  // Sized to the range: a small changed file in a file backup costs one small buffer.
  const chunkBlocks = Math.min(AHEAD_CHUNK_BLOCKS, Math.max(1, endBlock - fromBlock))
  const chunks = Math.ceil((endBlock - fromBlock) / chunkBlocks)
  const bufs = Array.from({ length: read ? 1 : Math.min(AHEAD_DEPTH + 1, Math.max(1, chunks)) }, () => (direct ? alignedBuffer(chunkBlocks * BLOCK_BYTES) : Buffer.allocUnsafe(chunkBlocks * BLOCK_BYTES)))
  const queue: Array<Promise<Chunk>> = []
  let next = fromBlock
  let k = 0
  const issue = (): void => {
    const fb = next
    const blocks = Math.min(chunkBlocks, endBlock - fb)
    next += blocks
    const buf = bufs[k++ % bufs.length]!
    const p = readChunk(fd, buf, fb, blocks, sizeBytes)
    // Handled when the consumer reaches it; a read error in a chunk still waiting in the
    // queue must not become an unhandled rejection (which would kill the process).
    p.catch(() => undefined)
    queue.push(p)
  }
  if (read) {
    // A reader of our own (the capture engine's, synchronous): chunk by chunk on this thread.
    for (let fb = fromBlock; fb < endBlock; ) {
      const blocks = Math.min(chunkBlocks, endBlock - fb)
      const c = readChunkSync(fd, bufs[0]!, fb, blocks, sizeBytes, read)
      yield c
      if (c.short) return
      fb += blocks
    }
    return
  }
  if (chunks <= 1) {
    // One chunk (a small changed file): read it here. A threadpool round trip per file,
    // awaited one file after another, left the main thread idle a third of a 1 % backup.
    yield readChunkSync(fd, bufs[0]!, fromBlock, endBlock - fromBlock, sizeBytes)
    return
  }
  try {
    while (next < endBlock && queue.length < AHEAD_DEPTH) issue()
    while (queue.length) {
      const c = await queue.shift()!
      if (next < endBlock && !c.short) issue()
      yield c
      if (c.short) return
    }
  } finally {
    // Stopped early (error, abort, short read): let the reads still running finish before
    // their buffers and the descriptor are released.
    await Promise.allSettled(queue)
  }
}

function readChunkSync(fd: number, buf: Buffer, fb: number, blocks: number, sizeBytes: number, read?: StoreHooks['read']): Chunk {
  const pos = fb * BLOCK_BYTES
  const want = Math.min(blocks * BLOCK_BYTES, sizeBytes - pos)
  const got = readUpTo(fd, buf, 0, want, pos, read)
  return { fb, blocks, buf, got, short: got < want }
}

/** Reads `want` bytes at file offset `pos` into buf[off…]; fewer only where the file ends. */
function readUpTo(fd: number, buf: Buffer, off: number, want: number, pos: number, read?: StoreHooks['read']): number {
  let got = 0
  while (got < want) {
    const k = read ? read(buf, off + got, want - got, pos + got) : fs.readSync(fd, buf, off + got, want - got, pos + got)
    if (k === 0) break
    got += k
  }
  return got
}

async function readChunk(fd: number, buf: Buffer, fb: number, blocks: number, sizeBytes: number): Promise<Chunk> {
  const pos = fb * BLOCK_BYTES
  const want = Math.min(blocks * BLOCK_BYTES, sizeBytes - pos)
  let got = 0
  let short = false
  while (got < want) {
    const { bytesRead } = await fsp.read(fd, buf, got, want - got, pos + got)
    if (bytesRead === 0) {
      short = true
      break
    }
    got += bytesRead
  }
  return { fb, blocks, buf, got, short }
}
