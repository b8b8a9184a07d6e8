/**
 * The local read cache of a repository on S3 (issue 18 item 2; native-notes/store.md "S3: the
 * read cache"): the objects bfs never changes — units, packs, a stream's record and hashes,
 * dedup objects — are kept in the same disk buffer cache the tape tier uses (store/cache.ts,
 * one entry per object at its own offsets, segmented LRU, a size limit), so a second read of
 * them makes no request and a mount serves them through the native read path (the entry's
 * descriptor is the blob's localFd).
 *
 *   CACHE/data/KEY   the object's bytes (BufferCache's entry)
 *   CACHE/meta/KEY   {"size", "etag", "sha256"}: what the entry must be, written before it
 *
 * A fetched object is checked before it is kept: its size against the answer's, its MD5
 * against the ETag when the ETag is one (a single-part upload: every object bfs writes under
 * 64 MiB); each range of a large object is read with If-Match, so the parts are of one
 * version. The first open of an entry in a process hashes it (SHA-256) against its meta
 * record: a corrupt entry is removed and fetched again, never served. On the async face (a
 * mount) that hash reads the entry by HASH_PIECE asynchronously and hashes each piece in a
 * turn of its own (entry()): the event loop that answers the kernel is never held for a whole
 * unit; the sync face hashes in one go (entrySync()). Every process may add
 * entries (temporary name, rename); the first to open the cache owns it (evicts, keeps the
 * limit) and counts what others added when it next rescans.
 *
 * Reads, async face (a mount): a cold open asks for the first and the last PEEK_BYTES at once
 * (no HEAD); an object that small is whole, and kept. A read the peeks do not hold is one
 * ranged GET of just what it needs (a cold read costs about one GET of a frame); after its
 * answer the whole object is to be filled in the background, in a thread of its own
 * (FillThread), by FILL_CHUNK ranges, FILL_PARALLEL range GETs in flight, and once kept, reads
 * come from the entry (the mount's native path takes it over). Fills give way to reads: one
 * starts once no read has waited for a GET for FILL_IDLE_MS (or after FILL_DEFER_MS), and a
 * running one waits before each range while a read waits for a GET (giveWay). A process that
 * reads most of what it opens (readingAll: a restore) starts its fills at once; fills asked for
 * well ahead of need (warm's `ahead`: a whole generation's early units, asked for all at once)
 * run in the thread in the order asked, ORDERED_FILLS at a time. Sync face
 * (cat, restore, verify: readers that go on to read most of what they open): the open has
 * the S3 request thread fetch the whole object, its ranges in parallel, and reads the entry.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'
import type { MessagePort, Worker } from 'node:worker_threads'
import { lazyBuiltin } from '../os/builtin.js'
import { BufferCache, CacheBusy } from './cache.js'
import { workerFile } from './s3-sync.js'
import type { S3Store } from './s3.js'
import {
  checkInBlob, checkKey, getByOpen, isChanged, StoreError,
  type BlobReader, type BlobStat, type ByteRange, type PutOptions, type S3Location, type Staged, type Store, type StoreDescription, type SyncBlobReader, type SyncStore,
} from './store.js'

const workerThreads = lazyBuiltin<typeof import('node:worker_threads')>('node:worker_threads')

/** Keys bfs never changes once written (format.md §2.3): units (replaced only by content-equivalent ones, never on S3), packs, streams, hashes, dedup objects. */
const CACHEABLE_RE = /^(?:gens\/[0-9]+\/(?:unit-[0-9]+|pack-[0-9]+|hashes|stream)|index\/dedup-[A-Za-z0-9._-]+)$/
export const cacheable = (key: string): boolean => CACHEABLE_RE.test(key)

/**
 * A cold open (async face) asks for the first and the last PEEK_BYTES of the object at once
 * (two GETs in parallel, no HEAD): an object that small is then whole; a unit's header,
 * trailer and seek table are in them, so the open costs one round trip.
 */
export const PEEK_BYTES = 64 << 10
/** Objects up to this size are fetched whole with one GET (the fill's range size). */
export const SMALL_OBJECT = 4 << 20
/** Range size of the fill of a larger object. */
export const CHUNK = SMALL_OBJECT
/** How often an owner adding entries rescans the directory for others' (ms). */
const RESCAN_MS = 60_000
/** Range GETs in flight per object being filled. */
export const FILL_PARALLEL = 4
/** Whole fills at once in the fill thread of those asked for well ahead of need (Store.warm's `ahead`); more wait there, in the order asked. */
export const ORDERED_FILLS = 2
/**
 * A mount's fills give way to its reads (a cold read must cost about one GET, not one GET
 * behind megabytes of fills): a fill waits until no read has needed a GET for FILL_IDLE_MS…
 */
export const FILL_IDLE_MS = 50
/** …or until it has waited FILL_DEFER_MS (a reader that never pauses still gets its objects kept). */
export const FILL_DEFER_MS = 1000
/** Range size of a mount's fills: before each range a running fill waits while reads are waiting for GETs… */
export const FILL_CHUNK = 1 << 20
/** …for at most FILL_PAUSE_MS per range. */
export const FILL_PAUSE_MS = 250

/** A clock shared by threads in an Int32 (ms, wrapping every 24 days: a wrapped difference counts as long ago). */
export const msNow = (): number => Date.now() & 0x7fffffff

/**
 * What a fill thread does before each range GET and before hashing what it got: waits while
 * reads of its mount wait for a GET (`busy[0]`, shared) or one ended less than FILL_IDLE_MS
 * ago (`busy[1]`, msNow(): the read still decodes and answers), for at most FILL_PAUSE_MS.
 * Not at all once the process reads most of what it opens (`busy[2]` set: Store.readingAll).
 */
