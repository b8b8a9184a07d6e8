/**
 * A repository's data as one Store across its tiers (native-notes/tape.md §"Tiered store"):
 * a blob on disk is read from disk as always; a blob migrated to tape (the disk copy gone,
 * its catalog record kept) is still an ordinary blob of the same key and size:
 *
 * - its first and last bytes (a unit's header, seek table and trailer) come from the copies
 *   in the tape catalog, so opening a unit and reading its seek table never touch tape;
 * - any other range (frames) comes from the disk buffer cache, recalled from tape on a miss;
 * - `localFd` is the cache entry's descriptor when the blob is in the cache at open time
 *   (the native read path then serves it), else undefined (its reads go through JavaScript,
 *   which waits for the recall).
 *
 * The disk copy is removed only after the catalog record is durable, so a reader that does
 * not find a key on disk finds it in the catalog (re-read once on a miss); a reader that
 * opened the disk copy keeps reading it (an open descriptor keeps the file).
 *
 * Writes go to disk. The synchronous face serves disk blobs and cached ones; a range that
 * needs tape fails ENOSYNC there (recall first: prefetch()).
 */
import { BufferCache, withTimeout, type CacheStore, type FillOptions } from './cache.js'
import {
  checkInBlob, checkKey, StoreError,
  type BlobReader, type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreDescription, type SyncBlobReader, type SyncStore, getByOpen
} from './store.js'
import type { ColdEntry } from './tape.js'

/** Where a blob is: on disk, in the buffer cache (recalled), or only on tape. */
export type Residency = 'disk' | 'cache' | 'tape'

const isMissing = (err: unknown): boolean => err instanceof StoreError && err.code === 'ENOENT'

/** Copies `r` out of the catalog's copies of the blob's first and last bytes, or null if the range needs the blob. */
function fromCopies(e: ColdEntry, r: ByteRange, into: Buffer | undefined): Buffer | null {
  const end = r.offset + r.length
  let src: Buffer | null = null
  let at = 0
  if (end <= e.head.length) {
    src = e.head
    at = r.offset
  } else if (r.offset >= e.sizeBytes - e.tail.length) {
    src = e.tail
    at = r.offset - (e.sizeBytes - e.tail.length)
  }
  if (!src) return r.length === 0 ? Buffer.alloc(0) : null
  if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
  const out = into ? into.subarray(0, r.length) : Buffer.allocUnsafe(r.length)
  src.copy(out, 0, at, at + r.length)
  return out
}

/** A tape-resident blob: copies for its ends, the cache (recalled on first need) for the rest. */
class ColdBlob implements SyncBlobReader {
  private inner: Promise<BlobReader & SyncBlobReader> | null = null
  private innerSync: SyncBlobReader | null
  private closed = false

  constructor(
    readonly key: string,
    private readonly e: ColdEntry,
    private readonly cold: CacheStore | null,
    cached: SyncBlobReader | null,
    private readonly whereKey: string,
    private readonly o: ReadPolicy = {},
  ) {
    this.innerSync = cached
  }

  get sizeBytes(): number {
    return this.e.sizeBytes
  }

  get localFd(): number | undefined {
    return this.innerSync?.localFd
  }

