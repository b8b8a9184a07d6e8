/**
 * The disk buffer cache in front of the tape tier (native-notes/tape.md §"Buffer cache").
 *
 * `BufferCache` is a directory of whole blobs recalled from tape:
 *
 *   CACHE/owner.lock   flock, held by the one process that writes and evicts (the recall
 *                      service, or a test or bench in one process)
 *   CACHE/config.json  {limitBytes}: the size limit set with --buffer-cache (kept across restarts)
 *   CACHE/index.json   the eviction order and each entry's SHA-256, saved by the owner
 *                      (within a second of a change, and when it closes): advisory
 *   CACHE/data/KEY     an entry: the blob's bytes, at the blob's own offsets (so its
 *                      descriptor serves the native read path)
 *
 * An entry is written to a temporary name, fsynced and renamed to its key only after its
 * bytes were checked against the catalog's SHA-256, so a name in data/ is always a whole,
 * verified blob and a half-written entry is never served; the owner removes temporary files
 * of dead writers when it starts. Any process may open entries (read-only); only the owner
 * adds and removes them, so the bytes stay bounded by one accounting.
 *
 * Eviction is segmented LRU (scan resistant): a new entry goes to the probation segment; a
 * second use (a hit) moves it to the protected segment (80 % of the limit); victims come
 * from probation first, so a unit recalled for one read never pushes out the working set.
 * Pinned keys (a restore pins what it planned until it has read it) are never evicted; when
 * everything is pinned the cache goes over its limit rather than lose a pinned entry.
 *
 * `CacheStore` is a Store over a ColdSource (the tape tier, or the recall service): reads
 * come from the cache, misses are fetched once however many readers wait for them.
 */
import fs from 'node:fs'
import path from 'node:path'
import { flock } from '../native/index.js'
import { DiskStore } from './disk.js'
import {
  checkKey, StoreError,
  type BlobReader, type BlobStat, type ByteRange, type PutOptions, type Staged, type Store, type StoreDescription, type SyncBlobReader, getByOpen
} from './store.js'
import type { ColdEntry, TapeStore } from './tape.js'

export const DEFAULT_CACHE_BYTES = 10 * 2 ** 30
const PROTECTED_FRACTION = 0.8
const INDEX = 'index.json'
const CONFIG = 'config.json'
const LOCK = 'owner.lock'
const DATA = 'data'
const SAVE_MS = 1000

export type Segment = 'probation' | 'protected'

interface CacheEntry {
  key: string
  bytes: number
  /** SHA-256 it was verified against (hex); '' when found on disk without an index line (verified then, not known now). */
  sha256: string
  seg: Segment
}

export interface CacheStats {
  dir: string
  limitBytes: number
  usedBytes: number
  entries: number
  probationBytes: number
  protectedBytes: number
  pinnedKeys: number
  pinnedBytes: number
  /** Opens of a cached entry (hits) and fetches (misses) seen by the owner. */
  hits: number
  misses: number
  inserts: number
  evictions: number
}

/** Another process owns the cache (writes and evicts it). */
export class CacheBusy extends Error {
  override readonly name = 'CacheBusy'
}

export class BufferCache {
  private dataStore: DiskStore | null = null
  private readonly probation = new Map<string, CacheEntry>()
  private readonly protectedSeg = new Map<string, CacheEntry>()
  private readonly pins = new Map<string, Set<string>>()
  private used = 0
  private protectedBytes = 0
  private limit: number
  private lockFd = -1
  private saveTimer: NodeJS.Timeout | null = null
  private dirty = false
  private counters = { hits: 0, misses: 0, inserts: 0, evictions: 0 }
  /** Called with the key of every entry evicted or removed (a cache with records beside its entries removes them too). */
  onDrop: ((key: string) => void) | null = null

  private constructor(
    readonly dir: string,
    readonly owner: boolean,
    limitBytes: number,
  ) {
    this.limit = limitBytes
  }

