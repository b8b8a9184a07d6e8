import { LRUCache } from 'lru-cache'
import { pieceIdOf, ZERO_ID_KEY } from '../codec/hash.js'
import { decompressFrame, decompressPiece, FrameDecompressor, rethrowUnavailable } from '../codec/zstd.js'
import { FormatError } from '../format/errors.js'
import { type PieceRef, MAX_PIECE_RAW_BYTES, PACK_HEADER_BYTES, PIECE_KIND_NAMES, PieceKind, checkPieceId, comparePieceRefs, pieceKind } from '../format/v2/common.js'
import { type DirDelta, type DirIndex, type Entry2, applyDirDelta, decodeDir, decodeDirDelta, decodeDirIndex } from '../format/v2/dir.js'
import { keys2 } from '../format/v2/layout.js'
import { PACK_FLAG_ENCRYPTED, decodePackHeader } from '../format/v2/pack.js'
import { type ObjectKey, NONCE_TAG, open } from '../crypto/aead.js'
import { aad } from '../crypto/aad.js'
import { type RepoKeys, objectKey } from '../crypto/keys.js'
import { type IdIndex, type IdPage, decodeIdIndex, decodeIdPage } from '../format/v2/idtable.js'
import { type MapInner, type MapLeaf, decodeMapInner, decodeMapLeaf } from '../format/v2/map.js'
import { type BlobReader, type Store, StoreError, type SyncBlobReader } from '../store/store.js'

/**
 * Whether `err` is a failure to read a stored piece (a FormatError or a StoreError): what a
 * writer treats as "the previous generation's piece is unreadable" (format.md §2.20.10: new
 * generations never depend on damage), as opposed to a bug.
 */
export function isPieceFailure(err: unknown): err is FormatError | StoreError {
  return err instanceof FormatError || err instanceof StoreError
}

/** Keeps the first few messages of failures a writer worked around (for its warning). */
export class Workarounds {
  count = 0
  readonly messages: string[] = []
  note(err: Error): void {
    this.count++
    if (this.messages.length < 20) this.messages.push(err.message)
  }
}

/** Default bytes of decoded pieces kept (a reader's cache; mounts and backups pass their own). */
export const DEFAULT_PIECE_CACHE_BYTES = 64 << 20

/**
 * A piece as its users want it: the decoded structure (a DIRDELTA already applied to its base,
 * so a directory page is always a sorted entry list), with its raw length (the delta rule of
 * §2.13.3 compares payload sizes).
 */
export type DecodedPiece =
  | { kind: typeof PieceKind.Dir; rawLen: number; entries: Entry2[] }
  | { kind: typeof PieceKind.DirDelta; rawLen: number; delta: DirDelta; entries: Entry2[] }
  | { kind: typeof PieceKind.DirIndex; rawLen: number; index: DirIndex }
  | { kind: typeof PieceKind.MapLeaf; rawLen: number; leaf: MapLeaf }
  | { kind: typeof PieceKind.MapInner; rawLen: number; inner: MapInner }
  | { kind: typeof PieceKind.IdPage; rawLen: number; page: IdPage }
  | { kind: typeof PieceKind.IdIndex; rawLen: number; index: IdIndex }
  | { kind: typeof PieceKind.BiLog | typeof PieceKind.BiList; rawLen: number; payload: Buffer }

export interface PieceReaderOptions {
  /** The BLAKE3 key of piece ids (32 zero bytes for an unencrypted repository). */
  idKey?: Buffer
  /**
   * An encrypted repository's keys (§2.11, §2.22): each pack's header is read once for its
   * salt (its object key cached), each piece authenticated and decrypted before zstd, ids
   * keyed with kId (idKey is then ignored); a plain pack is refused as damage.
   */
  keys?: RepoKeys
  /** Bytes of decoded pieces to keep (estimated; default 64 MiB, at least 1 MiB). */
  cacheBytes?: number
  /**
   * Keep up to this many packs open between reads (a mount: one open, fstat and close fewer
   * per piece; packs are immutable). 0 (default): open and close each pack per read.
   */
  openPacks?: number
  /**
   * Read pieces with synchronous preads when the store can (a local store: `store.sync`),
   * the packs kept open (up to `openPacks`, default 16). For a backup, whose walk waits for
   * each previous directory piece anyway: a threadpool round trip per piece (two on this
   * 2-core machine's loaded event loop: the pread and its completion) cost more than the read
   * of a page-cached pack (native-notes/v2-backup.md, "Incremental on the Linux tree"). Not
   * for a mount, whose event loop must not block on a slow disk.
   */
  syncReads?: boolean
}

