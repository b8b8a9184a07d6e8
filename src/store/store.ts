/**
 * The store contract: opaque blobs under '/'-separated keys, read whole or by range,
 * written atomically and never modified. Every tier (disk, memory, the fault-injecting
 * wrapper; later a buffer cache, tape, object stores) implements it and passes
 * test/store-conformance.ts. native-notes/store.md is the prose version of this file.
 *
 * Async is the contract (remote and slow tiers cannot be synchronous); `sync` is an
 * optional synchronous face of the same store for code that must not yield (CLI
 * metadata reads, worker-thread frame reads), null where a tier cannot offer it.
 */

/** A byte range of a blob: `length` bytes from `offset` (both non-negative integers). */
export interface ByteRange {
  offset: number
  length: number
}

/**
 * Error codes a store reports. ENOENT: no such blob; EEXIST: a 'create' over an existing
 * key; EIO: the medium failed (and anything not listed); ENOSPC/EDQUOT: full (the CLI's
 * "disk full" message depends on these surviving); EROFS: a read-only store (a worker's
 * snapshot of a memory store); TRUNCATED: fewer bytes than asked for (a range past the
 * end, or a blob that shrank); ENOSYNC: the synchronous face was asked of a store without one.
 */
export type StoreErrorCode = 'ENOENT' | 'EEXIST' | 'EIO' | 'ENOSPC' | 'EDQUOT' | 'EROFS' | 'TRUNCATED' | 'ENOSYNC'

/** The one error type of the store layer: a code, the key, and a one-line message naming where(key). */
export class StoreError extends Error {
  override readonly name = 'StoreError'
  /**
   * The blob was replaced or removed since it was opened (S3: a read's If-Match failed, 412):
   * what the reader learnt at its open (a unit's index) no longer holds. The block reader opens
   * the unit again and retries once (format.md §2.20.2).
   */
  readonly changed: boolean
  constructor(
    readonly code: StoreErrorCode,
    readonly key: string,
    message: string,
    opts?: { cause?: unknown; changed?: boolean },
  ) {
    super(message, opts)
    this.changed = opts?.changed ?? false
  }
}

/** Whether `err` says the blob changed since it was opened (StoreError.changed). */
export const isChanged = (err: unknown): boolean => err instanceof StoreError && err.changed

export interface BlobStat {
  sizeBytes: number
  /** When the blob was last written (ms since the epoch), where the store knows it (disk); for judging litter such as an unreadable lock. */
  mtimeMs?: number
  /** SHA-256 of the whole blob (hex), where a tier keeps it (tape: its catalog); a cache checks what it fetches against it. */
  sha256?: string
}

export interface PutOptions {
  /**
   * 'create' (default): write-once, EEXIST if the key exists (not atomic against a
   * concurrent creator: writers hold the writer lock). 'replace': atomic replace, a reader
   * sees the old or the new bytes, never a mix. 'exclusive': create, atomic against
   * concurrent creators (exactly one wins; the writer lock).
   */
  mode?: 'create' | 'replace' | 'exclusive'
  /** false: the caller makes the listing durable later with flush(prefix) (one directory fsync for many puts). Default true. */
  syncListing?: boolean
  /**
   * false: neither the bytes nor the listing are fsynced. For records whose worth ends with
   * the process that wrote them (leases and locks, §2.20.2): after a crash their holder is
   * dead whatever the disk kept, and other processes see them without an fsync. The write is
   * still whole-or-nothing to readers (temporary file, then rename or link). Default true.
   */
  durable?: boolean
}

/** An opened blob: one open, many ranged reads. */
export interface BlobReader {
  readonly key: string
  readonly sizeBytes: number
  /** Exactly range.length bytes (into `into` when given, which must be long enough), or StoreError TRUNCATED/EIO. */
  read(range: ByteRange, into?: Buffer): Promise<Buffer>
  /**
   * The blob's plaintext bytes on local disk as a file descriptor, for the native read
   * path; undefined for remote, encrypted or fault-injected blobs. Valid until close().
   */
  readonly localFd: number | undefined
  close(): Promise<void>
  /**
   * Said by a reader that has read and checked the blob's index (a unit's header, trailer and
   * seek table: UnitTable) with the reads made so far: a store that fetches from far away may
   * keep those bytes, so that a later open of the same version reads them without a request
   * (S3: objcache.ts, the index records). Optional; nothing to do for local stores.
   */
  indexRead?(): void
}

/** A BlobReader that can also read without yielding (from a store's sync face). */
export interface SyncBlobReader extends BlobReader {
  readSync(range: ByteRange, into?: Buffer): Buffer
  closeSync(): void
}

/** A write in progress, by token: serializable, so one thread writes and another commits. */
export interface Staged {
  readonly token: string
}