  /**
   * Opens the cache in `dir` (made if missing). `owner`: take the owner lock (CacheBusy if
   * another process has it), sweep dead writers' temporary files, load the index. Without
   * it the cache is only read (entries opened by key).
   */
  static open(dir: string, o: { owner?: boolean; limitBytes?: number; make?: boolean } = {}): BufferCache {
    const abs = path.resolve(dir)
    // only the owner makes the directory: a reader (bfs tier status, a mount) changes nothing
    // (`make`: a cache every process may add to, the S3 read cache)
    if (o.owner || o.make) fs.mkdirSync(path.join(abs, DATA), { recursive: true, mode: 0o700 })
    const limit = o.limitBytes ?? readConfig(abs) ?? DEFAULT_CACHE_BYTES
    const c = new BufferCache(abs, !!o.owner, limit)
    if (o.owner) {
      const fd = fs.openSync(path.join(abs, LOCK), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600)
      if (!flock(fd, 'exclusive')) {
        fs.closeSync(fd)
        throw new CacheBusy(`${abs} is in use by another process (its owner.lock is held)`)
      }
      c.lockFd = fd
      c.data.sync.sweepSync('')
      c.load()
      if (o.limitBytes !== undefined) c.setLimit(o.limitBytes)
    }
    return c
  }

  /** The entries' store, or null while the owner has not made it yet (a reader looks again next time). */
  private get store(): DiskStore | null {
    if (!this.dataStore) {
      try {
        this.dataStore = DiskStore.open(path.join(this.dir, DATA))
      } catch {
        return null
      }
    }
    return this.dataStore
  }

  /** The owner's entries' store (it made the directory). */
  get data(): DiskStore {
    const s = this.store
    if (!s) throw new StoreError('ENOENT', '', `${path.join(this.dir, DATA)}: no buffer cache here yet`)
    return s
  }

  /** The file an entry lives in (for messages). */
  file(key: string): string {
    return path.join(this.dir, DATA, key)
  }

  get limitBytes(): number {
    return this.limit
  }

  // ---- any process ------------------------------------------------------------------------

  /** Opens a cached entry, or null when there is none (or it is not `sizeBytes` long). */
  async openEntry(key: string, sizeBytes?: number): Promise<(BlobReader & SyncBlobReader) | null> {
    const store = this.store
    if (!store) return null
    let b: BlobReader & SyncBlobReader
    try {
      b = (await store.open(key)) as BlobReader & SyncBlobReader
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ENOENT') return null
      throw err
    }
    if (sizeBytes !== undefined && b.sizeBytes !== sizeBytes) {
      await b.close()
      return null
    }
    return b
  }

  openEntrySync(key: string, sizeBytes?: number): SyncBlobReader | null {
    const store = this.store
    if (!store) return null
    let b: SyncBlobReader
    try {
      b = store.sync.openSync(key)
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ENOENT') return null
      throw err
    }
    if (sizeBytes !== undefined && b.sizeBytes !== sizeBytes) {
      b.closeSync()
      return null
    }
    return b
  }

  /** Whether `key` is cached now. */
  has(key: string, sizeBytes?: number): boolean {
    if (this.owner) {
      const e = this.get(key)
      return !!e && (sizeBytes === undefined || e.bytes === sizeBytes)
    }
    const store = this.store
    if (!store) return false
    try {
      const st = store.sync.statSync(key)
      return sizeBytes === undefined || st.sizeBytes === sizeBytes
    } catch {
      return false
    }
  }

  // ---- the owner --------------------------------------------------------------------------

  private must(): void {
    if (!this.owner) throw new CacheBusy(`${this.dir}: only the cache's owner writes it`)
  }

  private get(key: string): CacheEntry | undefined {
    return this.probation.get(key) ?? this.protectedSeg.get(key)
  }

  /** The SHA-256 an entry was verified against ('' if not known), or undefined if not cached. */
  sha256Of(key: string): string | undefined {
    return this.get(key)?.sha256
  }

  segmentOf(key: string): Segment | undefined {
    return this.get(key)?.seg
  }