/** An open pack shared by reads: closed once evicted and no read holds it. */
interface OpenPack {
  blob: Promise<BlobReader>
  users: number
  evicted: boolean
}

export interface PieceReaderStats {
  /** piece() calls. */
  requests: number
  /** Served from the cache. */
  hits: number
  /** Served by a load another caller had started (single flight). */
  joined: number
  /** Pieces fetched from the store (one ranged get each). */
  loads: number
  /** Stored bytes fetched. */
  bytesRead: number
}

/**
 * Rough bytes of a decoded entry, JavaScript heap and buffers (measured: a file entry with a
 * 14-byte name and a one-extent inline map takes ~500 B of heap and ~150 B of buffers).
 */
function entryHeapBytes(e: Entry2): number {
  let n = 580 + e.name.length
  if (e.target) n += e.target.length + 80
  if (e.map?.kind === 'inline') n += e.map.extents.length * 72
  else if (e.map) n += 160
  if (e.dir) n += 160
  if (e.xattrs) for (const [k, v] of e.xattrs) n += k.length + v.length + 160
  return n
}

function heapBytes(p: DecodedPiece): number {
  switch (p.kind) {
    case PieceKind.Dir:
      return p.entries.reduce((s, e) => s + entryHeapBytes(e), 200)
    case PieceKind.DirDelta:
      // the applied list shares the base's entry objects; count the array and the puts
      return p.entries.length * 8 + p.delta.ops.reduce((s, o) => s + (o.op === 'put' ? entryHeapBytes(o.entry) : 100 + o.name.length), 300)
    case PieceKind.DirIndex:
      return p.index.children.reduce((s, c) => s + 260 + c.firstName.length, 200)
    case PieceKind.MapLeaf:
      return 200 + p.leaf.extents.length * 72
    case PieceKind.MapInner:
      return 200 + p.inner.children.length * 220
    case PieceKind.IdPage:
      return 200 + p.page.rows.length * 200
    case PieceKind.IdIndex:
      return 200 + p.index.children.length * 240
    default:
      return 200 + p.payload.length
  }
}

/**
 * The one reader of pieces (format.md §2.4 PieceRef, §2.11, §2.12): one ranged get of
 * `[offset, offset + storedLen)` of `gens/<run>/pack-<pack>` per piece, zstd-decompressed (a
 * raw payload of at most 1 MiB, one whole frame), its keyed BLAKE3 checked against the ref's
 * id, decoded by kind with every check of its decoder; a DIRDELTA is applied to its base,
 * which must be a DIR (R3) earlier in write order (R1). Decoded pieces stay in a byte-bounded
 * LRU keyed by id, and concurrent requests for one piece share a single load.
 *
 * Failures: stored bytes that are not the piece the ref promises (a flipped byte, a pack that
 * ends before the piece, a frame that does not decompress, an id mismatch, a decoder's check)
 * are a FormatError whose message names the pack file and the offset; a store failure (a
 * missing pack, EIO) is the StoreError, which names the key. Nothing wrong is ever returned,
 * and failures are not cached (a retry after a transient EIO reads again).
 */
/** Bytes of a pack read at once by synchronous reads (syncReads), and how many such blocks are kept. */
const SYNC_BLOCK = 256 << 10
const SYNC_BLOCKS = 16

function closePack(p: OpenPack): void {
  p.blob.then((b) => b.close()).catch(() => {})
}

export class PieceReader {
  readonly stats: PieceReaderStats = { requests: 0, hits: 0, joined: 0, loads: 0, bytesRead: 0 }
  private readonly idKey: Buffer
  private readonly keys: RepoKeys | null
  /** Encrypted: the object key of each pack read (`run/pack`). */
  private readonly packKeys = new LRUCache<string, ObjectKey>({ max: 4096 })
  private readonly cache: LRUCache<string, DecodedPiece>
  private readonly loading = new Map<string, Promise<DecodedPiece>>()
  private closed = false
  /** Open packs (openPacks > 0), least recently used first. */
  private readonly packs: LRUCache<string, OpenPack> | null
  /** Raw DIR payloads for the native listing (dirPayload): ~40 bytes an entry, against ~600 decoded. */
  private readonly raws: LRUCache<string, Buffer>
  private readonly dctx = new FrameDecompressor()
  private readonly packWhere = new Map<string, string>()
  /** Pages pieceSync(…, visitOnce) read, until unpin(): the backup's open path only. */
  private readonly pinned = new Map<string, DecodedPiece>()
  /** Aligned blocks of packs read by synchronous reads (syncReads): `pack key@offset` → bytes. */
  private readonly syncBlocks = new LRUCache<string, Buffer>({ max: SYNC_BLOCKS })
  /** Packs kept open for synchronous reads (syncReads), least recently used first. */
  private readonly syncPacks: LRUCache<string, SyncBlobReader> | null

