import fs from 'node:fs'
import { LRUCache } from 'lru-cache'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import {
  decodeSeekTable, decodeUnitHeader, decodeUnitTrailer, UNIT_HEADER_BYTES, UNIT_TRAILER_BYTES, type SeekTable,
} from '../format/unit.js'
import { FormatError } from '../format/errors.js'
import { keys, type Repository } from '../repo/repository.js'

/** Counters a mount exposes for measuring which caching pays. */
export interface FrameStats {
  hits: number
  misses: number
  sharedLoads: number
  readaheads: number
  decompressedBytes: number
  /** Units closed to stay within the open-unit bound. */
  unitsClosed: number
}

interface UnitInfo {
  fh: fs.promises.FileHandle
  table: SeekTable
  /** Loads reading through fh right now: such a unit is not closed. */
  users: number
  /** Closed to stay within the open-unit bound: open it again to read. */
  closed: boolean
  gen: number
  id: number
}

/**
 * A native read path (bfs's C read path: src/native/fastpath.ts's FastPath, wired in by the
 * fuse adapter; the vfs layer does not import native/) that serves reads without this
 * process's event loop, once it knows a handle's extents and the units they point into.
 */
export interface NativeReads {
  unit(id: number, fd: number, frameBytes: number, frames: Float64Array): void
  /** Unregisters a unit unless a read holds it; returns how many do (0: its fd may be closed), or -1 if read since last asked (kept, once). */
  retire(id: number): number
  file(handle: number, size: number, extents: Float64Array): void
  release(handle: number): void
}

/**
 * Asynchronous access to decompressed frames for the mount: repository files are read with
 * non-blocking I/O (never a sync call in the serving process), decompressed frames sit in
 * a byte-bounded LRU, and concurrent misses of one frame share a single load.
 */
export class FrameCache {
  private readonly frames: LRUCache<string, Buffer>
  private readonly loading = new Map<string, Promise<Buffer>>()
  /** Units open or opening, least recently used first (each holds a file descriptor). */
  private readonly units = new Map<string, Promise<UnitInfo>>()
  /** Native ids of units (gen:unit → id); the units of `units` that are open. */
  private readonly unitIds = new Map<string, number>()
  private readonly openUnits = new Map<string, UnitInfo>()
  private native: NativeReads | null = null
  private readonly dec = new FrameDecompressor()
  readonly stats: FrameStats = { hits: 0, misses: 0, sharedLoads: 0, readaheads: 0, decompressedBytes: 0, unitsClosed: 0 }

