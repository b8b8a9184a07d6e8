import { BLOCK_BYTES, HASH_BYTES, hashBlocks, zeroBlockHash, type HashAlg } from '../codec/hash.js'
import { FrameDecompressor, rethrowUnavailable } from '../codec/zstd.js'
import type { Extent } from '../format/maps.js'
import { FormatError } from '../format/errors.js'
import { syncOf, type Store, type SyncBlobReader } from '../store/store.js'
import { Kind, firstExtentEndingAfter, overlayClaims, type Claimer, type ObjectRef, type ReadExtent } from './extents.js'
import { checkFrame, FrameCache, openFrame } from './frames.js'
import { MAX_NATIVE_UNITS, NATIVE_DEFERRED, type NativeSink } from './native.js'
import type { GenGeometry, StreamSource } from './source.js'
import { DEFAULT_OPEN_UNITS, UnitTable, WARM_UNITS, type ReaderStats, type UnitSealing } from './units.js'

export interface ReaderOptions {
  store: Store
  source: StreamSource
  hashAlg: HashAlg
  /** The repository's XXH64 seed (Repo2.blockSeed: 0 unless encrypted, format.md §2.22): frame checks and block hashes are checked with it. */
  blockSeed: bigint
  /** Bytes of decompressed frames kept (default 16 MiB; never less than 1 MiB). */
  cacheBytes?: number
  /** Unit blobs open at once, one descriptor each on disk (default 1024; beyond it the least recently used close). */
  maxOpenUnits?: number
  /** Frames prefetched ahead of a sequential reader (async path; 0 disables). Default: about readaheadBytes of frames. */
  readaheadFrames?: number
  /** Default 1 MiB. */
  readaheadBytes?: number
  /** Check every frame's frame check on load, not only zstd's content checksum (default false). */
  fullCheck?: boolean
  /** Layers that serve ranges of objects themselves (deferred extents). */
  claimers?: Claimer[]
  /** An encrypted repository's unit keys (§2.9): its units are v2 and sealed; a plain one is refused. */
  sealing?: UnitSealing | null
}

/** An open object: its extents with kinds, its size, and where the last read ended (readahead). */
export interface OpenFile {
  readonly extents: readonly ReadExtent[]
  readonly sizeBytes: number
  readonly object: ObjectRef | undefined
  /** Some extent is Deferred. */
  readonly claimed: boolean
  /** Where the last read ended: a read starting here is sequential and triggers readahead. */
  nextPos: number
}

/**
 * A piece of an object visitSync hands out: `bytes` bytes at `filePos`, being `data[offset…]`,
 * or zeros when data is null (a hole). The object and its buffer are valid only during the
 * callback (the buffer is a cached frame, reused later).
 */
export interface Piece {
  filePos: number
  bytes: number
  data: Buffer | null
  offset: number
}

/** Old block hashes along an object, for backup comparisons (see BlockReader.hashCursor). */
export interface HashCursor {
  /**
   * Writes the stored hashes of file blocks fb…fb+n into out[0…n·8) (a hole hashes as a zero
   * block). A deferred block's hash is unknown: it is marked 1 in `unknown` (when given; 0
   * for the others) and its bytes in `out` are left as they were — treat it as changed.
   * Fastest when fb only grows (the extents are then walked once).
   */
  fill(fb: number, n: number, out: Buffer, unknown?: Uint8Array): void
}

/** What scanUnitSync found in a unit: frames and raw bytes scanned (bad frames included), its size, and every bad frame. */
export interface UnitScan {
  frames: number
  rawBytes: number
  sizeBytes: number
  bad: Array<{ frame: number; reason: string }>
  /** Format 2: the unit's dead ranges (unit-relative blocks a prune zeroed), when it has any. */
  dead?: Array<{ start: number; blocks: number }>
}

/** How far ahead a sequential reader is prefetched by default. */
const READAHEAD_BYTES = 1 << 20

/** Units nativeExtents() starts opening for the native read path. */
const EAGER_UNITS = 64