  constructor(
    readonly store: Store,
    opts: PieceReaderOptions = {},
  ) {
    this.keys = opts.keys ?? null
    this.idKey = this.keys ? this.keys.kId : (opts.idKey ?? ZERO_ID_KEY)
    this.cache = new LRUCache<string, DecodedPiece>({
      maxSize: Math.max(opts.cacheBytes ?? DEFAULT_PIECE_CACHE_BYTES, 1 << 20),
      sizeCalculation: (p) => heapBytes(p),
    })
    this.packs = opts.openPacks
      ? new LRUCache<string, OpenPack>({
          max: opts.openPacks,
          dispose: (p) => {
            p.evicted = true
            if (p.users === 0) closePack(p)
          },
        })
      : null
    this.syncPacks = opts.syncReads && store.sync
      ? new LRUCache<string, SyncBlobReader>({
          max: opts.openPacks || 16,
          dispose: (b) => {
            try {
              b.closeSync()
            } catch {
              // (a close failure loses nothing: the pack was only read)
            }
          },
        })
      : null
    this.raws = new LRUCache<string, Buffer>({
      maxSize: Math.max((opts.cacheBytes ?? DEFAULT_PIECE_CACHE_BYTES) >> 1, 1 << 20),
      sizeCalculation: (b) => b.length + 64,
    })
  }

  /**
   * The checked raw payload of `ref` when it is a DIR piece (for a listing in C: vfs/gen2.ts),
   * or null when it is another kind (then loaded, decoded and cached as piece() does). Raw
   * payloads have their own byte-bounded cache, half the decoded one's bound.
   */
  async dirPayload(ref: PieceRef): Promise<Buffer | null> {
    this.stats.requests++
    const key = ref.id.toString('hex')
    const hit = this.raws.get(key)
    if (hit) {
      this.stats.hits++
      return hit[0] === PieceKind.Dir ? hit : null // (rawSync keeps other kinds too: piece() decodes those from here)
    }
    if (this.cache.has(key) || this.loading.has(key)) return null // decoded already: not a DIR, or listed in JavaScript before
    const raw = await this.payload(ref)
    if (raw[0] !== PieceKind.Dir) {
      // decode what was read (the caller's piece() joins it) rather than read it again
      if (!this.cache.has(key) && !this.loading.has(key)) {
        const p = this.load(ref, raw).finally(() => this.loading.delete(key))
        p.catch(() => {}) // the caller's piece() reports it
        this.loading.set(key, p)
      }
      return null
    }
    this.raws.set(key, raw)
    return raw
  }

  /**
   * The checked raw payload of any piece by synchronous reads (canReadSync only), kept in the
   * raw payloads' cache: find's native scan of DIR and DIRDELTA pages (cli/find.ts).
   */
  rawSync(ref: PieceRef): Buffer {
    this.stats.requests++
    const key = ref.id.toString('hex')
    const hit = this.raws.get(key)
    if (hit) {
      this.stats.hits++
      return hit
    }
    // decompressed and checked in one native call; anything wrong is read again by payloadSync, whose checks name it
    const stored = this.readSync(keys2.pack(ref.run, ref.pack), ref.offset, ref.storedLen)
    let raw = stored.length === ref.storedLen && !this.keys ? decompressPiece(stored, MAX_PIECE_RAW_BYTES, this.idKey, ref.id) : null
    if (raw) {
      this.stats.loads++
      this.stats.bytesRead += stored.length
    } else raw = this.payloadSync(ref, this.where(ref))
    this.raws.set(key, raw)
    return raw
  }

  /** Whether piece ids are unkeyed (32 zero bytes: an unencrypted repository). */
  get plainIds(): boolean {
    return this.idKey.equals(ZERO_ID_KEY)
  }

  /** Estimated bytes of decoded pieces held. */
  get cachedBytes(): number {
    return this.cache.calculatedSize
  }

