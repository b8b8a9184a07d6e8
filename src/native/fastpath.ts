/**
 * Typed wrapper of bfs's native fast path (native/nread.c, native/hooks.c,
 * native/fastpath_napi.c; see native-notes/native-addon.md, "The native read path").
 *
 * A fast path serves reads of registered file handles without JavaScript: the mount hands
 * {@link FastPath.hooks} to the patched fuse-native binding, whose libfuse threads then call
 * the C read path for every read, and fall back to the JavaScript `read` handler whenever it
 * answers "not here" (a handle or unit not registered, a deferred extent, an I/O error, a
 * corrupt frame). The vfs registers units and handles through {@link FastPath.unit},
 * {@link FastPath.file}, {@link FastPath.release} and {@link FastPath.retire}.
 *
 * Everything here runs on the calling thread and never waits. Only
 * {@link FastPath.readForTest} does I/O (the same C read a libfuse thread does).
 */
import { loadAddon } from './index.js'

/** Unit ids the native read path accepts (its table holds 2^22). */
export const MAX_NATIVE_UNITS = 1 << 22

/** The unit id of an extent only JavaScript serves (the native path answers -1 for it). */
export const NATIVE_DEFERRED = 0xffffffff

/** Counters of the native read path since it was created. */
export interface NativeReadStats {
  /** Reads answered natively (including reads at or past the end of the file). */
  served: number
  /** Reads handed back to JavaScript. */
  fallbacks: number
  /** Frame cache hits and misses (a miss decompresses one frame). */
  hits: number
  misses: number
  /** Bytes the frame cache holds (buffers and records). */
  cachedBytes: number
  /** Misses that waited for another thread's load of the same frame instead of loading it again. */
  sharedLoads: number
  /** Opens answered on the libfuse threads (native/hooks.c hook_open), and those it handed to JavaScript. */
  opens: number
  openFallbacks: number
  /** Releases of native handles answered on the libfuse threads. */
  releases: number
  /** Frame buffers allocated: as the cache grows; a full cache reuses the buffers it evicts (issue 15). */
  buffers: number
}

/** Handles the native open gives are this and up (JavaScript's stay below; nread.h NR_NATIVE_FH). */
export const NATIVE_FH = 0x80000000

/** Where a unit is, for the native open: its stream, its number there, and the stream's unit size in 4 KiB blocks. */
export interface UnitPlace {
  stream: number
  unit: number
  unitBlocks: number
}

/** An encrypted unit's frame key (format.md §2.9, §2.22): AEAD number (native/aead.h), 32-byte object key, the unit's revision. */
export interface UnitSeal {
  alg: number
  key: Buffer
  revision: number
}

export interface FastPathOptions {
  /** Bytes of decompressed frames the native read path caches; undefined: no native read path. */
  readCacheBytes?: number
  /**
   * The stat cache getattr is answered from on the libfuse threads (only for immutable
   * trees: nothing in it is ever invalidated); undefined: none. It keeps the stats readdir
   * replies carry, and with `getattr` also those getattr replies carry; at most
   * `maxEntries` (default 262,144, about 190 bytes each with the path).
   */
  statCache?: { maxEntries?: number; getattr?: boolean }
}

/** Counters of the stat cache. */
/**
 * What readdir in C (native/dirsrc.c) needs to serve a format 2 generation on the libfuse
 * threads: the repository's directory, the piece id key, the inode base, the root's stat
 * (STAT_FIELDS doubles) and its piece reference ([run, pack, offset, storedLen, entries] and
 * id; null for an empty root).
 */
export interface DirSource {
  root: Buffer
  key: Buffer
  inoBase: number
  rootStat: Float64Array
  rootRef: Float64Array | null
  rootId: Buffer | null
}

/** Readdirs served in C, and those asked of JavaScript after C could not. */
export interface DirSourceStats {
  served: number
  fallbacks: number
  /** listings loaded in C for a lookup whose directory was never listed (hooks.c hook_getattr) */
  lookups: number
  /** lookups that tried to load a listing in C and handed the path to JavaScript */
  lookupFallbacks: number
}