  constructor(
    private readonly repo: Repository,
    cacheBytes: number,
    /** Units kept open at most (one fd each), beyond those in use. */
    private readonly maxOpenUnits = DEFAULT_OPEN_UNITS,
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
   * resident memory. Invariant that makes reuse safe: a buffer get() resolved with is
   * valid until its caller next yields to the event loop (Vfs.read copies out at once);
   * a frame is recycled only when the LRU evicts it, which happens inside a later load.
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

  private unit(gen: number, unit: number): Promise<UnitInfo> {
    const k = `${gen}:${unit}`
    let p = this.units.get(k)
    if (p) {
      // most recently used last
      this.units.delete(k)
      this.units.set(k, p)
      return p
    }
    p = this.openUnit(gen, unit, this.unitId(gen, unit))
    this.units.set(k, p)
    p.then(
      (info) => {
        if (this.closed || this.units.get(k) !== p) return
        this.openUnits.set(k, info)
        this.registerNative(info)
        this.trimUnits(k)
      },
      () => {
        if (this.units.get(k) === p) this.units.delete(k)
      },
    )
    return p
  }

  /**
   * Closes the least recently used units beyond maxOpenUnits: a mount that reads a large
   * generation, or many, would otherwise hold a descriptor per unit it ever touched. A unit
   * a load or a native read is using right now stays (the bound is exceeded for a while),
   * and so does `keep`, the one just opened.
   */
  private trimUnits(keep: string): void {
    if (this.openUnits.size <= this.maxOpenUnits) return
    const readNatively: string[] = []
    for (const k of this.units.keys()) {
      if (this.openUnits.size <= this.maxOpenUnits) break
      const info = this.openUnits.get(k)
      if (!info || k === keep || info.users > 0) continue
      const held = this.native ? this.native.retire(info.id) : 0
      if (held < 0) readNatively.push(k) // read natively since last asked: a second chance
      if (held !== 0) continue
      info.closed = true
      this.openUnits.delete(k)
      this.units.delete(k)
      this.stats.unitsClosed++
      info.fh.close().catch(() => undefined)
    }
    for (const k of readNatively) {
      const p = this.units.get(k)!
      this.units.delete(k)
      this.units.set(k, p)
    }
  }

  /** Units open now. */
  get openUnitCount(): number {
    return this.openUnits.size
  }

  /** The native read path's id for a unit (assigned on first use, never reused). */
  unitId(gen: number, unit: number): number {
    const k = `${gen}:${unit}`
    let id = this.unitIds.get(k)
    if (id === undefined) {
      id = this.unitIds.size
      this.unitIds.set(k, id)
    }
    return id
  }

  /** Starts opening a unit not opened yet, so the native read path learns it; true if it did (a unit open already counts as used now). */
  ensureUnit(gen: number, unit: number): boolean {
    const opened = !this.units.has(`${gen}:${unit}`)
    this.unit(gen, unit).catch(() => undefined)
    return opened
  }

  /** Hands reads to a native path: every unit opened so far, and from now on, is registered with it. */
  attachNative(n: NativeReads): void {
    this.native = n
    for (const info of this.openUnits.values()) this.registerNative(info)
  }

  private registerNative(info: UnitInfo): void {
    const { id, gen } = info
    if (!this.native || id >= MAX_NATIVE_UNITS) return
    const t = info.table
    const frames = new Float64Array(t.entries.length * 3)
    for (let f = 0; f < t.entries.length; f++) {
      frames[3 * f] = t.offsets[f]!
      frames[3 * f + 1] = t.entries[f]!.compBytes
      frames[3 * f + 2] = t.entries[f]!.rawBytes
    }
    try {
      this.native.unit(id, info.fh.fd, this.repo.manifest(gen).frameBlocks * BLOCK_BYTES, frames)
    } catch {
      // a table the native path refuses (or no memory): its reads stay in JavaScript,
      // which checks and reports what is wrong with the unit
    }
  }

  private async openUnit(gen: number, unit: number, id: number): Promise<UnitInfo> {
    const m = this.repo.manifest(gen)
    const ref = m.units[unit]
    const path = this.repo.store.path(keys.unit(gen, unit))
    if (!ref) throw new FormatError('BAD_VALUE', `gen${gen} has no unit ${unit}`)
    const fh = await fs.promises.open(path, 'r')
    try {
      const size = (await fh.stat()).size
      const head = await readAt(fh, 0, UNIT_HEADER_BYTES, path)
      const header = decodeUnitHeader(head, path)
      if (header.genId !== gen || header.unitIndex !== unit || header.rawBlocks !== ref.rawBlocks || header.frameBlocks !== m.frameBlocks) {
        throw new FormatError('BAD_VALUE', `${path}: unit header does not match its manifest`)
      }
      if (size < UNIT_HEADER_BYTES + UNIT_TRAILER_BYTES) throw new FormatError('TRUNCATED', `${path}: unit file truncated`)
      const t = decodeUnitTrailer(await readAt(fh, size - UNIT_TRAILER_BYTES, UNIT_TRAILER_BYTES, path), size, header, path)
      const table = decodeSeekTable(await readAt(fh, t.seekTableOffset, t.tableBytes, path), t.tableCheck, header, t.seekTableOffset, BLOCK_BYTES, path)
      return { fh, table, users: 0, closed: false, gen, id }
    } catch (err) {
      await fh.close()
      throw err
    }
  }

  /**
   * Opens gen's units and reads their seek tables in the background (at most
   * WARM_UNITS of them, 4 at a time), so the first cold read of each unit pays one disk
   * read instead of four (open, header, trailer, seek table). Errors are left for the
   * reads that need the unit.
   */
  warm(gen: number): void {
    const n = Math.min(this.repo.manifest(gen).units.length, WARM_UNITS)
    let next = 0
    const lane = async (): Promise<void> => {
      while (next < n && !this.closed) await this.unit(gen, next++).catch(() => undefined)
    }
    for (let k = 0; k < 4; k++) void lane()
  }

  private closed = false

  /** Key and position of stream block `sb` of generation `gen`. */
  locate(gen: number, sb: number): { key: string; unit: number; frame: number; offset: number } {
    const m = this.repo.manifest(gen)
    const unit = Math.floor(sb / m.unitBlocks)
    const inUnit = sb - unit * m.unitBlocks
    const frame = Math.floor(inUnit / m.frameBlocks)
    return { key: `${gen}:${unit}:${frame}`, unit, frame, offset: (inUnit - frame * m.frameBlocks) * BLOCK_BYTES }
  }

  /** The decompressed frame `frame` of unit `unit` of `gen`. */
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
    const m = this.repo.manifest(gen)
    if (unit >= m.units.length) return
    const frames = Math.ceil(m.units[unit]!.rawBlocks / m.frameBlocks)
    if (frame >= frames) {
      if (unit + 1 < m.units.length) this.prefetch(gen, unit + 1, frame - frames)
      return
    }
    this.get(gen, unit, frame, true).catch(() => undefined)
  }