  private check(r: ByteRange): void {
    if (this.closed) throw new StoreError('EIO', this.key, `${this.whereKey}: read after close`)
    checkInBlob(this.key, this.whereKey, r, this.e.sizeBytes)
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    this.check(r)
    if (this.innerSync) return this.innerSync.readSync(r, into)
    const c = fromCopies(this.e, r, into)
    if (c) return c
    if (!this.cold) throw new StoreError('ENOENT', this.key, `${this.whereKey}: on tape, and this reader has no catalog`)
    if (!this.inner) {
      if (this.o.offline === 'eio' && !this.cold.cache.has(this.key, this.e.sizeBytes)) {
        throw new StoreError('EIO', this.key, `${this.whereKey}: on tape and not in the buffer cache (offline: eio; recall it first)`)
      }
      // no deadline on the recall itself: it goes on for the next read (and other readers)
      const p = this.cold.open(this.key)
      this.inner = p
      p.catch(() => {
        if (this.inner === p) this.inner = null // the next read asks again
      })
    }
    // bfs's recall deadline applies to each read's wait, also when the unit was asked for
    // before (a prefetch at open): the read fails EIO, the recall goes on
    const ms = this.o.recallTimeoutMs
    const p = this.inner
    const b = ms === undefined ? await p : await withTimeout(p, ms, () => new StoreError('EIO', this.key, `${this.whereKey}: not recalled within ${ms / 1000} s (bfs's recall deadline)`))
    if (this.closed) throw new StoreError('EIO', this.key, `${this.whereKey}: read after close`) // close() closes b
    if (!this.innerSync && this.inner === p) {
      // cached now: read from the entry directly, and its descriptor is the blob's localFd
      // from here on (the block reader then hands the unit to the native read path)
      this.innerSync = b
      this.inner = null
    }
    return b.readSync(r, into)
  }

  readSync(r: ByteRange, into?: Buffer): Buffer {
    this.check(r)
    if (this.innerSync) return this.innerSync.readSync(r, into)
    const c = fromCopies(this.e, r, into)
    if (c) return c
    throw new StoreError('ENOSYNC', this.key, `${this.whereKey}: on tape and not in the buffer cache; it cannot be read synchronously (recall it first)`)
  }

  async close(): Promise<void> {
    this.closed = true
    this.innerSync?.closeSync()
    this.innerSync = null
    const p = this.inner
    this.inner = null
    if (p) await (await p.catch(() => null))?.close()
  }

  closeSync(): void {
    this.closed = true
    this.innerSync?.closeSync()
    this.innerSync = null
    const p = this.inner
    this.inner = null
    if (p) void p.then((b) => b.close()).catch(() => undefined)
  }
}

/** How reads of blobs on tape behave. */
export interface ReadPolicy {
  /** 'wait' (default): a read of a range on tape waits for its recall; 'eio': fails EIO at once (the mount's --offline eio). */
  offline?: 'wait' | 'eio'
  /** bfs's own recall deadline, ms: a read still waiting then fails EIO (the recall goes on). Default: none. */
  recallTimeoutMs?: number
}

export interface TieredOptions extends ReadPolicy {
  /** The disk tier (the repository's store): written to, and read first. */
  hot: Store
  /** The tape tier behind its buffer cache. */
  cold: CacheStore
}

export class TieredStore implements Store {
  readonly hot: Store
  readonly cold: CacheStore | null
  /** The cache, read-only, when there is no catalog (a worker thread's store): cached blobs by key only. */
  private readonly cacheOnly: BufferCache | null
  readonly sync: SyncStore | null
  readonly policy: ReadPolicy

  constructor(o: TieredOptions | { hot: Store; cacheDir: string }) {
    this.hot = o.hot
    this.policy = 'cold' in o ? { offline: o.offline, recallTimeoutMs: o.recallTimeoutMs } : {}
    if ('cold' in o) {
      this.cold = o.cold
      this.cacheOnly = null
    } else {
      this.cold = null
      this.cacheOnly = BufferCache.open(o.cacheDir)
    }
    this.sync = this.hot.sync ? new TieredSync(this, this.hot.sync) : null
    const hot = this.hot
    if (hot.appendStaged) this.appendStaged = (s, data, at) => hot.appendStaged!(s, data, at)
  }

  /** The hot store's, when it has one (staged writes go there). */
  readonly appendStaged?: (s: Staged, data: readonly Uint8Array[], at: number) => Promise<number>

  private get cache(): BufferCache {
    return this.cold ? this.cold.cache : this.cacheOnly!
  }

  /** The catalog entry of a key that is not on disk (the catalog re-read once if it is not known). */
  coldEntry(key: string): ColdEntry | undefined {
    return this.cold?.entry(key)
  }

  where(key: string): string {
    if (key && this.cold?.entry(key) && !safeHas(this.hot, key)) return this.cold.where(key)
    return this.hot.where(key)
  }