export async function giveWay(busy: Int32Array, maxMs = FILL_PAUSE_MS): Promise<void> {
  if (busy.length > 2 && Atomics.load(busy, 2)) return
  const until = Date.now() + maxMs
  for (;;) {
    const v = Atomics.load(busy, 0)
    const left = until - Date.now()
    if (left <= 0) return
    const since = msNow() - Atomics.load(busy, 1)
    const quietIn = since >= 0 && since < FILL_IDLE_MS ? FILL_IDLE_MS - since : 0
    if (v <= 0 && quietIn === 0) return
    if (v <= 0) {
      await new Promise((r) => setTimeout(r, Math.min(left, quietIn)))
      continue
    }
    const w = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { async: boolean; value: Promise<string> | string } }).waitAsync(busy, 0, v, left)
    if (w.async) await w.value
  }
}

/**
 * The cache directory of a repository at `loc`: under `base` (--cache-dir), else
 * $BFS_CACHE_DIR, else $XDG_CACHE_HOME/bfs, else ~/.cache/bfs; one sub-directory per
 * endpoint + bucket + prefix.
 */
export function cacheDirOf(loc: S3Location, base?: string, env: NodeJS.ProcessEnv = process.env): string {
  const root = base || env.BFS_CACHE_DIR || (env.XDG_CACHE_HOME ? path.join(env.XDG_CACHE_HOME, 'bfs') : path.join(os.homedir(), '.cache', 'bfs'))
  const id = createHash('sha256').update(`${loc.endpoint}/${loc.bucket}/${loc.prefix}`).digest('hex').slice(0, 16)
  return path.join(path.resolve(root), `s3-${loc.bucket}-${id}`)
}

interface Meta {
  size: number
  etag: string
  sha256: string
}

/** A fetched object: its bytes, and what the answers said of it. */
export interface Fetched {
  chunks: Buffer[]
  sizeBytes: number
  etag: string
}

/**
 * The whole object: ≤ SMALL_OBJECT (or `known` says so) one GET; else a first range that
 * gives size and ETag (unless known), then the rest by CHUNK ranges, FILL_PARALLEL at a time,
 * each If-Match. `onChunk` sees each range as it arrives (offsets are i·CHUNK); `gate` is
 * awaited before each range GET (a mount's fill giving way to its reads).
 */
export async function fetchWhole(s3: S3Store, key: string, known?: { sizeBytes: number; etag: string }, onChunk?: (i: number, b: Buffer) => void, limit?: Limiter, chunkBytes = CHUNK, gate?: () => Promise<void>): Promise<Fetched> {
  const CHUNK = chunkBytes
  let sizeBytes: number
  let etag: string
  const chunks: Buffer[] = []
  let next = 0
  if (known) {
    sizeBytes = known.sizeBytes
    etag = known.etag
  } else {
    const first = await s3.getRangeMeta(key, { offset: 0, length: CHUNK })
    sizeBytes = first.sizeBytes
    etag = first.etag
    chunks[0] = first.body
    onChunk?.(0, first.body)
    next = 1
  }
  const n = Math.max(1, Math.ceil(sizeBytes / CHUNK))
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++
      const offset = i * CHUNK
      const length = Math.min(CHUNK, sizeBytes - offset)
      let b: Buffer
      if (length === 0) b = Buffer.alloc(0)
      else {
        // the slot first, then give way: ranges queued at the limiter must not go out
        // behind a read that came while they waited (a scan's many fills share it)
        await limit?.acquire()
        try {
          await gate?.()
          b = await s3.getRange(key, { offset, length }, etag || undefined)
        } finally {
          limit?.release()
        }
      }
      chunks[i] = b
      onChunk?.(i, b)
    }
  }
  await Promise.all(Array.from({ length: Math.min(FILL_PARALLEL, n - next) }, worker))
  return { chunks, sizeBytes, etag }
}

/** At most `n` at a time (the fills' range GETs of one store: a scan opening many units must not flood the link and the reads that wait). */
export class Limiter {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor(private readonly n: number) {}
  async acquire(): Promise<void> {
    if (this.active < this.n) {
      this.active++
      return
    }
    await new Promise<void>((r) => this.waiting.push(r))
  }
  release(): void {
    this.active--
    this.pump()
  }
  private pump(): void {
    while (this.active < this.n && this.waiting.length) {
      this.active++
      this.waiting.shift()!()
    }
  }
}

/** Checks what was fetched (size; MD5 against a single-part ETag) and returns its SHA-256. */
export function checkFetched(where: string, key: string, f: Fetched): string {
  const got = f.chunks.reduce((a, c) => a + c.length, 0)
  if (got !== f.sizeBytes) throw new StoreError('EIO', key, `${where}: fetched ${got} bytes of an object of ${f.sizeBytes}: not cached`)
  const etag = f.etag.replace(/"/g, '')
  const sha = createHash('sha256')
  const md5 = /^[0-9a-f]{32}$/i.test(etag) ? createHash('md5') : null
  for (const c of f.chunks) {
    sha.update(c)
    md5?.update(c)
  }
  if (md5 && md5.digest('hex') !== etag.toLowerCase()) throw new StoreError('EIO', key, `${where}: the bytes fetched do not match the object's ETag (MD5): not served`)
  return sha.digest('hex')
}

/** Piece size of an entry's hash: one read and one hash update each (about 1 ms of SHA-256 per MiB here). */
export const HASH_PIECE = 1 << 20

/** SHA-256 of the first `size` bytes of `fd`, read by HASH_PIECE asynchronously: the event loop turns between pieces. */
export async function hashFd(fd: number, size: number): Promise<string> {
  const h = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.min(HASH_PIECE, Math.max(1, size)))
  for (let off = 0; off < size; ) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, buf, 0, Math.min(buf.length, size - off), off, (err, got) => (err ? reject(err) : resolve(got))))
    if (n <= 0) break
    h.update(buf.subarray(0, n))
    off += n
  }
  return h.digest('hex')
}