export interface Store {
  /** The whole blob, or a range of it. ENOENT if absent, TRUNCATED past its end. */
  get(key: string, range?: ByteRange): Promise<Buffer>
  open(key: string): Promise<BlobReader>
  /** tmp → fsync → rename (or link, for 'exclusive'); multi-part data is written in order. */
  put(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): Promise<void>
  /** A staged write of `key`: invisible (has, list, get) until commitStaged. */
  stage(key: string): Promise<Staged>
  /** Writes the staged blob's bytes (once per token); returns the byte count. */
  writeStaged(s: Staged, data: readonly Uint8Array[]): Promise<number>
  /**
   * Optional: appends bytes to the staged blob; returns the byte count. `at` is how many bytes
   * earlier appends wrote: 0 creates the blob (it must not exist), any other value appends to
   * the blob only if it exists and holds exactly that many bytes (a temporary file removed or
   * changed meanwhile, e.g. by another host's sweep, fails the write instead of being made
   * again with only the later bytes). For a writer that writes a big blob as it makes it
   * instead of holding it whole (a format 2 pack: PackWriter). A token is written either by
   * appends or by one writeStaged. Absent: the writer holds the blob and calls writeStaged.
   */
  appendStaged?(s: Staged, data: readonly Uint8Array[], at: number): Promise<number>
  /** Makes a written staged blob durable and visible under its key; EEXIST if the key exists. */
  commitStaged(s: Staged, opts?: { syncListing?: boolean }): Promise<void>
  abortStaged(s: Staged): Promise<void>
  /** True for a blob (a prefix is not a blob). */
  has(key: string): Promise<boolean>
  /** ENOENT if absent (or a prefix). */
  stat(key: string): Promise<BlobStat>
  /** Keys of the direct children of `prefix` ('' = the top), blobs and sub-prefixes, sorted; [] if none. Never a temporary or staged name. */
  list(prefix: string): Promise<string[]>
  /** Removes a blob (absent is fine), or with `recursive` everything under a prefix. */
  remove(key: string, opts?: { recursive?: boolean }): Promise<void>
  /** Makes the listing under `prefix` durable (after puts with syncListing false). */
  flush(prefix: string): Promise<void>
  /**
   * Removes this store's own litter (temporary files of dead writers) under `prefix`; returns
   * how many. `shallow`: only directly under `prefix`, not under its sub-prefixes. Call under
   * the writer lock.
   */
  sweep(prefix?: string, opts?: { shallow?: boolean }): Promise<number>
  /** Where a key lives, for messages only: never opened by a caller. */
  where(key: string): string
  /** Local directories holding this store's bytes (backup and mount keep out of them). */
  localRoots(): string[]
  /** How to re-create this store in another thread (openStore), or null if it cannot be shared. */
  describe(): StoreDescription | null
  readonly sync: SyncStore | null
  /**
   * A store with a local cache in front of a remote one (S3): this process reads most of what
   * it opens (a restore), so an object's whole fetch into the cache starts at its first read,
   * not when reads pause. Absent: nothing to do.
   */
  readingAll?(): void
  /**
   * A store with a local cache in front of a remote one: fetches `key` whole into the cache
   * now (joining a fetch under way), for a reader that will open it soon — restore's workers,
   * a job or two ahead. Resolves true once it is local, false if not (the reader fetches it as
   * it would have); never rejects. Absent: every key is local. `ahead`: fetched well ahead of
   * need (a whole generation's early units): such fetches wait for one another and run in the
   * order asked, a few at a time; the others do not wait behind them.
   */
  warm?(key: string, opts?: { ahead?: boolean }): Promise<boolean>
  /**
   * Ends the whole fetches under way and queued (their warm() resolves false, their readers go
   * on with ranged reads): a restore that stops (interrupted, failed) must not wait for them.
   */
  stopFetching?(): void
}

/** The synchronous face: the same blobs, the same contract, no promises. */
export interface SyncStore {
  getSync(key: string, range?: ByteRange): Buffer
  openSync(key: string): SyncBlobReader
  putSync(key: string, data: Uint8Array | readonly Uint8Array[], opts?: PutOptions): void
  writeStagedSync(s: Staged, data: readonly Uint8Array[]): number
  hasSync(key: string): boolean
  statSync(key: string): BlobStat
  listSync(prefix: string): string[]
  removeSync(key: string, opts?: { recursive?: boolean }): void
  flushSync(prefix: string): void
}

/** Operations a FaultRule can name. */
export type StoreOp = 'get' | 'open' | 'read' | 'put' | 'stage' | 'writeStaged' | 'commitStaged' | 'has' | 'stat' | 'list' | 'remove'

/** One kind of fault FaultyStore injects; see store/faulty.ts. */
export interface FaultRule {
  /** Glob over keys: `*` within a segment, `**` across segments, `?` one character. Default: every key. */
  keys?: string
  /** Operations it applies to (default: every operation the fault makes sense for). */
  ops?: StoreOp[]
  /** 'unacked': the write lands, then fails with EIO (a lost acknowledgement: a failed directory fsync after the rename, an S3 PUT that timed out after it landed). */
  /** 'kill': the process dies (SIGKILL) at the call, before it runs: a crash at that point (the CLI's crash tests). */
  fault: 'EIO' | 'ENOSPC' | 'EDQUOT' | 'ENOENT' | 'short' | 'flip' | 'latency' | 'torn' | 'unacked' | 'kill'
  /** Chance per matching call (default 1), drawn from the store's seeded PRNG. */
  probability?: number
  /** Skip the first `after` matching calls. */
  after?: number
  /** Inject at most `times` times. */
  times?: number
  /** 'latency': ms, or a [min, max] range drawn from the PRNG. */
  latencyMs?: number | [number, number]
  /** 'flip': bytes XORed with 0xff at seeded positions of what a read returns (default 1). */
  flipBytes?: number
  /** 'short': the blob looks truncated at this many bytes (stat, open, reads past it: TRUNCATED). */
  shortBytes?: number
}