  localRoots(): string[] {
    return [...new Set([...this.hot.localRoots(), ...(this.cold?.localRoots() ?? [this.cache.dir])])]
  }

  describe(): StoreDescription | null {
    const hot = this.hot.describe()
    return hot ? { kind: 'tiered', hot, cacheDir: this.cache.dir } : null
  }

  /** Where `key` is now, synchronously (disk, cached, or only on tape); undefined if nowhere. For user.bfs.residency. */
  residencySync(key: string): Residency | undefined {
    if (safeHas(this.hot, key)) return 'disk'
    if (!this.cold) return this.cache.has(key) ? 'cache' : undefined
    const e = this.cold.entry(key)
    if (!e) return undefined
    return this.cold.cache.has(key, e.sizeBytes) ? 'cache' : 'tape'
  }

  /** The buffer cache's size limit, bytes. */
  get cacheLimitBytes(): number {
    return this.cache.limitBytes
  }

  /** Where `key` is now, or undefined if nowhere. */
  async residency(key: string): Promise<Residency | undefined> {
    if (await this.hot.has(key)) return 'disk'
    if (this.cold) return this.cold.residency(key)
    return this.cache.has(key) ? 'cache' : undefined
  }

  /**
   * Recalls the tape-resident ones among `keys` into the buffer cache (disk-resident keys
   * need nothing), pinned for `o.pin` if given (unpin() when used): a restore's plan, a
   * `bfs recall`, or a mount opening a file whose units are on tape. One promise per key
   * recalled.
   */
  prefetch(keys: string[], o: FillOptions = {}): Map<string, Promise<void>> {
    if (!this.cold) return new Map()
    const want: string[] = []
    for (const k of keys) if (this.cold.entry(k) && !safeHas(this.hot, k)) want.push(k)
    return this.cold.fetch(want, o)
  }

  /** Whether a recall of `key` asked for by this process is outstanding. */
  recalling(key: string): boolean {
    return this.cold?.recalling(key) ?? false
  }

  /** Gives up this process's outstanding recalls of `keys` (CacheStore.cancel: nobody else here may be waiting for them). */
  cancel(keys: string[]): number {
    return this.cold?.cancel(keys) ?? 0
  }

  /** Releases pins of `holder` (on `keys`, or all of them). */
  unpin(keys: string[] | null, holder: string): void {
    this.cold?.source.unpin(keys, holder)
  }

  async open(key: string): Promise<BlobReader> {
    try {
      return await this.hot.open(key)
    } catch (err) {
      if (!isMissing(err)) throw err
      return this.openCold(key, err)
    }
  }

  private async openCold(key: string, missing: unknown): Promise<BlobReader> {
    if (!this.cold) {
      const b = await this.cache.openEntry(key)
      if (b) return b
      throw missing
    }
    const e = this.cold.entry(key)
    if (!e) throw missing
    const cached = await this.cold.peek(key)
    return new ColdBlob(key, e, this.cold, cached, this.cold.where(key), this.policy)
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return getByOpen(this, key, range)
  }

  async has(key: string): Promise<boolean> {
    if (await this.hot.has(key)) return true
    return this.cold ? !!this.cold.entry(key) : this.cache.has(key)
  }

  async stat(key: string): Promise<BlobStat> {
    try {
      return await this.hot.stat(key)
    } catch (err) {
      if (!isMissing(err)) throw err
      const e = this.cold?.entry(key)
      if (!e) throw err
      return { sizeBytes: e.sizeBytes, sha256: e.sha256 }
    }
  }

  async list(prefix: string): Promise<string[]> {
    const a = await this.hot.list(prefix)
    if (!this.cold) return a
    const b = await this.cold.list(prefix)
    return b.length ? [...new Set([...a, ...b])].sort() : a
  }

  /** EEXIST for a key that lives on tape (create and exclusive puts never shadow it). */
  private notCold(key: string): void {
    if (this.cold?.entry(key)) throw new StoreError('EEXIST', key, `${this.cold.where(key)}: refusing to overwrite a stored blob`)
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): Promise<void> {
    checkKey(key)
    if ((opts.mode ?? 'create') !== 'replace') this.notCold(key)
    await this.hot.put(key, data, opts)
  }