  /**
   * Adds (or replaces) an entry whose bytes the caller has checked against `sha256`:
   * temporary file, fsync, rename; then evicts to stay within the limit.
   */
  async insert(key: string, sha256: string, chunks: readonly Buffer[]): Promise<void> {
    this.must()
    checkKey(key)
    const bytes = chunks.reduce((a, c) => a + c.length, 0)
    // the listing need not be durable: an entry lost in a power failure is recalled again
    await this.data.put(key, chunks, { mode: 'replace', syncListing: false })
    this.drop(key)
    this.used += bytes
    this.probation.set(key, { key, bytes, sha256, seg: 'probation' })
    this.counters.inserts++
    this.evict()
    this.changed()
  }

  /**
   * An entry added by any process (a cache every reader fills, as the S3 read cache): the
   * owner inserts and accounts for it; another process writes the file only (temporary name,
   * rename: atomic), and the owner counts it at its next rescan().
   */
  async insertShared(key: string, sha256: string, chunks: readonly Buffer[]): Promise<void> {
    if (this.owner) return this.insert(key, sha256, chunks)
    checkKey(key)
    await this.data.put(key, chunks, { mode: 'replace', syncListing: false })
  }

  /** Removes an entry found bad (any process: a corrupt file is nobody's to keep). */
  async discard(key: string): Promise<void> {
    if (this.owner) return this.remove(key)
    this.onDrop?.(key)
    await this.store?.remove(key)
  }

  /**
   * The owner counts the entries other processes added (and forgets those removed) since it
   * loaded: a walk of data/.
   */
  rescan(): void {
    if (!this.owner) return
    const seen = new Set<string>()
    const walk = (dir: string, prefix: string): void => {
      let list: fs.Dirent[]
      try {
        list = fs.readdirSync(dir, { withFileTypes: true })
      } catch {
        return
      }
      for (const d of list) {
        if (d.name.includes('.tmp-')) continue
        const key = prefix ? `${prefix}/${d.name}` : d.name
        if (d.isDirectory()) walk(path.join(dir, d.name), key)
        else if (d.isFile()) {
          seen.add(key)
          if (this.get(key)) continue
          const st = fs.statSync(path.join(dir, d.name), { throwIfNoEntry: false })
          if (!st) continue
          this.probation.set(key, { key, bytes: st.size, sha256: '', seg: 'probation' })
          this.used += st.size
        }
      }
    }
    walk(path.join(this.dir, DATA), '')
    for (const seg of [this.probation, this.protectedSeg]) for (const k of [...seg.keys()]) if (!seen.has(k)) this.drop(k)
    this.evict()
    this.changed()
  }

  /** A use of a cached entry (a hit): the second use protects it. */
  touch(key: string): void {
    if (!this.owner) return
    const e = this.get(key)
    if (!e) return
    this.counters.hits++
    if (e.seg === 'probation') {
      this.probation.delete(key)
      e.seg = 'protected'
      this.protectedSeg.set(key, e)
      this.protectedBytes += e.bytes
      // the protected segment's own LRU goes back to probation (most recent end) when it is full
      for (const [k, p] of this.protectedSeg) {
        if (this.protectedBytes <= this.limit * PROTECTED_FRACTION || k === key) break
        this.protectedSeg.delete(k)
        this.protectedBytes -= p.bytes
        p.seg = 'probation'
        this.probation.set(k, p)
      }
    } else {
      this.protectedSeg.delete(key)
      this.protectedSeg.set(key, e)
    }
    this.changed()
  }

  /** A fetch on behalf of a reader that did not find the entry. */
  miss(): void {
    this.counters.misses++
  }

  /** Keeps `key` (cached or still to come) from eviction until `holder` unpins it. */
  pin(key: string, holder: string): void {
    let s = this.pins.get(key)
    if (!s) this.pins.set(key, (s = new Set()))
    s.add(holder)
  }

  unpin(key: string, holder: string): void {
    const s = this.pins.get(key)
    if (!s) return
    s.delete(holder)
    if (s.size === 0) this.pins.delete(key)
    if (this.owner) this.evict()
  }