/** What a cache did in this process (tests, the bench). */
export interface ObjectCacheCounters {
  hits: number
  fills: number
  corrupt: number
  /** Opens served by an index record (no request). */
  indexHits: number
}

/**
 * An object's index as an open read it (a unit's header, trailer and seek table), kept in
 * CACHE/indexes/KEY so that a later open of that version needs no request: a cold read is then
 * one GET (the frame's), not two round trips. `etag` is the version's: every read through it
 * that the bytes do not hold is a GET with If-Match, so a record of a replaced object fails
 * that read (412), is dropped, and the reader opens the object again.
 */
export interface IndexRecord {
  size: number
  etag: string
  ranges: Array<{ offset: number; body: Buffer }>
}

/** An index record is not kept when its ranges add up to more than this (a unit's is a few KiB). */
export const INDEX_RECORD_MAX = 256 << 10

/** What an index record's SHA-256 covers: its fields and its bytes. */
function indexDigest(size: number, etag: string, spans: Array<[number, number]>, data: Buffer): string {
  return createHash('sha256').update(JSON.stringify([size, etag, spans])).update('\n').update(data).digest('hex')
}

/** One process's (or thread's) handle on a read cache directory. */
export class ObjectCache {
  /** Entries whose bytes this process hashed and found right: key → ino:size:mtime. */
  private readonly verified = new Map<string, string>()
  /** Hashes in progress on the async face: key NUL signature → SHA-256 hex. */
  private readonly checking = new Map<string, Promise<string>>()
  readonly counters: ObjectCacheCounters = { hits: 0, fills: 0, corrupt: 0, indexHits: 0 }
  private rescanned = Date.now()

  private constructor(
    readonly cache: BufferCache,
    private readonly warn: (m: string) => void,
  ) {
    cache.onDrop = (key) => this.dropMeta(key)
  }

  /** Opens (makes) the cache in `dir`: its owner if no other process is, else a writer of entries only. */
  static open(dir: string, o: { limitBytes?: number; owner?: boolean; warn?: (m: string) => void } = {}): ObjectCache {
    let cache: BufferCache
    try {
      cache = BufferCache.open(dir, { owner: o.owner !== false, limitBytes: o.limitBytes, make: true })
    } catch (err) {
      if (!(err instanceof CacheBusy)) throw err
      cache = BufferCache.open(dir, { make: true })
    }
    return new ObjectCache(cache, o.warn ?? ((m) => void process.stderr.write(`bfs: ${m}\n`)))
  }

  get dir(): string {
    return this.cache.dir
  }

  private metaFile(key: string): string {
    return path.join(this.cache.dir, 'meta', key)
  }

  private readMeta(key: string): Meta | null {
    try {
      const m = JSON.parse(fs.readFileSync(this.metaFile(key), 'utf8')) as Meta
      return typeof m.size === 'number' && typeof m.sha256 === 'string' && typeof m.etag === 'string' ? m : null
    } catch {
      return null
    }
  }

  private dropMeta(key: string): void {
    try {
      fs.rmSync(this.metaFile(key), { force: true })
    } catch {
      // gone already
    }
  }

  /**
   * The entry of `key` and what checking it takes: null (none, or no good record: written by a
   * process that died between the two, or its record lost — fetched again), or the reader, its
   * record and its signature (ino:size:mtime), `verified` if this process hashed that version.
   */
  private candidate(key: string): { b: BlobReader & SyncBlobReader; m: Meta; sig: string; verified: boolean } | null {
    const b = this.cache.openEntrySync(key) as (BlobReader & SyncBlobReader) | null
    if (!b) return null
    const m = this.readMeta(key)
    const fd = b.localFd
    const st = !m || m.size !== b.sizeBytes || fd === undefined ? null : fs.fstatSync(fd)
    if (!m || !st) {
      b.closeSync()
      return null
    }
    const sig = `${st.ino}:${st.size}:${st.mtimeMs}`
    return { b, m, sig, verified: this.verified.get(key) === sig }
  }

  /** The end of a check: a match is served (and remembered); a mismatch is removed and said. */
  private settled(key: string, c: { b: BlobReader & SyncBlobReader; m: Meta; sig: string }, digest: string): (BlobReader & SyncBlobReader) | null {
    if (digest !== c.m.sha256) {
      c.b.closeSync()
      const st = fs.statSync(this.cache.file(key), { throwIfNoEntry: false })
      // removed, or replaced by a new fill, while it was hashed: not this one's to remove
      if (!st || `${st.ino}:${st.size}:${st.mtimeMs}` !== c.sig) return null
      this.counters.corrupt++
      this.warn(`${this.cache.file(key)}: cache entry does not match its SHA-256 (corrupt on local disk); removed, fetching it again`)
      this.verified.delete(key)
      try {
        fs.rmSync(this.cache.file(key), { force: true })
      } catch {
        // another process removed it
      }
      this.dropMeta(key)
      return null
    }
    this.verified.set(key, c.sig)
    return this.served(key, c.b)
  }

  private served(key: string, b: BlobReader & SyncBlobReader): BlobReader & SyncBlobReader {
    this.counters.hits++
    this.cache.touch(key)
    return b
  }