/** Where a repository lives in S3: `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]` (store/s3.ts). */
export interface S3Location {
  /** http://host:port or https://host[:port] */
  endpoint: string
  bucket: string
  /** '' or key segments, without a trailing '/' */
  prefix: string
  region?: string
}

/** Tunables of an S3 store (store/s3.ts has the defaults). */
export interface S3Options {
  /** Puts of more bytes than this ('create', 'replace', staged) are multipart. Default 64 MiB. */
  multipartThreshold?: number
  /** Part size of multipart uploads (S3's minimum is 5 MiB). Default 16 MiB. */
  partSize?: number
  /** Attempts per request (network errors, timeouts, 5xx, throttling). Default 6. */
  maxAttempts?: number
  /** Connection timeout, ms. Default 5,000. */
  connectTimeoutMs?: number
  /** A request with no socket activity for this long fails (and is retried). Default 30,000. */
  requestTimeoutMs?: number
  /** Local directory of staged writes. Default $BFS_S3_SPOOL or <tmpdir>/bfs-s3-spool-<uid>; one sub-directory per location. */
  spoolDir?: string
}

export type StoreDescription =
  | { kind: 'disk'; root: string }
  | { kind: 'mem'; blobs: Record<string, SharedArrayBuffer> }
  | { kind: 'faulty'; seed: number; rules: FaultRule[]; exposeFd?: boolean; inner: StoreDescription }
  /** A tiered store in another thread: its disk tier, and its buffer cache read by key (no catalog: blobs on tape and not cached are not found). */
  | { kind: 'tiered'; hot: StoreDescription; cacheDir: string }
  /** An S3 store: its location and options (credentials are found again from the environment). */
  | { kind: 's3'; location: S3Location; options: S3Options }
  /** An S3 store with its local read cache (store/objcache.ts): in another thread, a writer of entries, not their owner. */
  | { kind: 's3cached'; s3: { kind: 's3'; location: S3Location; options: S3Options }; cacheDir: string }

const SEGMENT_RE = /^[A-Za-z0-9._-]+$/
/** Temporary and staged names a store writes next to a key; no key may look like one. */
export const TEMP_MARK = '.tmp-'

/**
 * Throws TypeError unless `key` is '/'-separated segments of [A-Za-z0-9._-], none empty,
 * '.' or '..', and none containing TEMP_MARK. With `prefix`, '' (the top) is allowed too.
 */
export function checkKey(key: string, prefix = false): void {
  if (typeof key !== 'string') throw new TypeError(`store key must be a string, got ${typeof key}`)
  if (prefix && key === '') return
  const segs = key.split('/')
  for (const s of segs) {
    if (!SEGMENT_RE.test(s) || s === '.' || s === '..' || s.includes(TEMP_MARK)) throw new TypeError(`invalid store key ${JSON.stringify(key)}`)
  }
}

/** Throws TypeError unless `r` is a range of non-negative integers (it does not know the size). */
export function checkRange(r: ByteRange): void {
  if (!Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 || r.length < 0) {
    throw new TypeError(`invalid byte range ${JSON.stringify(r)}`)
  }
}

/** Checks `range` against a blob of `sizeBytes`: TRUNCATED if it ends past the end. */
export function checkInBlob(key: string, where: string, r: ByteRange, sizeBytes: number): void {
  checkRange(r)
  if (r.offset + r.length > sizeBytes) {
    throw new StoreError('TRUNCATED', key, `${where}: range ${r.offset}+${r.length} is past the end (${sizeBytes} bytes)`)
  }
}

/** The parts of put/writeStaged data as an array. */
export function partsOf(data: Uint8Array | readonly Uint8Array[]): readonly Uint8Array[] {
  return data instanceof Uint8Array ? [data] : data
}

/** The store's sync face, or StoreError ENOSYNC. */
/** get() for a store that reads through open(): the blob opened, `range` (default: all of it) read, closed. */
export async function getByOpen(store: Pick<Store, 'open'>, key: string, range?: ByteRange): Promise<Buffer> {
  const b = await store.open(key)
  try {
    return await b.read(range ?? { offset: 0, length: b.sizeBytes })
  } finally {
    await b.close()
  }
}

export function syncOf(store: Store, key = ''): SyncStore {
  if (!store.sync) throw new StoreError('ENOSYNC', key, `${store.where(key)}: this store cannot be read synchronously`)
  return store.sync
}