  /** Everything `holder` pinned (a client that went away). */
  unpinHolder(holder: string): void {
    for (const [k, s] of this.pins) {
      s.delete(holder)
      if (s.size === 0) this.pins.delete(k)
    }
    if (this.owner) this.evict()
  }

  isPinned(key: string): boolean {
    return this.pins.has(key)
  }

  async remove(key: string): Promise<void> {
    this.must()
    if (this.drop(key)) this.changed()
    this.onDrop?.(key)
    await this.data.remove(key)
  }

  /** Removes every entry under `prefix` (a recursive remove of the tier below). */
  async removeUnder(prefix: string): Promise<void> {
    this.must()
    for (const seg of [this.probation, this.protectedSeg]) for (const k of [...seg.keys()]) if (prefix === '' || k.startsWith(prefix + '/')) await this.remove(k)
  }

  /** Changes the limit (and keeps it in config.json for later owners). */
  setLimit(bytes: number): void {
    this.must()
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`bad cache size ${bytes}`)
    this.limit = bytes
    const f = path.join(this.dir, CONFIG)
    const tmp = `${f}.tmp-${process.pid}`
    fs.writeFileSync(tmp, JSON.stringify({ limitBytes: bytes }) + '\n')
    fs.renameSync(tmp, f)
    this.evict()
    this.changed()
  }

  stats(): CacheStats {
    let pinnedBytes = 0
    for (const k of this.pins.keys()) pinnedBytes += this.get(k)?.bytes ?? 0
    return {
      dir: this.dir,
      limitBytes: this.limit,
      usedBytes: this.used,
      entries: this.probation.size + this.protectedSeg.size,
      probationBytes: this.used - this.protectedBytes,
      protectedBytes: this.protectedBytes,
      pinnedKeys: this.pins.size,
      pinnedBytes,
      ...this.counters,
    }
  }

  /**
   * Entries and bytes as the files are now (any process; the owner's stats() also knows
   * segments, pins and counters).
   */
  scan(): { entries: number; usedBytes: number; limitBytes: number } {
    let entries = 0
    let usedBytes = 0
    const walk = (dir: string): void => {
      let list: fs.Dirent[]
      try {
        list = fs.readdirSync(dir, { withFileTypes: true })
      } catch {
        return
      }
      for (const d of list) {
        if (d.name.includes('.tmp-')) continue
        const p = path.join(dir, d.name)
        if (d.isDirectory()) walk(p)
        else if (d.isFile()) {
          entries++
          usedBytes += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0
        }
      }
    }
    walk(path.join(this.dir, DATA))
    return { entries, usedBytes, limitBytes: this.limit }
  }

  /** Removes an entry from the accounting (not the file); true if it was there. */
  private drop(key: string): boolean {
    const e = this.get(key)
    if (!e) return false
    if (e.seg === 'probation') this.probation.delete(key)
    else {
      this.protectedSeg.delete(key)
      this.protectedBytes -= e.bytes
    }
    this.used -= e.bytes
    return true
  }

  /** Least recently used unpinned entries go, probation first, until the cache fits. */
  private evict(): void {
    if (!this.owner || this.used <= this.limit) return
    for (const seg of [this.probation, this.protectedSeg]) {
      for (const [k, e] of seg) {
        if (this.used <= this.limit) return
        if (this.pins.has(k)) continue
        this.drop(k)
        this.counters.evictions++
        this.onDrop?.(k)
        // readers that have it open keep reading it (an open descriptor keeps the inode)
        try {
          this.data.sync.removeSync(k)
        } catch {
          // gone already
        }
        void e
      }
    }
  }

  private changed(): void {
    this.dirty = true
    if (this.saveTimer || !this.owner) return
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null
      this.save()
    }, SAVE_MS)
    this.saveTimer.unref()
  }

  /** Writes index.json (LRU first within each segment). */
  save(): void {
    if (!this.owner || !this.dirty) return
    this.dirty = false
    const line = (e: CacheEntry): [string, number, string] => [e.key, e.bytes, e.sha256]
    const f = path.join(this.dir, INDEX)
    const tmp = `${f}.tmp-${process.pid}`
    try {
      fs.writeFileSync(tmp, JSON.stringify({ version: 1, probation: [...this.probation.values()].map(line), protected: [...this.protectedSeg.values()].map(line) }) + '\n')
      fs.renameSync(tmp, f)
    } catch {
      // advisory: the next owner rebuilds the order from the files
    }
  }

  /** The entries on disk, in the saved order; files the index does not know go to probation, oldest first. */
  private load(): void {
    const files = new Map<string, { bytes: number; mtime: number }>()
    const walk = (dir: string, prefix: string): void => {
      for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
        if (d.name.includes('.tmp-')) continue
        const key = prefix ? `${prefix}/${d.name}` : d.name
        if (d.isDirectory()) walk(path.join(dir, d.name), key)
        else if (d.isFile()) {
          const st = fs.statSync(path.join(dir, d.name))
          files.set(key, { bytes: st.size, mtime: st.mtimeMs })
        }
      }
    }
    walk(path.join(this.dir, DATA), '')
    let saved: { probation?: Array<[string, number, string]>; protected?: Array<[string, number, string]> } = {}
    try {
      saved = JSON.parse(fs.readFileSync(path.join(this.dir, INDEX), 'utf8'))
    } catch {
      // none yet, or damaged: the files alone
    }
    const take = (list: Array<[string, number, string]> | undefined, seg: Segment, into: Map<string, CacheEntry>): void => {
      for (const [key, bytes, sha256] of Array.isArray(list) ? list : []) {
        const f = files.get(key)
        if (!f || f.bytes !== bytes || this.get(key)) continue
        files.delete(key)
        into.set(key, { key, bytes, sha256: typeof sha256 === 'string' ? sha256 : '', seg })
        this.used += bytes
        if (seg === 'protected') this.protectedBytes += bytes
      }
    }
    take(saved.probation, 'probation', this.probation)
    take(saved.protected, 'protected', this.protectedSeg)
    // entries the index does not know came after it was saved: most recent, oldest first
    for (const [key, f] of [...files].sort((a, b) => a[1].mtime - b[1].mtime)) {
      this.probation.set(key, { key, bytes: f.bytes, sha256: '', seg: 'probation' })
      this.used += f.bytes
    }
    this.evict()
  }

  /** Saves the index and gives up ownership. */
  close(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer)
    this.saveTimer = null
    this.save()
    if (this.lockFd >= 0) {
      fs.closeSync(this.lockFd)
      this.lockFd = -1
    }
  }
}