  /**
   * The entry of `key`, verified (SHA-256 against its meta record, once per process and file
   * version), or null: none, or a bad one (removed, and said once). Synchronous: the hash of
   * an entry not verified yet blocks the caller (the sync face: cat, restore, verify; a mount
   * uses entry()).
   */
  entrySync(key: string): (BlobReader & SyncBlobReader) | null {
    const c = this.candidate(key)
    if (!c) return null
    if (c.verified) return this.served(key, c.b)
    const h = createHash('sha256')
    const buf = Buffer.allocUnsafe(HASH_PIECE)
    const fd = c.b.localFd!
    for (let off = 0; off < c.b.sizeBytes; ) {
      const n = fs.readSync(fd, buf, 0, Math.min(buf.length, c.b.sizeBytes - off), off)
      if (n <= 0) break
      h.update(buf.subarray(0, n))
      off += n
    }
    return this.settled(key, c, h.digest('hex'))
  }

  /**
   * entrySync() for an event loop that must not block (a mount): an entry not verified yet in
   * this process is read and hashed by HASH_PIECE, each piece read asynchronously (the
   * threadpool) and hashed in one short turn, before it is served: a corrupt entry is still
   * removed and fetched again, never served. One check per entry version at a time.
   */
  async entry(key: string): Promise<(BlobReader & SyncBlobReader) | null> {
    const c = this.candidate(key)
    if (!c) return null
    if (c.verified) return this.served(key, c.b)
    const k = `${key}\0${c.sig}`
    let p = this.checking.get(k)
    if (!p) {
      p = hashFd(c.b.localFd!, c.b.sizeBytes).finally(() => this.checking.delete(k))
      this.checking.set(k, p)
    }
    let digest: string
    try {
      digest = await p
    } catch (err) {
      c.b.closeSync()
      throw err
    }
    // another check of this version may have settled it meanwhile (a corrupt one is removed and said once: settled() finds it gone)
    if (this.verified.get(key) === c.sig) return this.served(key, c.b)
    return this.settled(key, c, digest)
  }

  /** The entry of `key` if this process has verified its version already, else null: never hashes (a poll on a mount's event loop). */
  entryVerified(key: string): (BlobReader & SyncBlobReader) | null {
    const c = this.candidate(key)
    if (!c) return null
    if (c.verified) return this.served(key, c.b)
    c.b.closeSync()
    return null
  }

  /** Whether `key` has an entry with a good-looking record (not hashed: the reader that opens it checks it). */
  present(key: string): boolean {
    try {
      const c = this.candidate(key)
      if (!c) return false
      c.b.closeSync()
      return true
    } catch {
      return false // unreadable (EMFILE, EACCES): as absent; the reader that opens it says why
    }
  }

  /** An entry another thread of this process wrote and hashed (`sig` from its put): not hashed again here. */
  trust(key: string, sig: string): void {
    if (!sig) return
    this.verified.set(key, sig)
    this.counters.fills++
  }

  /** An entry was added (here or by another thread or process): the owner (a long-running mount) counts others' now and then. */
  added(): void {
    if (this.cache.owner && Date.now() - this.rescanned > RESCAN_MS) {
      this.rescanned = Date.now()
      this.cache.rescan()
    }
  }

  /** Keeps a fetched object: its meta record, then the entry (atomic). Returns the entry's signature for trust(), or '' if the disk refused (the read goes on without the cache). */
  async put(key: string, f: Fetched, sha256: string): Promise<string> {
    checkKey(key)
    try {
      const mf = this.metaFile(key)
      fs.mkdirSync(path.dirname(mf), { recursive: true, mode: 0o700 })
      const tmp = `${mf}.tmp-${os.hostname()}-${process.pid}-${Math.random().toString(16).slice(2, 10)}`
      fs.writeFileSync(tmp, JSON.stringify({ size: f.sizeBytes, etag: f.etag, sha256 } satisfies Meta) + '\n')
      fs.renameSync(tmp, mf)
      await this.cache.insertShared(key, sha256, f.chunks)
      this.counters.fills++
      this.added()
      // just hashed: this process need not hash the file again
      const st = fs.statSync(this.cache.file(key))
      const sig = `${st.ino}:${st.size}:${st.mtimeMs}`
      this.verified.set(key, sig)
      return sig
    } catch (err) {
      this.warn(`${this.cache.file(key)}: cannot keep it in the read cache (${(err as Error).message.split('\n')[0]})`)
      return ''
    }
  }

  /** Forgets an entry and its index record (its key was replaced or removed in the repository). */
  async drop(key: string): Promise<void> {
    this.verified.delete(key)
    await this.cache.discard(key).catch(() => undefined)
    this.dropMeta(key)
    await this.dropIndex(key)
  }

  private indexFile(key: string): string {
    return path.join(this.cache.dir, 'indexes', key)
  }