  /** Where a piece is, for messages: the pack's place and the offset. */
  where(ref: PieceRef): string {
    // (every load names its place for the messages it might throw: the pack's place is
    // remembered, path.join per piece showed in the backup's profile)
    const k = `${ref.run}/${ref.pack}`
    let w = this.packWhere.get(k)
    if (w === undefined) {
      w = this.store.where(keys2.pack(ref.run, ref.pack))
      if (this.packWhere.size >= 4096) this.packWhere.clear()
      this.packWhere.set(k, w)
    }
    return `${w} at offset ${ref.offset}`
  }

  /** The raw payload of a piece, checked (not cached: verify and tests use it). */
  async payload(ref: PieceRef): Promise<Buffer> {
    const what = this.where(ref)
    let stored: Buffer
    try {
      stored = await this.read(keys2.pack(ref.run, ref.pack), ref.offset, ref.storedLen)
    } catch (err) {
      throw this.readFailure(err, ref, what)
    }
    return this.checked(ref, stored, what, this.keys ? await this.packKey(ref) : null)
  }

  /** An encrypted pack's object key, from its header (read once per pack; §2.11). */
  private async packKey(ref: PieceRef): Promise<ObjectKey> {
    const k = `${ref.run}/${ref.pack}`
    const hit = this.packKeys.get(k)
    if (hit) return hit
    let head: Buffer
    try {
      head = await this.read(keys2.pack(ref.run, ref.pack), 0, PACK_HEADER_BYTES)
    } catch (err) {
      throw this.readFailure(err, ref, this.where(ref))
    }
    return this.packKeyOf(ref, head)
  }

  private packKeySync(ref: PieceRef): ObjectKey {
    const hit = this.packKeys.get(`${ref.run}/${ref.pack}`)
    if (hit) return hit
    let head: Buffer
    try {
      head = this.readSync(keys2.pack(ref.run, ref.pack), 0, PACK_HEADER_BYTES)
    } catch (err) {
      throw this.readFailure(err, ref, this.where(ref))
    }
    return this.packKeyOf(ref, head)
  }

  private packKeyOf(ref: PieceRef, head: Buffer): ObjectKey {
    const what = this.store.where(keys2.pack(ref.run, ref.pack))
    const h = decodePackHeader(head, what, { run: ref.run, pack: ref.pack })
    if (!(h.flags & PACK_FLAG_ENCRYPTED)) throw new FormatError('BAD_VALUE', `${what}: not encrypted, in an encrypted repository (refused: a plaintext object here is tampering or a downgrade)`)
    const key = objectKey(this.keys!, h.salt, 'pack')
    this.packKeys.set(`${ref.run}/${ref.pack}`, key)
    return key
  }

  /** payload() by synchronous reads (syncReads only: see `canReadSync`). */
  private payloadSync(ref: PieceRef, what: string): Buffer {
    let stored: Buffer
    try {
      stored = this.readSync(keys2.pack(ref.run, ref.pack), ref.offset, ref.storedLen)
    } catch (err) {
      throw this.readFailure(err, ref, what)
    }
    return this.checked(ref, stored, what, this.keys ? this.packKeySync(ref) : null)
  }

  private readFailure(err: unknown, ref: PieceRef, what: string): unknown {
    // the pack ends before the piece: damage (a truncated pack, or a ref that is wrong)
    if (err instanceof StoreError && err.code === 'TRUNCATED') return new FormatError('TRUNCATED', `${what}: the pack ends before the ${ref.storedLen}-byte piece (truncated or corrupt)`)
    return err
  }

  /** The stored bytes of `ref` decompressed and checked against its id. */
  private checked(ref: PieceRef, stored: Buffer, what: string, key: ObjectKey | null): Buffer {
    this.stats.loads++
    this.stats.bytesRead += stored.length
    if (stored.length !== ref.storedLen) throw new FormatError('TRUNCATED', `${what}: read ${stored.length} bytes of a ${ref.storedLen}-byte piece`)
    if (key) stored = open(key, NONCE_TAG.packPiece, ref.offset, aad.packPiece(ref.run, ref.pack, ref.offset, ref.storedLen), stored, what)
    let raw: Buffer
    try {
      raw = decompressFrame(stored, MAX_PIECE_RAW_BYTES, this.dctx)
    } catch (err) {
      rethrowUnavailable(err)
      throw new FormatError('BAD_CHECKSUM', `${what}: the piece's ${ref.storedLen} stored bytes do not decompress (${(err as Error).message}): the pack is corrupt`)
    }
    checkPieceId(raw, ref, (b) => pieceIdOf(b, this.idKey), what)
    return raw
  }