function readConfig(dir: string): number | undefined {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(dir, CONFIG), 'utf8')) as { limitBytes?: unknown }
    return typeof c.limitBytes === 'number' && Number.isSafeInteger(c.limitBytes) && c.limitBytes >= 0 ? c.limitBytes : undefined
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------

export interface FillOptions {
  /** Simulated-time deadline passed to the scheduler (urgency), when the caller has one. */
  deadline?: number
  /** Real-time deadline in ms from now: past it, the wait fails EIO (the recall goes on for others). */
  timeoutMs?: number
  signal?: AbortSignal
  /** Pin every key for this holder (before it is fetched, so it stays until unpinned). */
  pin?: string
  /**
   * No reader waits for these yet (a mount's readahead over the tree): the scheduler orders
   * them by cost alone until a fetch without `ahead` of the same key promotes them.
   */
  ahead?: boolean
}

/**
 * What is below a CacheStore: the tape tier's catalog and a way to bring blobs into the
 * cache. In one process that is the tape store itself (TapeSource); in a client of the
 * recall service, the repository's catalog and the service (recall/client.ts).
 */
export interface ColdSource {
  entry(key: string): ColdEntry | undefined
  list(prefix: string): Promise<string[]>
  listSync(prefix: string): string[]
  where(key: string): string
  localRoots(): string[]
  /** Brings entries into the cache (verified); one promise per key. */
  fill(entries: ColdEntry[], o: FillOptions): Map<string, Promise<void>>
  /** A reader now waits for these keys, filled with `ahead`: ordinary requests from now. */
  promote(keys: string[]): void
  touch(key: string): void
  /**
   * Gives up this process's recalls of `keys` that are still outstanding (their promises
   * fail); what is below cancels each unless someone else wants it. Returns the keys given
   * up. Optional: a source without it never cancels.
   */
  cancel?(keys: string[]): number
  pin(keys: string[], holder: string): void
  unpin(keys: string[] | null, holder: string): void
  /** Writes go here, when the source takes them (the tape store in one process). */
  readonly writer: Store | null
  /**
   * The cache is owned by another process (the recall service), which may evict an entry this
   * process has just seen there: a pinned fetch then asks the source even for a cached key
   * (the service pins it and answers at once, or recalls it if it went meanwhile).
   */
  readonly sharedCache?: boolean
}