  /**
   * The index record of `key`, or null: none, or one that does not check (its SHA-256, torn or
   * corrupt on local disk: removed). Read asynchronously (a mount's open).
   */
  async readIndex(key: string): Promise<IndexRecord | null> {
    const f = this.indexFile(key)
    let text: string
    try {
      text = await fs.promises.readFile(f, 'utf8')
    } catch {
      return null
    }
    try {
      const j = JSON.parse(text) as { size: number; etag: string; spans: Array<[number, number]>; data: string; sha256: string }
      const data = Buffer.from(j.data, 'base64')
      if (!Number.isSafeInteger(j.size) || typeof j.etag !== 'string' || !j.etag || !Array.isArray(j.spans) || indexDigest(j.size, j.etag, j.spans, data) !== j.sha256) throw new Error('bad record')
      const ranges: IndexRecord['ranges'] = []
      let at = 0
      for (const [offset, length] of j.spans) {
        if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > j.size || at + length > data.length) throw new Error('bad span')
        ranges.push({ offset, body: data.subarray(at, at + length) })
        at += length
      }
      return { size: j.size, etag: j.etag, ranges }
    } catch {
      this.warn(`${f}: index record does not check (corrupt on local disk); removed, reading the index from the store again`)
      await fs.promises.rm(f, { force: true }).catch(() => undefined)
      return null
    }
  }

  /** Keeps an index record (temporary name, rename; asynchronous). A failure only means the next open asks the store. */
  async keepIndex(key: string, r: IndexRecord): Promise<void> {
    checkKey(key)
    const spans = r.ranges.map((x): [number, number] => [x.offset, x.body.length])
    const data = Buffer.concat(r.ranges.map((x) => x.body))
    if (!r.etag || data.length > INDEX_RECORD_MAX) return
    const f = this.indexFile(key)
    const tmp = `${f}.tmp-${os.hostname()}-${process.pid}-${Math.random().toString(16).slice(2, 10)}`
    try {
      await fs.promises.mkdir(path.dirname(f), { recursive: true, mode: 0o700 })
      await fs.promises.writeFile(tmp, JSON.stringify({ size: r.size, etag: r.etag, spans, data: data.toString('base64'), sha256: indexDigest(r.size, r.etag, spans, data) }) + '\n')
      await fs.promises.rename(tmp, f)
    } catch {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined)
    }
  }

  /** Removes the index record of `key` (only if it is of version `etag`, when given: another open may have kept a newer one). */
  async dropIndex(key: string, etag?: string): Promise<void> {
    const f = this.indexFile(key)
    if (etag !== undefined) {
      const r = await this.readIndex(key)
      if (!r || r.etag !== etag) return
    }
    await fs.promises.rm(f, { force: true }).catch(() => undefined)
  }

  close(): void {
    this.cache.close()
  }
}

/** A fill in progress in this process (in its fill thread); `done` once the entry is kept. */
interface Fill {
  done: boolean
  p: Promise<void>
  /** Its size and ETag, when known before it started (an open's peeks): a further open needs no peek. */
  known?: { sizeBytes: number; etag: string }
}

/**
 * A mount's fills run in a thread of their own (the S3 request thread's script, answering by
 * request id): receiving, hashing (MD5 and SHA-256) and writing megabytes must not hold the
 * event loop that answers the kernel's reads.
 */
class FillThread {
  private readonly worker: Worker
  private readonly port: MessagePort
  private next = 1
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()

  /** `busy`: the reads waiting for a GET in this process (shared): the thread's fills give way to them. */
  constructor(desc: unknown, busy: Int32Array) {
    const { port1, port2 } = new (workerThreads().MessageChannel)()
    this.port = port1
    this.worker = new (workerThreads().Worker)(workerFile(), { workerData: { desc, port: port2, flag: new Int32Array(new SharedArrayBuffer(4)), busy }, transferList: [port2] })
    this.worker.unref()
    this.port.on('message', (m: { id?: number; r?: unknown; e?: { code: string; key: string; message: string } }) => {
      const p = m.id === undefined ? undefined : this.pending.get(m.id)
      if (!p) return
      this.pending.delete(m.id!)
      if (m.e) p.reject(new StoreError((m.e.code as never) ?? 'EIO', m.e.key, m.e.message))
      else p.resolve(m.r)
      if (this.pending.size === 0) this.port.unref()
    })
    this.port.unref()
    this.worker.on('error', (err) => {
      for (const p of this.pending.values()) p.reject(err)
      this.pending.clear()
    })
  }

  /**
   * Fills `key` into the cache at `dir`; resolves with the entry's signature ('' if not kept).
   * `ordered` (a fetch well ahead of need, Store.warm's `ahead`): it waits in the thread for one
   * of ORDERED_FILLS slots, in the order asked; other fills do not wait for those slots.
   */
  fill(key: string, dir: string, known: { sizeBytes: number; etag: string } | undefined, ordered = false): Promise<string> {
    const id = this.next++
    return new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.port.ref()
      this.port.postMessage({ op: 'fill', key, args: [dir, known, FILL_CHUNK, ordered], id })
    }) as Promise<string>
  }

  close(): void {
    // the fills under way end (failed: their readers go on by range), none waits forever
    for (const p of this.pending.values()) p.reject(new Error('the fill thread was closed'))
    this.pending.clear()
    void this.worker.terminate()
    this.port.close()
  }
}

/** An object larger than SMALL_OBJECT opened while its fill runs: reads from the ranges in, else one ranged GET each; the entry (and its descriptor) once it is complete. */
class FillingBlob implements BlobReader {
  private entry: (BlobReader & SyncBlobReader) | null = null
  private closed = false
  /** A read found the object replaced since this version was opened. */
  private stale = false
  private fill: Fill | null = null
  /** An async check of the entry the fill kept, when it was not trusted at once. */
  private checking: Promise<void> | null = null
  /** After a check that found no entry: not before this time again (ms). */
  private recheckAt = 0

  private again(): void {
    this.checking = null
    this.recheckAt = Date.now() + 1000
  }
  constructor(
    private readonly s: S3CachedStore,
    readonly key: string,
    readonly sizeBytes: number,
    private readonly etag: string,
    /** Starts (or joins) the object's fill: after the first read the peeks do not serve (a mount opens a file's units at its open, to read none of most). */
    private readonly begin: (() => Fill) | null,
    /** Bytes the open fetched (its first and last PEEK_BYTES), or an index record's ranges. */
    private readonly peeks: Array<{ offset: number; body: Buffer }> = [],
    /** Opened from an index record (no request): its reads past the record still check the version (If-Match). */
    private readonly fromRecord = false,
  ) {}