/**
 * The one reader of stored data: object extents → stream block → unit → frame → store
 * range read → zstd → bytes, with the frame cache, single-flight loads and readahead here
 * once. Entry points: asynchronous (read, prefetch, warm — the mount; never blocks) and
 * synchronous (readSync, visitSync, scanUnitSync — the CLI and worker threads, through
 * store.sync). hashCursor serves backup's comparisons, attachNative/nativeExtents the native
 * read path. One instance per thread (workers build theirs from a ReaderSpec).
 *
 * Errors are thrown as they are: FormatError (BAD_CHECKSUM naming the unit and the frame,
 * TRUNCATED, BAD_VALUE) and StoreError; callers map them (the vfs to EIO).
 */
export class BlockReader {
  readonly stats: ReaderStats = { hits: 0, misses: 0, sharedLoads: 0, readaheads: 0, decompressedBytes: 0, unitsClosed: 0 }
  private readonly units: UnitTable
  private readonly frames: FrameCache
  private readonly store: Store
  private readonly source: StreamSource
  private readonly hashAlg: HashAlg
  private readonly blockSeed: bigint
  private readonly readaheadFrames: number | undefined
  private readonly readaheadBytes: number
  private readonly claimers: readonly Claimer[]

  constructor(o: ReaderOptions) {
    this.store = o.store
    this.source = o.source
    this.hashAlg = o.hashAlg
    this.blockSeed = o.blockSeed
    this.units = new UnitTable(o.store, o.source, this.stats, o.maxOpenUnits ?? DEFAULT_OPEN_UNITS, o.sealing ?? null)
    this.frames = new FrameCache(this.units, o.source, this.stats, o.cacheBytes ?? 16 << 20, o.fullCheck ? { alg: o.hashAlg, seed: o.blockSeed } : null)
    this.readaheadFrames = o.readaheadFrames
    this.readaheadBytes = o.readaheadBytes ?? READAHEAD_BYTES
    this.claimers = o.claimers ?? []
  }

  private lastGen = -1
  private lastGeo: GenGeometry | null = null

  /** Generation geometry, remembering the last one (asked for once per piece read). */
  private geo(gen: number): GenGeometry {
    if (gen === this.lastGen) return this.lastGeo!
    const g = this.source.geometry(gen)
    this.lastGen = gen
    this.lastGeo = g
    return g
  }

  /** The native read path's id of a unit (assigned on first use, never reused). */
  unitId(gen: number, unit: number): number {
    return this.units.unitId(gen, unit)
  }

  /** Units open now. */
  get openUnitCount(): number {
    return this.units.openCount
  }

  /**
   * Opens an object: its resolved extents (sorted, gaps = holes; not copied, so not to be
   * changed afterwards) and size; `object` names it to claimers, whose claimed ranges
   * become Deferred extents.
   */
  file(extents: readonly Extent[], sizeBytes: number, object?: ObjectRef): OpenFile {
    let x: readonly ReadExtent[] = extents
    let claimed = false
    for (const c of this.claimers) {
      const ranges = c.claims(object, sizeBytes)
      if (ranges.length === 0) continue
      x = overlayClaims(x, ranges, c)
      claimed = true
    }
    return { extents: x, sizeBytes, object, claimed, nextPos: -1 }
  }

  // ---------------------------------------------------------------- async (the mount)