/** Where a cold blob is now. */
export type Residency = 'cache' | 'tape'

/** A cache entry opened for a key: errors name the key where the tier says it is (and the cache file). */
class CachedBlob implements SyncBlobReader {
  constructor(
    private readonly inner: BlobReader & SyncBlobReader,
    readonly key: string,
    private readonly whereKey: string,
  ) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes
  }
  get localFd(): number | undefined {
    return this.inner.localFd
  }
  private rename(err: unknown): unknown {
    if (!(err instanceof StoreError)) return err
    return new StoreError(err.code, this.key, `${this.whereKey}: ${err.message}`, { cause: err })
  }
  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    try {
      return await this.inner.read(r, into)
    } catch (err) {
      throw this.rename(err)
    }
  }
  readSync(r: ByteRange, into?: Buffer): Buffer {
    try {
      return this.inner.readSync(r, into)
    } catch (err) {
      throw this.rename(err)
    }
  }
  close(): Promise<void> {
    return this.inner.close()
  }
  closeSync(): void {
    this.inner.closeSync()
  }
}

/**
 * A Store over a ColdSource with a BufferCache in front: every read is served from the
 * cache (an entry's descriptor is the blob's localFd), a miss is fetched once for all the
 * readers waiting on it, and a hit counts as a use for eviction.
 */
export class CacheStore implements Store {
  readonly sync = null
  private readonly inflight = new Map<string, Promise<void>>()
  /** Keys in flight that were fetched ahead and not yet promoted. */
  private readonly aheadKeys = new Set<string>()

  constructor(
    readonly cache: BufferCache,
    readonly source: ColdSource,
  ) {}

  where(key: string): string {
    return this.source.where(key)
  }

  localRoots(): string[] {
    return [this.cache.dir, ...this.source.localRoots()]
  }

  describe(): StoreDescription | null {
    return null
  }

  entry(key: string): ColdEntry | undefined {
    checkKey(key)
    return this.source.entry(key)
  }

  private need(key: string): ColdEntry {
    const e = this.entry(key)
    if (!e) throw new StoreError('ENOENT', key, `${this.where(key)}: no such blob`)
    return e
  }

  residency(key: string): Residency | undefined {
    const e = this.entry(key)
    if (!e) return undefined
    return this.cache.has(key, e.sizeBytes) ? 'cache' : 'tape'
  }

  /** The cached entry if it is there now (no fetch); counts as a use. */
  async peek(key: string): Promise<(BlobReader & SyncBlobReader) | null> {
    const e = this.need(key)
    const b = await this.cache.openEntry(key, e.sizeBytes)
    if (!b) return null
    this.source.touch(key)
    return new CachedBlob(b, key, this.where(key))
  }