  /** What was read before indexRead() (the index, as the reader read it): an index record's ranges; null once said or given up. */
  private seen: Array<{ offset: number; body: Buffer }> | null = []
  private seenBytes = 0

  private saw(offset: number, b: Buffer): void {
    if (!this.seen) return
    this.seenBytes += b.length
    if (this.seenBytes > INDEX_RECORD_MAX) this.seen = null
    else this.seen.push({ offset, body: Buffer.from(b) })
  }

  /** The reader read and checked the index with the reads so far: kept as an index record (not for a blob opened from one). */
  indexRead(): void {
    const seen = this.seen
    this.seen = null
    if (!seen?.length || this.fromRecord || !this.etag || this.closed) return
    // a read inside another (a v2 header's first 32 bytes, then its 96) is not kept twice
    const ranges: typeof seen = []
    for (const r of [...seen].sort((a, b) => b.body.length - a.body.length)) {
      if (!ranges.some((o) => o.offset <= r.offset && r.offset + r.body.length <= o.offset + o.body.length)) ranges.push(r)
    }
    void this.s.objects.keepIndex(this.key, { size: this.sizeBytes, etag: this.etag, ranges })
  }

  private poll(): void {
    if (this.entry || !this.fill?.done || this.closed || this.checking || Date.now() < this.recheckAt) return
    // the fill thread hashed what it wrote: served at once; else (its file changed since) checked without blocking
    this.entry = this.s.objects.entryVerified(this.key)
    if (this.entry) return
    // none kept after all (evicted, or found corrupt and removed): read by range again, and a
    // later poll checks again (the fill itself is not restarted)
    this.checking = this.s.objects.entry(this.key).then(
      (e) => {
        if (this.closed) void e?.close()
        else this.entry = e
        if (!e) this.again()
      },
      () => this.again(),
    )
  }

  get localFd(): number | undefined {
    this.poll()
    return this.entry?.localFd
  }

  async read(r: ByteRange, into?: Buffer): Promise<Buffer> {
    const where = this.s.where(this.key)
    checkInBlob(this.key, where, r, this.sizeBytes)
    if (this.closed) throw new StoreError('EIO', this.key, `${where}: read after close`)
    if (into && into.length < r.length) throw new TypeError(`buffer of ${into.length} bytes for a read of ${r.length}`)
    this.poll()
    if (this.entry) return this.entry.read(r, into)
    if (r.length === 0) return Buffer.alloc(0)
    for (const p of this.peeks) {
      if (r.offset >= p.offset && r.offset + r.length <= p.offset + p.body.length) {
        const b = p.body.subarray(r.offset - p.offset, r.offset - p.offset + r.length)
        this.saw(r.offset, b)
        if (!into) return Buffer.from(b)
        b.copy(into)
        return into.subarray(0, r.length)
      }
    }
    const out = into ?? Buffer.allocUnsafe(r.length)
    let b: Buffer
    try {
      b = await this.s.foreground(() => this.s.inner.getRange(this.key, r, this.etag || undefined))
    } catch (err) {
      // replaced since this version was opened (a record of it is stale): no record of it any
      // more, no fill of it; the reader opens the object again (StoreError.changed)
      if (isChanged(err)) {
        this.stale = true
        await this.s.objects.dropIndex(this.key, this.etag)
      }
      throw err
    } finally {
      // the fill starts once the first read that needed a GET has its answer: that read goes first
      if (!this.fill && this.begin && !this.closed && !this.stale) this.fill = this.begin()
    }
    this.saw(r.offset, b.subarray(0, r.length))
    b.copy(out, 0, 0, r.length)
    return out.subarray(0, r.length)
  }

  async close(): Promise<void> {
    this.closed = true
    const e = this.entry
    this.entry = null
    await e?.close()
  }
}

/** The sync face: writes and mutable keys as S3's; immutable objects through the cache (fetched whole by the request thread on a miss). */
class CachedSyncFace implements SyncStore {
  constructor(private readonly s: S3CachedStore) {}

  private get inner(): SyncStore {
    return this.s.inner.sync
  }

  getSync(key: string, range?: ByteRange): Buffer {
    if (!cacheable(key)) return this.inner.getSync(key, range)
    const b = this.openSync(key)
    try {
      return b.readSync(range ?? { offset: 0, length: b.sizeBytes })
    } finally {
      b.closeSync()
    }
  }

  openSync(key: string): SyncBlobReader {
    if (!cacheable(key)) return this.inner.openSync(key)
    const hit = this.s.objects.entrySync(key)
    if (hit) return hit
    // the request thread fetches the whole object (ranges in parallel), checks it and writes the entry
    const sig = (this.s.inner.sync as unknown as { bridge(): { call(op: string, key: string, ...a: unknown[]): unknown } }).bridge().call('fill', key, this.s.objects.dir) as string
    if (sig) {
      this.s.objects.trust(key, sig)
      const e = this.s.objects.entrySync(key)
      if (e) return e
    }
    return this.inner.openSync(key)
  }

  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): void {
    this.inner.putSync(key, data, opts)
    if (cacheable(key) && opts?.mode === 'replace') void this.s.objects.drop(key)
  }

  writeStagedSync(st: Staged, data: readonly Uint8Array[]): number {
    return this.inner.writeStagedSync(st, data)
  }

  hasSync(key: string): boolean {
    return this.inner.hasSync(key)
  }

  statSync(key: string): BlobStat {
    return this.inner.statSync(key)
  }

  listSync(prefix: string): string[] {
    return this.inner.listSync(prefix)
  }

  removeSync(key: string, opts?: { recursive?: boolean }): void {
    this.inner.removeSync(key, opts)
    if (cacheable(key)) void this.s.objects.drop(key)
  }

  flushSync(prefix: string): void {
    this.inner.flushSync(prefix)
  }
}