  /** Closes the packs kept open (those a read holds, once it is done). */
  close(): void {
    this.closed = true
    this.packs?.clear()
    this.syncPacks?.clear()
    this.syncBlocks.clear()
  }

  /** Bytes of a pack by synchronous reads (syncReads), the pack kept open. */
  private readSync(key: string, offset: number, length: number): Buffer {
    let b = this.syncPacks!.get(key)
    if (!b) {
      b = this.store.sync!.openSync(key)
      this.syncPacks!.set(key, b)
    }
    // a piece within one aligned SYNC_BLOCK of the pack: that block is read whole and kept
    // (the next backup visits the previous generation's pieces near their write order: one
    // pread per block instead of one per piece)
    const start = offset - (offset % SYNC_BLOCK)
    if (offset + length <= start + SYNC_BLOCK && offset + length <= b.sizeBytes) {
      const bk = `${key}@${start}`
      let blk = this.syncBlocks.get(bk)
      if (!blk) {
        blk = b.readSync({ offset: start, length: Math.min(SYNC_BLOCK, b.sizeBytes - start) })
        this.syncBlocks.set(bk, blk)
      }
      return blk.subarray(offset - start, offset - start + length)
    }
    return b.readSync({ offset, length })
  }

  /** Bytes of a pack, through an open pack when packs are kept open. */
  private async read(key: string, offset: number, length: number): Promise<Buffer> {
    if (this.syncPacks && !this.closed) return this.readSync(key, offset, length)
    if (!this.packs || this.closed) return this.store.get(key, { offset, length }) // (closed: nothing kept open after)
    let p = this.packs.get(key)
    if (!p) {
      p = { blob: this.store.open(key), users: 0, evicted: false }
      const mine = p
      p.blob.catch(() => {
        if (this.packs!.peek(key) === mine) this.packs!.delete(key) // a failed open is not kept
      })
      this.packs.set(key, p)
    }
    p.users++
    try {
      return await (await p.blob).read({ offset, length })
    } finally {
      if (--p.users === 0 && p.evicted) closePack(p)
    }
  }

  /** A decoded piece (cached, single flight). */
  piece(ref: PieceRef): Promise<DecodedPiece> {
    this.stats.requests++
    const key = ref.id.toString('hex')
    const hit = this.cache.get(key) ?? (this.pinned.size ? this.pinned.get(key) : undefined)
    if (hit) {
      this.stats.hits++
      return Promise.resolve(hit)
    }
    const inflight = this.loading.get(key)
    if (inflight) {
      this.stats.joined++
      return inflight
    }
    const p = this.load(ref).finally(() => this.loading.delete(key))
    this.loading.set(key, p)
    return p
  }

  /** A decoded piece that must be one of `kinds` (FormatError naming the place otherwise). */
  async pieceOf<K extends DecodedPiece['kind']>(ref: PieceRef, kinds: readonly K[], role: string): Promise<Extract<DecodedPiece, { kind: K }>> {
    const p = await this.piece(ref)
    if (!(kinds as readonly number[]).includes(p.kind)) {
      throw new FormatError('BAD_VALUE', `${this.where(ref)}: ${role} is a ${PIECE_KIND_NAMES[p.kind]} piece, expected ${kinds.map((k) => PIECE_KIND_NAMES[k]).join(' or ')}`)
    }
    return p as Extract<DecodedPiece, { kind: K }>
  }

  /** Whether pieceSync() can be used (syncReads on a store that reads synchronously). */
  get canReadSync(): boolean {
    return this.syncPacks !== null && !this.closed
  }