/** Tests: the path of a pack as readdir in C opens it. */
export function packPathForTest(root: string, run: number, pack: number): string | null {
  return addon().packPathForTest(Buffer.from(root), run, pack)
}

export interface StatCacheStats {
  entries: number
  /** getattr answered from the cache (never reached JavaScript), and not. */
  hits: number
  misses: number
  inserts: number
  /** readdirs answered on the libfuse threads from listings published ahead (format 1: FastPath.publishListing). */
  listed: number
  /** A format 2 generation's readdir in C ({@link DirSourceStats}): served, handed to JavaScript. */
  readdirInC?: number
  readdirFallbacks?: number
  /** Listings loaded in C for lookups ({@link DirSourceStats.lookups}), and lookups handed to JavaScript after trying. */
  lookupsInC?: number
  lookupFallbacks?: number
}

/** What the stat cache keeps of a stat, as {@link FastPath.statGetForTest} shows it. */
export interface CachedStat {
  mode: number
  size: number
  ino: number
  nlink: number
  mtimeSec: number
  mtimeNsec: number
  /** 1: no xattrs (getxattr / listxattr answered natively); 2: never cached. */
  flags: number
}

/** Default bound of the stat cache (entries). */
export const STAT_CACHE_ENTRIES = 262_144

/** The hook table for fuse-native's `hooks` mount option (a napi external; opaque here). */
export type FuseHooks = { readonly __brand: 'fuse_native_hooks_t' }

type Ext = { readonly __brand: 'fastpath' }

interface FastPathAddon {
  fastPathNew(readCacheBytes: number, statEntries: number, statGetattr: boolean): Ext
  fastPathId(fp: Ext): number
  fastPathById(id: number): Ext
  fastPathCache(fp: Ext, bytes: number): void
  fastPathUnit(fp: Ext, id: number, fd: number, frameBytes: number, frames: Float64Array, stream?: number, unit?: number, unitBlocks?: number, dict?: number, sealAlg?: number, sealKey?: Buffer, revision?: number): void
  fastPathDict(fp: Ext, slot: number, dict: Buffer): void
  fastPathRetire(fp: Ext, id: number): number
  fastPathFile(fp: Ext, fh: number, size: number, extents: Float64Array): void
  fastPathRelease(fp: Ext, fh: number): void
  fastPathInfo(fp: Ext): Float64Array
  fastPathClose(fp: Ext): number
  fastPathRead(fp: Ext, fh: number, dst: Buffer, pos: number): number
  fastPathHooks(fp: Ext): FuseHooks
  fastPathTestLoadDelay(fp: Ext, us: number): void
  fastPathStatInfo(fp: Ext): Float64Array
  fastPathStatSeen(fp: Ext, dir: Buffer | null, name: Buffer | null, fields: Float64Array, flags: number, more?: boolean): void
  fastPathStatGet(fp: Ext, path: Buffer): Float64Array | null
  fastPathPublishListing(fp: Ext, dir: Buffer, names: Buffer, stats: Float64Array): number
  fastPathDirSource(fp: Ext, root: Buffer, key: Buffer, inoBase: number, rootStat: Float64Array, rootRef: Float64Array | null, rootId: Buffer | null): void
  fastPathDirInfo(fp: Ext): Float64Array
  fastPathReaddirForTest(fp: Ext, path: Buffer): Array<[name: string, ino: number, mode: number]> | null
  fastPathGetattrForTest(fp: Ext, path: Buffer): Float64Array | null
  packPathForTest(root: Buffer, run: number, pack: number): string | null
  fastPathOpenFiles(fp: Ext, on: boolean): void
  fastPathAdopt(fp: Ext, fh: number): boolean
  fastPathOpenForTest(fp: Ext, path: Buffer): number
  fastPathReleaseForTest(fp: Ext, fh: number): number
}