/**
 * An S3 store with the read cache in front of its immutable objects (see the top of this
 * file). Everything else — writes, listings, mutable keys (config, manifests, runs, leases,
 * locks) — goes to S3 as it is.
 */
export class S3CachedStore implements Store {
  private readonly fills = new Map<string, Fill>()
  /** Fills asked for and not started yet (FILL_IDLE_MS, FILL_DEFER_MS), in the order asked. */
  private readonly queued = new Map<string, { since: number; go(): void; stop(err: Error): void }>()
  private timer: NodeJS.Timeout | null = null
  /** [reads (and cold opens) waiting for a GET now, when the last one ended (msNow()), 1 = readingAll]: shared with the fill thread (giveWay). */
  private readonly busy = new Int32Array(new SharedArrayBuffer(12))
  private lastRead = -Infinity
  private filler: FillThread | null = null
  private face: CachedSyncFace | null = null
  private oc: ObjectCache | null = null

  /** `open`: the cache, opened on first use (a command that reads no object makes no directory). */
  constructor(
    readonly inner: S3Store,
    readonly cacheDir: string,
    private readonly openCache: () => ObjectCache = () => ObjectCache.open(cacheDir),
    /** When fills start: after reads are idle this long, or after waiting this long at most (tests). */
    private pace: { idleMs: number; deferMs: number } = { idleMs: FILL_IDLE_MS, deferMs: FILL_DEFER_MS },
  ) {}

  /** Fills started and not yet finished, and fills waiting to start (tests, the bench). */
  get fillState(): { running: number; queued: number } {
    return { running: this.fills.size - this.queued.size, queued: this.queued.size }
  }

  /** A GET a read waits for: fills do not start meanwhile, and running ones pause before their next range. */
  async foreground<T>(get: () => Promise<T>): Promise<T> {
    Atomics.add(this.busy, 0, 1)
    try {
      return await get()
    } finally {
      Atomics.store(this.busy, 1, msNow())
      Atomics.sub(this.busy, 0, 1)
      Atomics.notify(this.busy, 0)
      this.lastRead = performance.now()
      this.pump()
    }
  }

