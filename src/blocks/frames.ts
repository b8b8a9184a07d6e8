import { LRUCache } from 'lru-cache'
import { FrameDecompressor, rethrowUnavailable } from '../codec/zstd.js'
import { BLOCK_BYTES, frameCheck, hashBlocks, HASH_BYTES, type HashAlg } from '../codec/hash.js'
import { FormatError } from '../format/errors.js'
import { isChanged, StoreError, type SyncBlobReader } from '../store/store.js'
import type { StreamSource } from './source.js'
import { NONCE_TAG, openInto, TAG_BYTES } from '../crypto/aead.js'
import { aad } from '../crypto/aad.js'
import type { ReaderStats, UnitInfo, UnitTable } from './units.js'

/** Frames at least this big are pooled (smaller ones are the short last frame of a unit). */
const FRAME_POOL_MIN = 64 << 10

/**
 * Decompressed frames: a byte-bounded LRU, concurrent misses of one frame sharing a single
 * load (async), buffers recycled, every frame checked as it is decoded (zstd's content
 * checksum; with `fullCheck` also the frame check over its block hashes).
 */
export class FrameCache {
  private readonly frames: LRUCache<string, Buffer>
  private readonly loading = new Map<string, Promise<Buffer>>()
  private readonly dec = new FrameDecompressor()

  constructor(
    private readonly units: UnitTable,
    private readonly source: StreamSource,
    private readonly stats: ReaderStats,
    cacheBytes: number,
    /** Verify every frame's frame check too (the repository's hash algorithm), not only zstd's checksum. */
    private readonly fullCheck: { alg: HashAlg; seed: bigint } | null = null,
  ) {
    this.frames = new LRUCache<string, Buffer>({
      maxSize: Math.max(cacheBytes, 1 << 20),
      sizeCalculation: (b) => b.length || 1,
      dispose: (b, _k, reason) => {
        if (reason === 'evict') this.recycle(b)
      },
    })
  }

  /*
   * Frame and compressed-read buffers are reused rather than left to the garbage
   * collector: a cat of a whole tree decompresses thousands of 256 KiB frames, and
   * freed-but-not-yet-collected buffers plus malloc fragmentation were half the mount's
   * resident memory. Invariant that makes reuse safe: a frame buffer a load returns (or a
   * hit) is valid until its caller next yields to the event loop, or on the synchronous
   * paths until its caller asks for another frame (readers copy out or hand it to a
   * visitor at once); a frame is recycled only when the LRU evicts it, which happens
   * inside a later load.
   */
  private readonly spareFrames: ArrayBuffer[] = []
  private readonly spareComp: Buffer[] = []

  private frameBuffer(bytes: number): Buffer {
    const ab = this.spareFrames.pop()
    // a spare much bigger than the frame would hold memory the cache does not count
    if (ab && ab.byteLength >= bytes && ab.byteLength <= 2 * bytes) return Buffer.from(ab, 0, bytes)
    return Buffer.allocUnsafeSlow(bytes)
  }

  private recycle(b: Buffer): void {
    const ab = b.buffer as ArrayBuffer
    // only whole buffers made by frameBuffer (never a slice of Node's shared pool)
    if (b.byteOffset === 0 && ab.byteLength >= FRAME_POOL_MIN && this.spareFrames.length < 8) this.spareFrames.push(ab)
  }

  private compBuffer(bytes: number): Buffer {
    const b = this.spareComp.pop()
    if (b && b.length >= bytes) return b
    return Buffer.allocUnsafeSlow(Math.max(bytes, 128 << 10))
  }

  private spare(b: Buffer): void {
    if (this.spareComp.length < 8) this.spareComp.push(b)
  }

  /** A cached frame, or undefined (counts a hit). */
  hit(gen: number, unit: number, frame: number): Buffer | undefined {
    const b = this.frames.get(`${gen}:${unit}:${frame}`)
    if (b) this.stats.hits++
    return b
  }

  /** The decompressed frame `frame` of unit `unit` of `gen`; concurrent callers share one load. */
  get(gen: number, unit: number, frame: number, readahead = false): Promise<Buffer> {
    const key = `${gen}:${unit}:${frame}`
    const hit = this.frames.get(key)
    if (hit) {
      if (!readahead) this.stats.hits++
      return Promise.resolve(hit)
    }
    const pending = this.loading.get(key)
    if (pending) {
      if (!readahead) this.stats.sharedLoads++
      return pending
    }
    if (readahead) this.stats.readaheads++
    else this.stats.misses++
    const p = this.load(gen, unit, frame).finally(() => this.loading.delete(key))
    this.loading.set(key, p)
    return p
  }

  /** Starts loading a frame without waiting for it (sequential readahead); errors are left for the real read. */
  prefetch(gen: number, unit: number, frame: number): void {
    const g = this.source.geometry(gen)
    if (unit >= g.unitRawBlocks.length) return
    const frames = Math.ceil(g.unitRawBlocks[unit]! / g.frameBlocks)
    if (frame >= frames) {
      if (unit + 1 < g.unitRawBlocks.length) this.prefetch(gen, unit + 1, frame - frames)
      return
    }
    this.get(gen, unit, frame, true).catch(() => undefined)
  }