  /**
   * Reads up to `len` bytes at `pos` into `dst`; returns the count (0 at EOF). Holes read
   * as zeros. Sequential readers get the next frames prefetched. Never blocks.
   */
  async read(f: OpenFile, dst: Buffer, len: number, pos: number): Promise<number> {
    const end = Math.min(f.sizeBytes, pos + len)
    if (end <= pos) return 0
    const sequential = pos === f.nextPos
    f.nextPos = end
    const x = f.extents
    let p = pos
    let lastGen = 0
    let lastUnit = -1
    let lastFrame = -1
    for (let i = firstExtentEndingAfter(x, Math.floor(pos / BLOCK_BYTES)); p < end; i++) {
      const ext = x[i]
      const extStart = ext ? ext.fileBlock * BLOCK_BYTES : end
      if (p < extStart) {
        // a hole up to the next extent (or to the end)
        const z = Math.min(end, extStart)
        dst.fill(0, p - pos, z - pos)
        p = z
        if (!ext) break
      }
      const extEnd = Math.min(end, (ext.fileBlock + ext.count) * BLOCK_BYTES)
      if (f.claimed && ext.kind === Kind.Deferred) {
        if (p < extEnd) await ext.claimer!.read(f.object, p, dst.subarray(p - pos, extEnd - pos))
        p = extEnd
        continue
      }
      const gen = ext.gen
      const g = this.geo(gen)
      while (p < extEnd) {
        const fb = Math.floor(p / BLOCK_BYTES)
        const sb = ext.streamBlock + (fb - ext.fileBlock)
        const unit = Math.floor(sb / g.unitBlocks)
        const inUnit = sb - unit * g.unitBlocks
        const frame = Math.floor(inUnit / g.frameBlocks)
        // a hit costs no promise; a miss waits for its (possibly shared) load
        const data = this.frames.hit(gen, unit, frame) ?? (await this.frames.get(gen, unit, frame))
        const from = (inUnit - frame * g.frameBlocks) * BLOCK_BYTES + (p - fb * BLOCK_BYTES)
        const n = Math.min(data.length - from, extEnd - p)
        if (n <= 0) throw new FormatError('BAD_VALUE', `gen${gen}: stream block ${sb} is past the end of unit ${unit}`)
        if (this.frames.deadUnits.size) this.refuseDead(gen, unit, inUnit, n)
        data.copy(dst, p - pos, from, from + n)
        p += n
        lastGen = gen
        lastUnit = unit
        lastFrame = frame
      }
    }
    if (sequential && lastUnit >= 0) {
      const ahead = this.readaheadFrames ?? Math.max(1, Math.round(this.readaheadBytes / (this.geo(lastGen).frameBlocks * BLOCK_BYTES)))
      for (let k = 1; k <= ahead; k++) this.frames.prefetch(lastGen, lastUnit, lastFrame + k)
    }
    return end - pos
  }

  /** Starts loading a frame without waiting (errors are left for the real read). */
  prefetch(gen: number, unit: number, frame: number): void {
    try {
      this.frames.prefetch(gen, unit, frame)
    } catch {
      // an unknown generation: the real read reports it
    }
  }

  /** Opens gen's units and reads their seek tables in the background (at most maxUnits, 4 at a time). */
  warm(gen: number, maxUnits = WARM_UNITS): void {
    this.units.warm(gen, maxUnits)
  }

  // ---------------------------------------------------------------- sync (CLI, workers)

  /**
   * Calls `visit` for each piece of [pos, pos+len) of the object, in order (clipped to its
   * size): cached frame views (no copy) for data, null for holes, a scratch buffer for
   * deferred ranges. The Piece object and its buffer are valid only during the call.
   * Needs store.sync (StoreError ENOSYNC otherwise).
   */
  visitSync(f: OpenFile, pos: number, len: number, visit: (p: Piece) => void): void {
    const end = Math.min(f.sizeBytes, pos + len)
    if (end <= pos) return
    syncOf(this.store)
    const piece: Piece = { filePos: 0, bytes: 0, data: null, offset: 0 }
    const emit = (at: number, bytes: number, data: Buffer | null, offset: number): void => {
      piece.filePos = at
      piece.bytes = bytes
      piece.data = data
      piece.offset = offset
      visit(piece)
    }
    const x = f.extents
    let p = pos
    for (let i = firstExtentEndingAfter(x, Math.floor(pos / BLOCK_BYTES)); p < end; i++) {
      const ext = x[i]
      const extStart = ext ? ext.fileBlock * BLOCK_BYTES : end
      if (p < extStart) {
        const z = Math.min(end, extStart)
        emit(p, z - p, null, 0)
        p = z
        if (!ext) break
      }
      const extEnd = Math.min(end, (ext.fileBlock + ext.count) * BLOCK_BYTES)
      if (f.claimed && ext.kind === Kind.Deferred) {
        const c = ext.claimer!
        if (!c.readSync) throw new Error(`claimer ${c.id} cannot be read synchronously`)
        while (p < extEnd) {
          const n = Math.min(extEnd - p, 1 << 20)
          const scratch = (this.deferredScratch ??= Buffer.allocUnsafe(1 << 20)).subarray(0, n)
          c.readSync(f.object, p, scratch)
          emit(p, n, scratch, 0)
          p += n
        }
        continue
      }
      const gen = ext.gen
      const g = this.geo(gen)
      while (p < extEnd) {
        const fb = Math.floor(p / BLOCK_BYTES)
        const sb = ext.streamBlock + (fb - ext.fileBlock)
        const unit = Math.floor(sb / g.unitBlocks)
        const inUnit = sb - unit * g.unitBlocks
        const frame = Math.floor(inUnit / g.frameBlocks)
        const data = this.frames.getSync(gen, unit, frame)
        const from = (inUnit - frame * g.frameBlocks) * BLOCK_BYTES + (p - fb * BLOCK_BYTES)
        const n = Math.min(data.length - from, extEnd - p)
        if (n <= 0) throw new FormatError('BAD_VALUE', `gen${gen}: stream block ${sb} is past the end of unit ${unit}`)
        if (this.frames.deadUnits.size) this.refuseDead(gen, unit, inUnit, n)
        emit(p, n, data, from)
        p += n
      }
    }
  }