/** Every fast-path function of the addon (checked at first use, and against the built addon by test/native.test.ts, as ADDON_FUNCTIONS in index.ts). */
export const FASTPATH_FUNCTIONS = [
  'fastPathNew',
  'fastPathId',
  'fastPathById',
  'fastPathCache',
  'fastPathUnit',
  'fastPathDict',
  'fastPathRetire',
  'fastPathFile',
  'fastPathRelease',
  'fastPathInfo',
  'fastPathClose',
  'fastPathRead',
  'fastPathHooks',
  'fastPathTestLoadDelay',
  'fastPathStatInfo',
  'fastPathStatSeen',
  'fastPathStatGet',
  'fastPathPublishListing',
  'fastPathDirSource',
  'fastPathDirInfo',
  'fastPathReaddirForTest',
  'fastPathGetattrForTest',
  'packPathForTest',
  'fastPathOpenFiles',
  'fastPathAdopt',
  'fastPathOpenForTest',
  'fastPathReleaseForTest',
] as const satisfies ReadonlyArray<keyof FastPathAddon>
type FastPathFunction = { [K in keyof FastPathAddon]: FastPathAddon[K] extends (...args: never[]) => unknown ? K : never }[keyof FastPathAddon]
const everyFastPathFunctionListed: Exclude<FastPathFunction, (typeof FASTPATH_FUNCTIONS)[number]> extends never ? true : never = true
void everyFastPathFunctionListed

let checked: FastPathAddon | undefined
const addon = (): FastPathAddon => {
  if (checked) return checked
  const mod = loadAddon() as Record<string, unknown>
  const missing = FASTPATH_FUNCTIONS.filter((f) => typeof mod[f] !== 'function')
  if (missing.length) throw new Error(`bfs native addon is out of date (it has no ${missing.join(', ')}): run \`make native\``)
  return (checked = mod as unknown as FastPathAddon)
}

/**
 * One native fast path. Its C state is never freed (a libfuse thread may call a hook of it
 * until the process exits); {@link close} frees its tables.
 */
export class FastPath {
  private constructor(
    private readonly ext: Ext,
    /** Whether this fast path has a native read path. */
    readonly reads: boolean,
  ) {}

  /**
   * A new fast path.
   * @throws {RangeError} ERR_OUT_OF_RANGE for a negative or fractional cache size.
   */
  static create(opts: FastPathOptions): FastPath {
    const bytes = opts.readCacheBytes
    const sc = opts.statCache
    return new FastPath(addon().fastPathNew(bytes === undefined ? -1 : bytes, sc ? (sc.maxEntries ?? STAT_CACHE_ENTRIES) : 0, !!sc?.getattr), bytes !== undefined)
  }

  /**
   * The fast path created with this {@link id}, in this thread (a worker thread of the same
   * process sees the same C state: for tests of concurrent reads).
   */
  static byId(id: number, reads = true): FastPath {
    return new FastPath(addon().fastPathById(id), reads)
  }

  /** Its number in this process (for {@link byId}). */
  get id(): number {
    return addon().fastPathId(this.ext)
  }

  /** The table the patched fuse-native binding calls on its libfuse threads (`hooks` option). */
  hooks(): FuseHooks {
    return addon().fastPathHooks(this.ext)
  }

  /** Changes the frame cache's bound (frames beyond it are evicted at once). */
  setCacheBytes(bytes: number): void {
    addon().fastPathCache(this.ext, bytes)
  }

  /**
   * Unit `id` (< {@link MAX_NATIVE_UNITS}, never reused for another unit) is readable
   * through `fd`; every frame but the last holds `frameBytes` raw bytes, and `frames` holds
   * [file offset, compressed bytes, raw bytes] per frame. The fd must stay open until
   * {@link close} returned 0 or {@link retire} returned 0. Registering a registered id again
   * keeps the first. `seal`: an encrypted unit's AEAD (0 AES-256-GCM, 1 ChaCha20-Poly1305),
   * object key and revision: its frames (compressed bytes counting their tag) are opened in C
   * (native/aead.c) before they are decompressed; `at` is then required (the frames' AAD
   * names the stream and unit). The key is copied, and zeroed when the unit is retired.
   * @throws {TypeError} ERR_INVALID_ARG_VALUE for a table it refuses (it is then not registered).
   */
  unit(id: number, fd: number, frameBytes: number, frames: Float64Array, at?: UnitPlace, dict?: number, seal?: UnitSeal): void {
    if (at) addon().fastPathUnit(this.ext, id, fd, frameBytes, frames, at.stream, at.unit, at.unitBlocks, dict, seal?.alg, seal?.key, seal?.revision)
    else if (seal) throw new TypeError('a sealed unit needs its place (at)')
    else addon().fastPathUnit(this.ext, id, fd, frameBytes, frames, undefined, undefined, undefined, dict)
  }