  /**
   * piece() without a promise (canReadSync only): a piece another caller is loading
   * asynchronously is loaded again here (both results are equal; the cache keeps one).
   * `visitOnce`: a DIR or DIRDELTA page is not cached but pinned until unpin() (the
   * backup's merge reads each once; its caller unpins it when the directory is written).
   */
  pieceSync(ref: PieceRef, visitOnce = false): DecodedPiece {
    this.stats.requests++
    const key = ref.id.toString('hex')
    const hit = this.cache.get(key) ?? this.pinned.get(key)
    if (hit) {
      this.stats.hits++
      return hit
    }
    const what = this.where(ref)
    const raw = this.raws.get(key) ?? this.payloadSync(ref, what)
    const kind = pieceKind(raw, what)
    const d = kind === PieceKind.DirDelta ? this.applyDelta(ref, raw, what, (b) => this.pieceSync(b)) : this.decode(kind, raw, what)
    // (a page the backup's merge reads is visited once: in the byte-bounded cache its entries
    // would live on into V8's old space for nothing. It is pinned until unpin() instead —
    // the directory's writer compares against it if the directory changed, and finds its
    // unchanged entries to be the same objects. A DIRDELTA's base, index nodes, maps: cached.)
    if (visitOnce && (kind === PieceKind.Dir || kind === PieceKind.DirDelta)) this.pinned.set(key, d)
    else this.cache.set(key, d)
    return d
  }

  /** Drops a page pieceSync(…, visitOnce) pinned (nothing when it is not pinned). */
  unpin(ref: PieceRef): void {
    if (this.pinned.size) this.pinned.delete(ref.id.toString('hex'))
  }

  /** pieceOf() without a promise (canReadSync only). */
  pieceOfSync<K extends DecodedPiece['kind']>(ref: PieceRef, kinds: readonly K[], role: string, visitOnce = false): Extract<DecodedPiece, { kind: K }> {
    const p = this.pieceSync(ref, visitOnce)
    if (!(kinds as readonly number[]).includes(p.kind)) {
      throw new FormatError('BAD_VALUE', `${this.where(ref)}: ${role} is a ${PIECE_KIND_NAMES[p.kind]} piece, expected ${kinds.map((k) => PIECE_KIND_NAMES[k]).join(' or ')}`)
    }
    return p as Extract<DecodedPiece, { kind: K }>
  }

  private async load(ref: PieceRef, read?: Buffer): Promise<DecodedPiece> {
    // a DIR listed in C has its raw payload cached: decode that rather than read it again
    const raw = read ?? this.raws.get(ref.id.toString('hex')) ?? (await this.payload(ref))
    const what = this.where(ref)
    const kind = pieceKind(raw, what)
    let d: DecodedPiece
    if (kind === PieceKind.DirDelta) {
      const delta = decodeDirDelta(raw, what)
      if (comparePieceRefs(delta.base, ref) >= 0) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is not written before it (R1)`)
      const base = await this.piece(delta.base)
      d = this.deltaOn(raw, what, delta, base)
    } else d = this.decode(kind, raw, what)
    this.cache.set(ref.id.toString('hex'), d)
    return d
  }

  /** A DIRDELTA decoded and applied to its base, got by `baseOf` (synchronously). */
  private applyDelta(ref: PieceRef, raw: Buffer, what: string, baseOf: (r: PieceRef) => DecodedPiece): DecodedPiece {
    const delta = decodeDirDelta(raw, what)
    if (comparePieceRefs(delta.base, ref) >= 0) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is not written before it (R1)`)
    return this.deltaOn(raw, what, delta, baseOf(delta.base))
  }

  private deltaOn(raw: Buffer, what: string, delta: DirDelta, base: DecodedPiece): DecodedPiece {
    if (base.kind !== PieceKind.Dir) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is a ${PIECE_KIND_NAMES[base.kind]} piece, not a DIR (deltas have depth 1, R3)`)
    return { kind: PieceKind.DirDelta, rawLen: raw.length, delta, entries: applyDirDelta(base.entries, delta, what) }
  }

  /** A raw payload of any kind but DIRDELTA, decoded with every check of its decoder. */
  private decode(kind: PieceKind, raw: Buffer, what: string): DecodedPiece {
    switch (kind) {
      case PieceKind.Dir:
        return { kind, rawLen: raw.length, entries: decodeDir(raw, what) }
      case PieceKind.DirIndex:
        return { kind, rawLen: raw.length, index: decodeDirIndex(raw, what) }
      case PieceKind.MapLeaf:
        return { kind, rawLen: raw.length, leaf: decodeMapLeaf(raw, what) }
      case PieceKind.MapInner:
        return { kind, rawLen: raw.length, inner: decodeMapInner(raw, what) }
      case PieceKind.IdPage:
        return { kind, rawLen: raw.length, page: decodeIdPage(raw, what) }
      case PieceKind.IdIndex:
        return { kind, rawLen: raw.length, index: decodeIdIndex(raw, what) }
      default:
        return { kind, rawLen: raw.length, payload: raw } as DecodedPiece
    }
  }
}