  private async load(gen: number, unit: number, frame: number): Promise<Buffer> {
    for (let attempt = 0; ; attempt++) {
      let u = await this.units.unit(gen, unit)
      while (u.closed) u = await this.units.unit(gen, unit) // closed to keep the bound meanwhile: open again
      u.users++
      try {
        const e = u.table.entries[frame]
        if (!e) throw new FormatError('BAD_VALUE', `gen${gen}: frame ${frame} is past the end of unit ${unit}`)
        const scratch = this.compBuffer(e.compBytes)
        try {
          let comp: Buffer
          try {
            comp = await u.blob.read({ offset: u.table.offsets[frame]!, length: e.compBytes }, scratch)
          } catch (err) {
            // the unit was replaced since its index was read (format.md §2.20.2): read the new
            // index and the frame again, once
            if (attempt === 0 && isChanged(err)) {
              this.units.forget(u)
              continue
            }
            throw shortUnit(err, u, frame)
          }
          this.units.localNow(u)
          return this.decode(u, frame, comp)
        } finally {
          this.spare(scratch)
        }
      } finally {
        u.users--
      }
    }
  }

  /** The frame, loading it synchronously on a miss (store.sync). */
  getSync(gen: number, unit: number, frame: number): Buffer {
    const key = `${gen}:${unit}:${frame}`
    const hit = this.frames.get(key)
    if (hit) {
      this.stats.hits++
      return hit
    }
    this.stats.misses++
    const u = this.units.unitSync(gen, unit)
    const e = u.table.entries[frame]
    if (!e) throw new FormatError('BAD_VALUE', `gen${gen}: frame ${frame} is past the end of unit ${unit}`)
    const scratch = this.compBuffer(e.compBytes)
    try {
      let comp: Buffer
      try {
        comp = (u.blob as SyncBlobReader).readSync({ offset: u.table.offsets[frame]!, length: e.compBytes }, scratch)
      } catch (err) {
        throw shortUnit(err, u, frame)
      }
      return this.decode(u, frame, comp)
    } finally {
      this.spare(scratch)
    }
  }

  /**
   * Units met with dead ranges (format 2: blocks a prune zeroed, §2.9), by `gen:unit`: a read
   * of such a block is refused (BlockReader) rather than served as the zeros now stored there
   * (a reader without a lease, reading a generation a prune has since reclaimed).
   */
  readonly deadUnits = new Map<string, ReadonlyArray<{ start: number; blocks: number }>>()

  /** Decompresses and checks one frame into a (recycled) buffer and caches it. */
  private decode(u: UnitInfo, frame: number, comp: Buffer): Buffer {
    if (u.table.dead) this.deadUnits.set(`${u.gen}:${u.unit}`, u.table.dead)
    const e = u.table.entries[frame]!
    // encrypted: frame i is AEAD(unitKey, nonce(1, i), aad, zstd frame) ‖ tag (§2.9); a
    // failed tag is damage, as a failed checksum
    // (opened into a scratch buffer of its own: the read's may be a store's cached bytes)
    const plain = u.key ? this.compBuffer(comp.length - TAG_BYTES) : null
    try {
      if (plain) comp = openFrame(u, frame, e.rawBytes, comp, plain) // (its errors keep their kind)
      const out = this.frameBuffer(e.rawBytes)
      let n: number
      try {
        n = this.dec.decompressInto(out, comp, u.dict?.dec)
      } catch (err) {
        rethrowUnavailable(err)
        this.recycle(out)
        throw new FormatError('BAD_CHECKSUM', `${u.where}: frame ${frame} is corrupt (${(err as Error).message})`)
      }
      return this.check(u, frame, out, n)
    } finally {
      if (plain) this.spare(plain)
    }
  }

  /** decode()'s checks of a decompressed frame, then the cache. */
  private check(u: UnitInfo, frame: number, out: Buffer, n: number): Buffer {
    const e = u.table.entries[frame]!
    if (n !== e.rawBytes) {
      this.recycle(out)
      throw new FormatError('BAD_VALUE', `${u.where}: frame ${frame} has ${n} bytes, expected ${e.rawBytes}`)
    }
    if (this.fullCheck && !checkFrame(this.fullCheck.alg, out, e.check, this.fullCheck.seed)) {
      this.recycle(out)
      throw new FormatError('BAD_CHECKSUM', `${u.where}: frame ${frame} checksum mismatch (data is corrupt)`)
    }
    this.stats.decompressedBytes += n
    this.frames.set(`${u.gen}:${u.unit}:${frame}`, out)
    return out
  }

  /** Forgets every cached frame (buffers are not recycled: a caller may still hold one). */
  clear(): void {
    this.frames.clear()
  }
}

/**
 * An encrypted unit's frame `frame` (its stored bytes, the tag included) opened into `into`
 * (at least stored.length - TAG_BYTES): the zstd frame, its first bytes. FormatError
 * BAD_CHECKSUM when it does not authenticate.
 */
export function openFrame(u: Pick<UnitInfo, 'key' | 'gen' | 'unit' | 'revision' | 'where'>, frame: number, rawBytes: number, stored: Buffer, into: Buffer): Buffer {
  return openInto(u.key!, NONCE_TAG.unitFrame, frame, aad.unitFrame(u.gen, u.unit, u.revision, frame, rawBytes), stored, into, `${u.where}: frame ${frame}`)
}

/** A unit that ends before a frame its seek table lists is a damaged stored file (FormatError TRUNCATED); other errors stay as they are. */
function shortUnit(err: unknown, u: UnitInfo, frame: number): unknown {
  if (err instanceof StoreError && err.code === 'TRUNCATED') return new FormatError('TRUNCATED', `${u.where}: frame ${frame} is truncated (the unit ends early)`)
  return err
}

/** Whether a decompressed frame matches its frame check (the hash over its block hashes, with the repository's seed). */
export function checkFrame(alg: HashAlg, raw: Buffer, check: Buffer, seed: bigint): boolean {
  const blocks = raw.length / BLOCK_BYTES
  const hashes = Buffer.allocUnsafe(blocks * HASH_BYTES)
  hashBlocks(alg, raw, 0, blocks, hashes, 0, seed)
  return frameCheck(alg, hashes, seed).equals(check)
}