  /** Starts the queued fills that may start now; else sets a timer for the next that may. */
  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer)
      this.timer = null
    }
    if (this.queued.size === 0) return
    const now = performance.now()
    const idle = Atomics.load(this.busy, 0) === 0 && now - this.lastRead >= this.pace.idleMs
    let next = Infinity
    for (const [key, q] of this.queued) {
      if (idle || now - q.since >= this.pace.deferMs) {
        this.queued.delete(key)
        q.go()
      } else next = Math.min(next, q.since + this.pace.deferMs)
    }
    if (this.queued.size === 0) return
    if (Atomics.load(this.busy, 0) === 0) next = Math.min(next, this.lastRead + this.pace.idleMs)
    this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(next - now)))
    this.timer.unref()
  }

  get objects(): ObjectCache {
    return (this.oc ??= this.openCache())
  }

  get sync(): SyncStore {
    return (this.face ??= new CachedSyncFace(this))
  }

  where(key: string): string {
    return this.inner.where(key)
  }

  localRoots(): string[] {
    try {
      // made here if missing (callers stat what they are given; a backup's reads may fill it)
      fs.mkdirSync(this.cacheDir, { recursive: true, mode: 0o700 })
    } catch {
      return this.inner.localRoots()
    }
    return [...this.inner.localRoots(), this.cacheDir]
  }

  describe(): StoreDescription {
    return { kind: 's3cached', s3: this.inner.describe(), cacheDir: this.cacheDir }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    // a fill that never started ends now (its promise settles: settle() and whoever awaits it go on)
    const queued = [...this.queued.values()]
    this.queued.clear()
    for (const q of queued) q.stop(new Error('the store was closed'))
    this.inner.close()
    this.filler?.close()
    this.filler = null
    this.oc?.close()
    this.oc = null
  }

  /** Starts every queued fill now and waits for all of them (a test; the bench). */
  async settle(): Promise<void> {
    for (const [key, q] of this.queued) {
      this.queued.delete(key)
      q.go()
    }
    await Promise.all([...this.fills.values()].map((f) => f.p.catch(() => undefined)))
  }

  /**
   * Fetches the whole object into the cache (one fill per key in this process), in the fill
   * thread, once the reads give it room (pump); resolves when kept (or failed: reads go on
   * from S3).
   */
  private startFill(key: string, known: { sizeBytes: number; etag: string } | undefined, ahead = false): Fill {
    const running = this.fills.get(key)
    if (running) return running
    // kept since the reader opened it (a fill of this process that ended meanwhile, or another
    // process's): nothing to fetch again
    if (this.objects.present(key)) return { done: true, p: Promise.resolve(), known }
    const f: Fill = { done: false, p: Promise.resolve(), known }
    const started = new Promise<void>((go, stop) => this.queued.set(key, { since: performance.now(), go, stop }))
    f.p = (async () => {
      try {
        await started
        const objects = this.objects
        const sig = await (this.filler ??= new FillThread(this.inner.describe(), this.busy)).fill(key, objects.dir, known, ahead)
        if (sig) {
          objects.trust(key, sig)
          objects.added()
          f.done = true
        }
      } catch {
        // the reads go on with ranged GETs; a later open tries again
      } finally {
        if (this.fills.get(key) === f) this.fills.delete(key)
      }
    })()
    this.fills.set(key, f)
    this.pump()
    return f
  }

  /** Fills start at the first read of an object, not when reads pause (Store.readingAll). */
  readingAll(): void {
    this.pace = { idleMs: 0, deferMs: 0 }
    Atomics.store(this.busy, 2, 1)
    // the fill thread loads the SDK (~0.2–0.5 s) while the command reads its config and manifest
    this.filler ??= new FillThread(this.inner.describe(), this.busy)
    this.pump()
  }

  /** Store.stopFetching: the queued fills end unstarted, the running ones with the fill thread. */
  stopFetching(): void {
    const queued = [...this.queued.values()]
    this.queued.clear()
    for (const q of queued) q.stop(new Error('fetching stopped'))
    this.filler?.close()
    this.filler = null
  }

  /** Store.warm: the whole object into the cache now (no peek: the fill's first range says its size); `ahead`: an ordered fill (FillThread.fill). */
  async warm(key: string, opts: { ahead?: boolean } = {}): Promise<boolean> {
    if (!cacheable(key)) return false
    try {
      checkKey(key)
      if (this.objects.present(key)) return true
      const f = this.fills.get(key) ?? this.startFill(key, undefined, !!opts.ahead)
      const q = this.queued.get(key)
      if (q) {
        this.queued.delete(key)
        q.go()
      }
      await f.p
      return f.done
    } catch {
      return false
    }
  }

  async open(key: string): Promise<BlobReader> {
    if (!cacheable(key)) return this.inner.open(key)
    checkKey(key)
    // checked without blocking the event loop that answers the kernel (a mount)
    const hit = await this.objects.entry(key)
    if (hit) return hit
    // its index kept by an earlier open (of this version, as far as we know): no request now;
    // a read past the record is a GET with If-Match, and a replaced object fails it (stale)
    const rec = await this.objects.readIndex(key)
    if (rec) {
      this.objects.counters.indexHits++
      const known = { sizeBytes: rec.size, etag: rec.etag }
      return new FillingBlob(this, key, rec.size, rec.etag, () => this.startFill(key, known), rec.ranges, true)
    }
    // its fill under way in this process, its size and ETag known: no request now (a
    // restore's tree opens one pack hundreds of times while the pack's fill runs: each open
    // peeked at both ends again, two GETs)
    const filling = this.fills.get(key)
    if (filling?.known) {
      const known = filling.known
      return new FillingBlob(this, key, known.sizeBytes, known.etag, () => this.startFill(key, known))
    }
    // one round trip: the first and the last PEEK_BYTES at once (size and ETag come with them)
    const tailP = this.foreground(() => this.inner.getRangeMeta(key, { suffix: PEEK_BYTES })).catch(() => null)
    let head
    try {
      head = await this.foreground(() => this.inner.getRangeMeta(key, { offset: 0, length: PEEK_BYTES }))
    } catch (err) {
      // an empty object has no range to ask for (416)
      if (err instanceof StoreError && err.code === 'TRUNCATED') return this.inner.open(key)
      throw err
    }
    const tail = await tailP
    const known = { sizeBytes: head.sizeBytes, etag: head.etag }
    if (head.body.length === head.sizeBytes) {
      // small: whole already
      const f: Fetched = { chunks: [head.body], ...known }
      const sig = await this.objects.put(key, f, checkFetched(this.where(key), key, f))
      const e = sig ? await this.objects.entry(key) : null
      if (e) return e
      return new FillingBlob(this, key, known.sizeBytes, known.etag, null, [{ offset: 0, body: head.body }])
    }
    const peeks = [{ offset: 0, body: head.body }]
    if (tail && tail.etag === head.etag && tail.sizeBytes === head.sizeBytes) peeks.push({ offset: tail.offset, body: tail.body })
    return new FillingBlob(this, key, known.sizeBytes, known.etag, () => this.startFill(key, known), peeks)
  }

  get(key: string, range?: ByteRange): Promise<Buffer> {
    if (!cacheable(key)) return this.inner.get(key, range)
    return getByOpen(this, key, range)
  }

  async put(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void> {
    await this.inner.put(key, data, opts)
    if (cacheable(key) && opts?.mode === 'replace') await this.objects.drop(key)
  }

  stage(key: string): Promise<Staged> {
    return this.inner.stage(key)
  }

  writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number> {
    return this.inner.writeStaged(s, data)
  }

  commitStaged(s: Staged, opts?: { syncListing?: boolean }): Promise<void> {
    void opts
    return this.inner.commitStaged(s)
  }

  abortStaged(s: Staged): Promise<void> {
    return this.inner.abortStaged(s)
  }

  has(key: string): Promise<boolean> {
    return this.inner.has(key)
  }

  stat(key: string): Promise<BlobStat> {
    return this.inner.stat(key)
  }

  list(prefix: string): Promise<string[]> {
    return this.inner.list(prefix)
  }

  async remove(key: string, opts?: { recursive?: boolean }): Promise<void> {
    await this.inner.remove(key, opts)
    if (cacheable(key)) await this.objects.drop(key)
  }

  flush(prefix: string): Promise<void> {
    return this.inner.flush(prefix)
  }

  sweep(prefix?: string, opts?: { shallow?: boolean }): Promise<number> {
    return this.inner.sweep(prefix, opts)
  }
}