  private deferredScratch: Buffer | null = null

  /**
   * Refuses a read of `bytes` from unit-relative block `inUnit` on that lie in the unit's dead
   * ranges (blocks a prune zeroed: format.md §2.9, §2.20.7 step 7). A generation that reads
   * them was reclaimed while this reader read it without a lease (a read-only user, a lease
   * that lapsed): a read error, never the zeros stored there now.
   */
  private refuseDead(gen: number, unit: number, inUnit: number, bytes: number): void {
    const dead = this.frames.deadUnits.get(`${gen}:${unit}`)
    if (!dead) return
    const last = inUnit + Math.ceil(bytes / BLOCK_BYTES) - 1
    for (const d of dead) {
      if (d.start > last) break
      if (d.start + d.blocks > inUnit) throw new FormatError('BAD_VALUE', `stream ${gen}, unit ${unit}: block ${Math.max(inUnit, d.start)} was reclaimed by a prune (the generation read is no longer in the repository, or was read without a lease)`)
    }
  }

  /** Reads up to `len` bytes at `pos` into `dst` without yielding; returns the count (0 at EOF). */
  readSync(f: OpenFile, dst: Buffer, len: number, pos: number): number {
    const end = Math.min(f.sizeBytes, pos + len)
    if (end <= pos) return 0
    this.visitSync(f, pos, end - pos, (pc) => {
      const at = pc.filePos - pos
      if (pc.data) pc.data.copy(dst, at, pc.offset, pc.offset + pc.bytes)
      else dst.fill(0, at, at + pc.bytes)
    })
    return end - pos
  }