  /**
   * Brings `keys` into the cache (one fetch per key however many ask), pinned for
   * `o.pin` if given. Resolves per key; `done` when every one is cached or failed.
   */
  fetch(keys: string[], o: FillOptions = {}): Map<string, Promise<void>> {
    const out = new Map<string, Promise<void>>()
    const want: ColdEntry[] = []
    const promote: string[] = []
    if (o.pin) this.source.pin(keys, o.pin)
    for (const key of keys) {
      if (out.has(key)) continue
      const e = this.need(key)
      const running = this.inflight.get(key)
      if (running) {
        out.set(key, running)
        if (!o.ahead && this.aheadKeys.delete(key)) promote.push(key)
      } else if (!(o.pin && this.source.sharedCache) && this.cache.has(key, e.sizeBytes)) out.set(key, Promise.resolve())
      else want.push(e)
    }
    if (want.length) {
      const got = this.source.fill(want, o)
      for (const e of want) {
        const p = got.get(e.key)!.finally(() => {
          if (this.inflight.get(e.key) === p) this.inflight.delete(e.key)
        })
        p.catch(() => undefined) // a prefetch nobody waits for must not be an unhandled rejection
        this.inflight.set(e.key, p)
        out.set(e.key, p)
        if (o.ahead) {
          this.aheadKeys.add(e.key)
          const forget = (): void => {
            if (this.inflight.get(e.key) !== p) this.aheadKeys.delete(e.key)
          }
          p.then(forget, forget)
        }
      }
    }
    if (promote.length) this.source.promote(promote)
    return out
  }

  async open(key: string, o: FillOptions = {}): Promise<BlobReader & SyncBlobReader> {
    const e = this.need(key)
    const hit = await this.cache.openEntry(key, e.sizeBytes)
    if (hit) {
      this.source.touch(key)
      return new CachedBlob(hit, key, this.where(key))
    }
    // fetched, then opened before anything can evict it (the owner evicts only past the
    // limit, least recently used first; a fresh entry is the most recent): one retry for the rest
    for (let attempt = 0; attempt < 2; attempt++) {
      await this.fetch([key], o).get(key)!
      const b = await this.cache.openEntry(key, e.sizeBytes)
      if (b) return new CachedBlob(b, key, this.where(key))
    }
    throw new StoreError('EIO', key, `${this.where(key)}: recalled, but gone from the buffer cache ${this.cache.dir} before it could be opened (is the cache too small for the recalls in flight?)`)
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    return getByOpen(this, key, range)
  }

  /** Whether a fetch of `key` by this store is outstanding (a reader may be waiting for it). */
  recalling(key: string): boolean {
    return this.inflight.has(key)
  }

  /**
   * Gives up the outstanding fetches of `keys` (a mount's reader was interrupted while it
   * waited for them): everyone in this process waiting on one of them fails (EIO "recall
   * cancelled"; a ColdBlob then asks again on its next read), so the caller must know that
   * nobody else here wants them. Returns the keys given up.
   */
  cancel(keys: string[]): number {
    const mine = keys.filter((k) => this.inflight.has(k))
    return mine.length && this.source.cancel ? this.source.cancel(mine) : 0
  }

  async has(key: string): Promise<boolean> {
    return !!this.entry(key)
  }

  async stat(key: string): Promise<BlobStat> {
    const e = this.need(key)
    return { sizeBytes: e.sizeBytes, sha256: e.sha256 }
  }

  async list(prefix: string): Promise<string[]> {
    checkKey(prefix, true)
    return this.source.list(prefix)
  }

  private writer(key: string): Store {
    if (!this.source.writer) throw new StoreError('EROFS', key, `${this.where(key)}: the tape tier is written by migration only`)
    return this.source.writer
  }

  /** A cached copy of a key being replaced or removed must not outlive it. */
  private async forget(key: string): Promise<void> {
    if (this.cache.owner && key !== '') await this.cache.remove(key)
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void> {
    checkKey(key)
    const w = this.writer(key)
    await w.put(key, data, opts)
    await this.forget(key)
  }

  async stage(key: string): Promise<Staged> {
    checkKey(key)
    return this.writer(key).stage(key)
  }

  async writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    return this.writer('').writeStaged(s, data)
  }

  async commitStaged(s: Staged, opts?: { syncListing?: boolean }): Promise<void> {
    await this.writer('').commitStaged(s, opts)
  }

  async abortStaged(s: Staged): Promise<void> {
    await this.writer('').abortStaged(s)
  }

  async remove(key: string, opts: { recursive?: boolean } = {}): Promise<void> {
    checkKey(key, !!opts.recursive)
    await this.writer(key).remove(key, opts)
    if (opts.recursive && this.cache.owner) await this.cache.removeUnder(key)
    await this.forget(key)
  }