  /**
   * Dictionary slot `slot` (1 … 255, never reused) holds the zstd dictionary `dict` (copied):
   * the frames of every unit registered with that slot were compressed with it (units a
   * compact gave a dictionary, format.md §2.9.1). Registering a set slot again keeps the first.
   * @throws {TypeError} ERR_INVALID_ARG_VALUE for a dictionary zstd refuses.
   */
  dict(slot: number, dict: Buffer): void {
    addon().fastPathDict(this.ext, slot, dict)
  }

  /**
   * From now on, a read-only open of a regular file whose whole map a listing made in C
   * holds (a format 2 generation's directories, native/dirsrc.c), every unit it reads
   * registered (with its {@link UnitPlace}), is answered on the libfuse thread: a handle
   * >= {@link NATIVE_FH} that JavaScript never sees opened, read natively, released in C.
   * Only where JavaScript's open would do nothing but that (no tape tier, no BI overlays).
   */
  openFiles(on: boolean): void {
    addon().fastPathOpenFiles(this.ext, on)
  }

  /**
   * A read of native handle `fh` fell back to JavaScript, which now serves it too: its
   * release then goes to JavaScript (which calls {@link release}). False if fh is not one.
   */
  adopt(fh: number): boolean {
    return addon().fastPathAdopt(this.ext, fh)
  }

  /** Tests: the open hook on this thread: the native handle, or -1 (JavaScript would open it). */
  openForTest(path: Buffer): number {
    return addon().fastPathOpenForTest(this.ext, path)
  }

  /** Tests: the release hook on this thread: 0 (released natively) or -1 (JavaScript's). */
  releaseForTest(fh: number): number {
    return addon().fastPathReleaseForTest(this.ext, fh)
  }

  /**
   * Unregisters unit `id` unless a read holds it. Returns 0 when done (its fd may be closed
   * and the id registered again), the number of reads holding it otherwise, or -1 when it
   * was read natively since the last call (it stays, this once: JavaScript cannot see
   * native reads, so this second chance keeps a unit being streamed in C registered).
   */
  retire(id: number): number {
    return addon().fastPathRetire(this.ext, id)
  }

  /**
   * Handle `fh` is a file of `size` bytes whose data is `extents`: [file offset, length,
   * unit id or {@link NATIVE_DEFERRED}, offset in the unit's raw bytes] per extent, in file
   * order; gaps read as zeros. Replaces an earlier registration of `fh`.
   * @throws {TypeError} ERR_INVALID_ARG_VALUE for extents it refuses.
   */
  file(fh: number, size: number, extents: Float64Array): void {
    addon().fastPathFile(this.ext, fh, size, extents)
  }

  /** Forgets handle `fh` (in `release`: the kernel sends no read of a handle after it). */
  release(fh: number): void {
    addon().fastPathRelease(this.ext, fh)
  }

  info(): NativeReadStats {
    const v = addon().fastPathInfo(this.ext)
    return { served: v[0]!, fallbacks: v[1]!, hits: v[2]!, misses: v[3]!, cachedBytes: v[4]!, sharedLoads: v[5]!, opens: v[6] ?? 0, openFallbacks: v[7] ?? 0, releases: v[8] ?? 0, buffers: v[9] ?? 0 }
  }

  /** From now on, readdir of this generation in C where it can (once per fast path). */
  dirSource(d: DirSource): void {
    addon().fastPathDirSource(this.ext, d.root, d.key, d.inoBase, d.rootStat, d.rootRef, d.rootId)
  }

  dirInfo(): DirSourceStats {
    const v = addon().fastPathDirInfo(this.ext)
    return { served: v[0]!, fallbacks: v[1]!, lookups: v[2] ?? 0, lookupFallbacks: v[3] ?? 0 }
  }