  /**
   * Reads and checks every frame of a unit (verify): 'zstd' decompresses (zstd checks its
   * content checksum), 'full' also compares each frame's frame check. A bad frame is listed,
   * not thrown; a unit that cannot be opened or validated throws. Bypasses the frame cache.
   */
  scanUnitSync(gen: number, unit: number, check: 'zstd' | 'full', expect?: Buffer): UnitScan {
    const u = this.units.unitSync(gen, unit)
    const blob = u.blob as SyncBlobReader
    const t = u.table
    const bad: UnitScan['bad'] = []
    let rawBytes = 0
    u.users++
    try {
      for (let i = 0; i < t.entries.length; i++) {
        const e = t.entries[i]!
        rawBytes += e.rawBytes
        if (this.scanComp.length < e.compBytes) this.scanComp = Buffer.allocUnsafe(e.compBytes)
        if (this.scanRaw.length < e.rawBytes) this.scanRaw = Buffer.allocUnsafe(e.rawBytes)
        let comp: Buffer
        try {
          comp = blob.readSync({ offset: t.offsets[i]!, length: e.compBytes }, this.scanComp)
        } catch (err) {
          if ((err as { code?: string }).code !== 'TRUNCATED') throw err
          bad.push({ frame: i, reason: 'truncated' })
          continue
        }
        const raw = this.scanRaw.subarray(0, e.rawBytes)
        if (u.key) {
          try {
            if (this.scanPlain.length < e.compBytes) this.scanPlain = Buffer.allocUnsafe(e.compBytes)
            comp = openFrame(u, i, e.rawBytes, comp, this.scanPlain)
          } catch (err) {
            if (!(err instanceof FormatError)) throw err
            bad.push({ frame: i, reason: 'authentication failed (corrupt or tampered with)' })
            continue
          }
        }
        try {
          const n = this.scanDec.decompressInto(raw, comp, u.dict?.dec)
          if (n !== e.rawBytes) throw new Error(`${n} bytes instead of ${e.rawBytes}`)
        } catch (err) {
          rethrowUnavailable(err)
          bad.push({ frame: i, reason: `cannot decompress: ${(err as Error).message}` })
          continue
        }
        if (check === 'full' && !checkFrame(this.hashAlg, raw, e.check, this.blockSeed)) bad.push({ frame: i, reason: 'checksum mismatch' })
        else if (expect) {
          // the stored block hashes (format 2's hashes file) of the unit's blocks, from its first
          const blocks = e.rawBytes / BLOCK_BYTES
          const first = (rawBytes - e.rawBytes) / BLOCK_BYTES
          if (this.scanHashes.length < blocks * HASH_BYTES) this.scanHashes = Buffer.allocUnsafe(blocks * HASH_BYTES)
          hashBlocks(this.hashAlg, raw, 0, blocks, this.scanHashes, 0, this.blockSeed)
          for (let b = 0; b < blocks; b++) {
            // a dead block (zeroed by a prune, §2.9) keeps its old stored hash: the frame check covers its zeros
            if (t.dead && inDead(t.dead, first + b)) continue
            const at = (first + b) * HASH_BYTES
            if (at + HASH_BYTES > expect.length || !this.scanHashes.subarray(b * HASH_BYTES, (b + 1) * HASH_BYTES).equals(expect.subarray(at, at + HASH_BYTES))) {
              bad.push({ frame: i, reason: `block ${first + b} of the unit does not match its stored block hash` })
              break
            }
          }
        }
      }
    } finally {
      u.users--
    }
    return { frames: t.entries.length, rawBytes, sizeBytes: blob.sizeBytes, bad, ...(t.dead ? { dead: t.dead } : {}) }
  }

  private scanComp = Buffer.alloc(0)
  private scanPlain = Buffer.alloc(0)
  private scanHashes = Buffer.alloc(0)
  private scanRaw = Buffer.alloc(0)
  private scanDecoder: FrameDecompressor | null = null
  private get scanDec(): FrameDecompressor {
    return (this.scanDecoder ??= new FrameDecompressor())
  }

  // ---------------------------------------------------------------- backup comparisons

  /**
   * Old block hashes along an object (the base version of a file or volume being backed
   * up), from the stored per-generation hashes: no frame is read. See HashCursor.
   */
  hashCursor(f: OpenFile): HashCursor {
    return hashCursor(f.extents, this.hashAlg, this.blockSeed, (gen) => this.source.blockHashes(gen))
  }

  // ---------------------------------------------------------------- native read path

  /** Lets a native path serve reads: every unit opened so far, and from now on, is registered with it (when its blob has a local descriptor). */
  attachNative(sink: NativeSink): void {
    this.units.attachNative(sink)
  }

  /**
   * An object's extents for the native read path, split at unit boundaries: [file offset,
   * length, unit id, offset in the unit] each, in bytes (native.ts). Deferred extents, and
   * extents in units open without a local descriptor, carry NATIVE_DEFERRED. Units not open
   * yet start opening (at most EAGER_UNITS per call); until they are, the native path hands
   * their reads back. null if a unit id is beyond what the native path can hold.
   */
  nativeExtents(f: OpenFile): Float64Array | null {
    const out: number[] = []
    let opening = 0
    for (const e of f.extents) {
      if (f.claimed && e.kind === Kind.Deferred) {
        out.push(e.fileBlock * BLOCK_BYTES, e.count * BLOCK_BYTES, NATIVE_DEFERRED, 0)
        continue
      }
      const g = this.geo(e.gen)
      let fb = e.fileBlock
      let sb = e.streamBlock
      let left = e.count
      while (left > 0) {
        const unit = Math.floor(sb / g.unitBlocks)
        const inUnit = sb - unit * g.unitBlocks
        const n = Math.min(left, g.unitBlocks - inUnit)
        const id = this.units.unitId(e.gen, unit)
        if (id >= MAX_NATIVE_UNITS) return null
        out.push(fb * BLOCK_BYTES, n * BLOCK_BYTES, this.units.isLocal(e.gen, unit) === false ? NATIVE_DEFERRED : id, inUnit * BLOCK_BYTES)
        // a huge file opens its first units now and the rest when first read (one fd each)
        if (opening < EAGER_UNITS && this.units.ensureUnit(e.gen, unit)) opening++
        fb += n
        sb += n
        left -= n
      }
    }
    return new Float64Array(out)
  }