  private async load(gen: number, unit: number, frame: number): Promise<Buffer> {
    let u = await this.unit(gen, unit)
    while (u.closed) u = await this.unit(gen, unit) // closed by trimUnits meanwhile: open again
    u.users++
    try {
      return await this.loadFrom(u, gen, unit, frame)
    } finally {
      u.users--
    }
  }

  private async loadFrom(u: UnitInfo, gen: number, unit: number, frame: number): Promise<Buffer> {
    const e = u.table.entries[frame]
    if (!e) throw new FormatError('BAD_VALUE', `gen${gen}: frame ${frame} is past the end of unit ${unit}`)
    const off = u.table.offsets[frame]!
    const scratch = this.compBuffer(e.compBytes)
    let out: Buffer
    let n: number
    try {
      const comp = await readAt(u.fh, off, e.compBytes, `unit ${gen}:${unit}`, scratch)
      out = this.frameBuffer(e.rawBytes)
      try {
        n = this.dec.decompressInto(out, comp)
      } catch (err) {
        this.recycle(out)
        throw new FormatError('BAD_CHECKSUM', `${this.repo.store.path(keys.unit(gen, unit))}: frame ${frame} is corrupt (${(err as Error).message})`)
      }
    } finally {
      if (this.spareComp.length < 8) this.spareComp.push(scratch)
    }
    if (n !== e.rawBytes) throw new FormatError('BAD_VALUE', `unit ${gen}:${unit}: frame ${frame} has ${n} bytes, expected ${e.rawBytes}`)
    this.stats.decompressedBytes += n
    this.frames.set(`${gen}:${unit}:${frame}`, out)
    return out
  }

  async close(): Promise<void> {
    this.closed = true
    for (const p of this.units.values()) {
      try {
        await (await p).fh.close()
      } catch {
        // already failed to open
      }
    }
    this.units.clear()
    this.frames.clear()
  }
}

/** Unit ids the native read path accepts (its table holds 2^22; fastpath.ts's MAX_NATIVE_UNITS, which a test compares). */
export const MAX_NATIVE_UNITS = 1 << 22

/** Units whose seek tables warm() loads ahead (each keeps a file open). */
const WARM_UNITS = 256

/** Units a mount keeps open by default (one file descriptor each; see trimUnits). */
export const DEFAULT_OPEN_UNITS = 1024

/** Frames at least this big are pooled (smaller ones are the short last frame of a unit). */
const FRAME_POOL_MIN = 64 << 10

async function readAt(fh: fs.promises.FileHandle, pos: number, len: number, what: string, into?: Buffer): Promise<Buffer> {
  const b = into ? into.subarray(0, len) : Buffer.allocUnsafe(len)
  let got = 0
  while (got < len) {
    const { bytesRead } = await fh.read(b, got, len - got, pos + got)
    if (bytesRead === 0) throw new FormatError('TRUNCATED', `${what}: unexpected end of file at byte ${pos + got}`)
    got += bytesRead
  }
  return b
}