  /** Tests: what the hook table's getattr answers on a libfuse thread for `path` ([ino, mode, size, nlink]), or null (asks JavaScript). */
  getattrForTest(path: Buffer): [ino: number, mode: number, size: number, nlink: number] | null {
    const v = addon().fastPathGetattrForTest(this.ext, path)
    return v ? [v[0]!, v[1]!, v[2]!, v[3]!] : null
  }

  /** Tests: what a libfuse thread's readdir of `path` would give the filler ([name, ino, mode] each), or null (asks JavaScript). */
  readdirForTest(path: Buffer): Array<[name: string, ino: number, mode: number]> | null {
    return addon().fastPathReaddirForTest(this.ext, path)
  }

  statInfo(): StatCacheStats {
    const v = addon().fastPathStatInfo(this.ext)
    return { entries: v[0]!, hits: v[1]!, misses: v[2]!, inserts: v[3]!, listed: v[4] ?? 0 }
  }

  /**
   * Tests: what the binding hands the stat cache from a readdir reply (`dir` + "/" + `name`)
   * or, with `dir` null, from a getattr reply (`name` is the whole path). Raw bytes.
   */
  statSeenForTest(dir: Buffer | null, name: Buffer, st: Omit<CachedStat, 'flags'>, flags = 0, more = false): void {
    addon().fastPathStatSeen(this.ext, dir, name, new Float64Array([st.mode, st.size, st.ino, st.nlink, st.mtimeSec, st.mtimeNsec]), flags, more)
  }

  /** Tests: a whole readdir reply of `dir` (what the binding hands the stat cache, entry by entry, then the end). */
  statReplyForTest(dir: Buffer, entries: Array<[name: Buffer, st: Omit<CachedStat, 'flags'>, flags?: number]>): void {
    for (const [name, st, flags] of entries) this.statSeenForTest(dir, name, st, flags ?? 0, true)
    addon().fastPathStatSeen(this.ext, dir, null, new Float64Array(0), 0, false)
  }

  /**
   * A directory's whole readdir answer, published before the kernel asks (format 1's mount):
   * `names` NUL-ended, `.` and `..` first, `stats` packed (vfs/statpack.ts, one per name).
   * The libfuse threads then answer its readdir, and its entries' getattr, without
   * JavaScript. Only for trees that never change. Returns the entries published (0: none).
   */
  publishListing(dir: Buffer, names: Buffer, stats: Float64Array): number {
    return addon().fastPathPublishListing(this.ext, dir, names, stats)
  }

  /** Tests: what a libfuse thread's getattr of `path` would be answered with, or null (asks JavaScript). */
  statGetForTest(path: Buffer): CachedStat | null {
    const v = addon().fastPathStatGet(this.ext, path)
    return v && { mode: v[0]!, size: v[1]!, ino: v[2]!, nlink: v[3]!, mtimeSec: v[4]!, mtimeNsec: v[5]!, flags: v[6]! }
  }

  /** Tests: that stat whole, packed as statpack.ts packs it (STAT_FIELDS numbers, flags last), or null. */
  statPackedForTest(path: Buffer): number[] | null {
    const v = addon().fastPathStatGet(this.ext, path)
    return v && Array.from(v.subarray(7))
  }

  /** Tests only: every frame load first sleeps `us` microseconds, so that concurrent misses of one frame meet. */
  setTestLoadDelay(us: number): void {
    addon().fastPathTestLoadDelay(this.ext, us)
  }

  /**
   * Stops the native read path (later reads go to JavaScript) and returns the reads still in
   * progress. When that is 0 its tables are freed and the unit fds may be closed; otherwise
   * ask again later. Never waits. Also empties the stat cache (call it once the mount is gone).
   */
  close(): number {
    return addon().fastPathClose(this.ext)
  }

  /**
   * The C read a libfuse thread does, on this thread: up to `dst.length` bytes of handle
   * `fh` at `pos` into `dst`. Returns the count (0 at the end of the file), or -1 where
   * the read would be served in JavaScript. For tests (it blocks on disk I/O).
   */
  readForTest(fh: number, dst: Buffer, pos: number): number {
    return addon().fastPathRead(this.ext, fh, dst, pos)
  }
}

/** A new fast path (see {@link FastPath.create}). */
export function createFastPath(opts: FastPathOptions): FastPath {
  return FastPath.create(opts)
}