  async flush(prefix: string): Promise<void> {
    await this.source.writer?.flush(prefix)
  }

  async sweep(prefix?: string, opts?: { shallow?: boolean }): Promise<number> {
    return (await this.source.writer?.sweep(prefix, opts)) ?? 0
  }
}

/**
 * The tape stores of this process (one per tier, sharing one catalog) as a cache's source:
 * fills are recalls by their engines, written into the cache (which this process owns)
 * once verified.
 */
export class TapeSource implements ColdSource {
  private readonly tapes: Map<string, TapeStore>
  readonly tape: TapeStore

  constructor(
    tapes: TapeStore | TapeStore[],
    readonly cache: BufferCache,
  ) {
    if (!cache.owner) throw new CacheBusy(`${cache.dir}: a tape source fills the cache, so it must own it`)
    const list = Array.isArray(tapes) ? tapes : [tapes]
    if (list.length === 0) throw new TypeError('a tape source needs a tape store')
    this.tape = list[0]!
    this.tapes = new Map(list.map((t) => [t.tier, t]))
  }

  get writer(): Store {
    return this.tape
  }

  entry(key: string): ColdEntry | undefined {
    return this.tape.entry(key)
  }

  list(prefix: string): Promise<string[]> {
    return this.tape.list(prefix)
  }

  listSync(prefix: string): string[] {
    this.tape.catalog.refresh()
    return this.tape.catalog.list(prefix)
  }

  where(key: string): string {
    const e = this.tape.entry(key)
    return (e ? this.tapes.get(e.loc.tier) : undefined)?.where(key) ?? this.tape.where(key)
  }

  localRoots(): string[] {
    return [...this.tapes.values()].flatMap((t) => t.localRoots())
  }

  fill(entries: ColdEntry[], o: FillOptions): Map<string, Promise<void>> {
    const got = new Map<string, Promise<void>>()
    const byTier = new Map<string, ColdEntry[]>()
    for (const e of entries) {
      this.cache.miss()
      const l = byTier.get(e.loc.tier)
      if (l) l.push(e)
      else byTier.set(e.loc.tier, [e])
    }
    for (const [tier, es] of byTier) {
      const t = this.tapes.get(tier)
      if (!t) {
        for (const e of es) got.set(e.key, Promise.reject(new StoreError('EIO', e.key, `${this.where(e.key)}: on tier ${tier}, which this process has not opened`)))
        continue
      }
      for (const [k, p] of t.recall(es, (e, chunks) => this.cache.insert(e.key, e.sha256, chunks), { deadline: o.deadline, signal: o.signal, ahead: o.ahead })) got.set(k, p)
    }
    for (const p of got.values()) p.catch(() => undefined) // each caller handles its own
    if (o.timeoutMs === undefined) return got
    const out = new Map<string, Promise<void>>()
    for (const [k, p] of got) out.set(k, withTimeout(p, o.timeoutMs, () => new StoreError('EIO', k, `${this.where(k)}: not recalled within ${Math.round(o.timeoutMs! / 1000)} s (the recall deadline)`)))
    return out
  }

  promote(keys: string[]): void {
    for (const k of keys) {
      const e = this.tape.entry(k)
      if (e) this.tapes.get(e.loc.tier)?.promote(k)
    }
  }

  touch(key: string): void {
    this.cache.touch(key)
  }

  pin(keys: string[], holder: string): void {
    for (const k of keys) this.cache.pin(k, holder)
  }

  unpin(keys: string[] | null, holder: string): void {
    if (keys === null) this.cache.unpinHolder(holder)
    else for (const k of keys) this.cache.unpin(k, holder)
  }
}

/** `p`, or the error `fail()` makes once `ms` have passed (p goes on). */
export function withTimeout<T>(p: Promise<T>, ms: number, fail: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(fail()), ms)
    p.then(
      (v) => {
        clearTimeout(t)
        resolve(v)
      },
      (e: unknown) => {
        clearTimeout(t)
        reject(e)
      },
    )
  })
}