  stage(key: string): Promise<Staged> {
    return this.hot.stage(key)
  }

  writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    return this.hot.writeStaged(s, data)
  }

  async commitStaged(s: Staged, opts?: { syncListing?: boolean }): Promise<void> {
    // a disk store's token starts with its key (disk.ts stageToken)
    const nl = s.token.indexOf('\n')
    if (nl > 0) this.notCold(s.token.slice(0, nl))
    await this.hot.commitStaged(s, opts)
  }

  abortStaged(s: Staged): Promise<void> {
    return this.hot.abortStaged(s)
  }

  async remove(key: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await this.hot.remove(key, opts)
    if (this.cold?.source.writer && (opts.recursive || this.cold.entry(key))) await this.cold.remove(key, opts)
  }

  flush(prefix: string): Promise<void> {
    return this.hot.flush(prefix)
  }

  async sweep(prefix?: string, opts?: { shallow?: boolean }): Promise<number> {
    return (await this.hot.sweep(prefix, opts)) + ((await this.cold?.sweep(prefix, opts)) ?? 0)
  }
}

function safeHas(s: Store, key: string): boolean {
  try {
    return s.sync ? s.sync.hasSync(key) : false
  } catch {
    return false
  }
}

/** The synchronous face: disk blobs, and tape blobs as far as the cache and the catalog's copies go. */
class TieredSync implements SyncStore {
  constructor(
    private readonly t: TieredStore,
    private readonly hot: SyncStore,
  ) {}

  getSync(key: string, range?: ByteRange): Buffer {
    const b = this.openSync(key)
    try {
      return b.readSync(range ?? { offset: 0, length: b.sizeBytes })
    } finally {
      b.closeSync()
    }
  }

  openSync(key: string): SyncBlobReader {
    try {
      return this.hot.openSync(key)
    } catch (err) {
      if (!isMissing(err)) throw err
      const cold = this.t.cold
      const cache = cold ? cold.cache : null
      if (!cold) {
        const b = (this.t as unknown as { cacheOnly: BufferCache }).cacheOnly.openEntrySync(key)
        if (b) return b
        throw err
      }
      const e = cold.entry(key)
      if (!e) throw err
      const cached = cache!.openEntrySync(key, e.sizeBytes)
      if (cached) cold.source.touch(key)
      return new ColdBlob(key, e, cold, cached, cold.where(key), this.t.policy)
    }
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts: PutOptions = {}): void {
    if ((opts.mode ?? 'create') !== 'replace' && this.t.cold?.entry(key)) throw new StoreError('EEXIST', key, `${this.t.where(key)}: refusing to overwrite a stored blob`)
    this.hot.putSync(key, data, opts)
  }

  writeStagedSync(s: Staged, data: readonly Uint8Array[]): number {
    return this.hot.writeStagedSync(s, data)
  }

  hasSync(key: string): boolean {
    return this.hot.hasSync(key) || !!this.t.cold?.entry(key)
  }

  statSync(key: string): BlobStat {
    try {
      return this.hot.statSync(key)
    } catch (err) {
      const e = isMissing(err) ? this.t.cold?.entry(key) : undefined
      if (!e) throw err
      return { sizeBytes: e.sizeBytes, sha256: e.sha256 }
    }
  }

  listSync(prefix: string): string[] {
    const a = this.hot.listSync(prefix)
    const b = this.t.cold?.source.listSync(prefix) ?? []
    return b.length ? [...new Set([...a, ...b])].sort() : a
  }

  removeSync(key: string, opts?: { recursive?: boolean }): void {
    if (this.t.cold?.entry(key) && this.t.cold.source.writer) throw new StoreError('ENOSYNC', key, `${this.t.where(key)}: a blob on tape is removed asynchronously`)
    this.hot.removeSync(key, opts)
  }

  flushSync(prefix: string): void {
    this.hot.flushSync(prefix)
  }
}