  /**
   * Settles once the unit of the file's first data extent is open (so registered with the
   * native read path, when there is one), or undefined when it is open already or the file
   * has no data extent. Never rejects (a unit that cannot be opened fails the read that
   * needs it). A mount awaits it before it answers the open: nativeExtents only starts the
   * unit's opening, and the file's first read, sent right after the open, found the unit
   * not registered yet and went to JavaScript (a frame read and decompressed on the event
   * loop): for every unit's first file, the slowest reads of a cold mount.
   */
  firstUnitOpen(f: OpenFile): Promise<void> | undefined {
    for (const e of f.extents) {
      if (e.kind === Kind.Deferred) continue
      const unit = Math.floor(e.streamBlock / this.geo(e.gen).unitBlocks)
      if (this.units.isLocal(e.gen, unit) !== undefined) return undefined
      return this.units.unit(e.gen, unit).then(
        () => undefined,
        () => undefined,
      )
    }
    return undefined
  }

  /** Closes every unit and forgets every frame. */
  async close(): Promise<void> {
    await this.units.close()
    this.frames.clear()
  }
}

/** Whether unit-relative block b lies in one of the (sorted) dead ranges. */
function inDead(dead: ReadonlyArray<{ start: number; blocks: number }>, b: number): boolean {
  let lo = 0
  let hi = dead.length
  while (lo < hi) {
    const m = (lo + hi) >> 1
    const d = dead[m]!
    if (b < d.start) hi = m
    else if (b >= d.start + d.blocks) lo = m + 1
    else return true
  }
  return false
}

/** What the vfs gets: the asynchronous entry points only (a mount never blocks its event loop). */
export type AsyncBlockReader = Omit<BlockReader, 'readSync' | 'visitSync' | 'scanUnitSync'>

/**
 * Old block hashes along resolved extents (see HashCursor): the stored hashes of each
 * extent's generation (`blockHashes`), a zero-block hash for holes, "unknown" for deferred
 * extents. BlockReader.hashCursor serves an open object with it; backup's comparisons
 * (repo/objects.ts) call it with the base object's extents.
 */
export function hashCursor(list: readonly ReadExtent[], hashAlg: HashAlg, seed: bigint, blockHashes: (gen: number) => Buffer): HashCursor {
  const zero = zeroBlockHash(hashAlg, seed)
  let bx = 0
  let lastFb = 0
  return {
    fill: (fb: number, n: number, out: Buffer, unknown?: Uint8Array): void => {
      if (fb < lastFb) bx = firstExtentEndingAfter(list, fb)
      lastFb = fb
      if (unknown) unknown.fill(0, 0, n)
      let i = 0
      while (i < n) {
        const at = fb + i
        while (bx < list.length && list[bx]!.fileBlock + list[bx]!.count <= at) bx++
        const e = list[bx]
        if (!e || e.fileBlock > at) {
          const upto = e ? Math.min(n, e.fileBlock - fb) : n
          for (; i < upto; i++) zero.copy(out, i * HASH_BYTES)
          continue
        }
        const take = Math.min(n - i, e.fileBlock + e.count - at)
        if (e.kind === Kind.Deferred) {
          if (unknown) unknown.fill(1, i, i + take)
        } else {
          const sb = e.streamBlock + (at - e.fileBlock)
          blockHashes(e.gen).copy(out, i * HASH_BYTES, sb * HASH_BYTES, (sb + take) * HASH_BYTES)
        }
        i += take
      }
    },
  }
}
