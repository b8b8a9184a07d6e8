import { LRUCache } from 'lru-cache'
import { pieceIdOf, ZERO_ID_KEY } from '../codec/hash.js'
import { decompressFrame, FrameDecompressor } from '../codec/zstd.js'
import { FormatError } from '../format/errors.js'
import { type PieceRef, MAX_PIECE_RAW_BYTES, PIECE_KIND_NAMES, PieceKind, checkPieceId, comparePieceRefs, pieceKind } from '../format/v2/common.js'
import { type DirDelta, type DirIndex, type Entry2, applyDirDelta, decodeDir, decodeDirDelta, decodeDirIndex } from '../format/v2/dir.js'
import { keys2 } from '../format/v2/layout.js'
import { type IdIndex, type IdPage, decodeIdIndex, decodeIdPage } from '../format/v2/idtable.js'
import { type MapInner, type MapLeaf, decodeMapInner, decodeMapLeaf } from '../format/v2/map.js'
import { type BlobReader, type Store, StoreError } from '../store/store.js'

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
  /** Bytes of decoded pieces to keep (estimated; default 64 MiB, at least 1 MiB). */
  cacheBytes?: number
  /**
   * Keep up to this many packs open between reads (a mount: one open, fstat and close fewer
   * per piece; packs are immutable). 0 (default): open and close each pack per read.
   */
  openPacks?: number
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
function closePack(p: OpenPack): void {
  p.blob.then((b) => b.close()).catch(() => {})
}

export class PieceReader {
  readonly stats: PieceReaderStats = { requests: 0, hits: 0, joined: 0, loads: 0, bytesRead: 0 }
  private readonly idKey: Buffer
  private readonly cache: LRUCache<string, DecodedPiece>
  private readonly loading = new Map<string, Promise<DecodedPiece>>()
  private closed = false
  /** Open packs (openPacks > 0), least recently used first. */
  private readonly packs: LRUCache<string, OpenPack> | null
  /** Raw DIR payloads for the native listing (dirPayload): ~40 bytes an entry, against ~600 decoded. */
  private readonly raws: LRUCache<string, Buffer>
  private readonly dctx = new FrameDecompressor()

  constructor(
    readonly store: Store,
    opts: PieceReaderOptions = {},
  ) {
    this.idKey = opts.idKey ?? ZERO_ID_KEY
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
      return hit
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
    return `${this.store.where(keys2.pack(ref.run, ref.pack))} at offset ${ref.offset}`
  }

  /** The raw payload of a piece, checked (not cached: verify and tests use it). */
  async payload(ref: PieceRef): Promise<Buffer> {
    const what = this.where(ref)
    let stored: Buffer
    try {
      stored = await this.read(keys2.pack(ref.run, ref.pack), ref.offset, ref.storedLen)
    } catch (err) {
      // the pack ends before the piece: damage (a truncated pack, or a ref that is wrong)
      if (err instanceof StoreError && err.code === 'TRUNCATED') throw new FormatError('TRUNCATED', `${what}: the pack ends before the ${ref.storedLen}-byte piece (truncated or corrupt)`)
      throw err
    }
    this.stats.loads++
    this.stats.bytesRead += stored.length
    if (stored.length !== ref.storedLen) throw new FormatError('TRUNCATED', `${what}: read ${stored.length} bytes of a ${ref.storedLen}-byte piece`)
    let raw: Buffer
    try {
      raw = decompressFrame(stored, MAX_PIECE_RAW_BYTES, this.dctx)
    } catch (err) {
      throw new FormatError('BAD_CHECKSUM', `${what}: the piece's ${ref.storedLen} stored bytes do not decompress (${(err as Error).message}): the pack is corrupt`)
    }
    checkPieceId(raw, ref, (b) => pieceIdOf(b, this.idKey), what)
    return raw
  }

  /** Closes the packs kept open (those a read holds, once it is done). */
  close(): void {
    this.closed = true
    this.packs?.clear()
  }

  /** Bytes of a pack, through an open pack when packs are kept open. */
  private async read(key: string, offset: number, length: number): Promise<Buffer> {
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
    const hit = this.cache.get(key)
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

  private async load(ref: PieceRef, read?: Buffer): Promise<DecodedPiece> {
    // a DIR listed in C has its raw payload cached: decode that rather than read it again
    const raw = read ?? this.raws.get(ref.id.toString('hex')) ?? (await this.payload(ref))
    const what = this.where(ref)
    const kind = pieceKind(raw, what)
    let d: DecodedPiece
    switch (kind) {
      case PieceKind.Dir:
        d = { kind, rawLen: raw.length, entries: decodeDir(raw, what) }
        break
      case PieceKind.DirDelta: {
        const delta = decodeDirDelta(raw, what)
        if (comparePieceRefs(delta.base, ref) >= 0) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is not written before it (R1)`)
        const base = await this.piece(delta.base)
        if (base.kind !== PieceKind.Dir) throw new FormatError('BAD_VALUE', `${what}: DIRDELTA's base is a ${PIECE_KIND_NAMES[base.kind]} piece, not a DIR (deltas have depth 1, R3)`)
        d = { kind, rawLen: raw.length, delta, entries: applyDirDelta(base.entries, delta, what) }
        break
      }
      case PieceKind.DirIndex:
        d = { kind, rawLen: raw.length, index: decodeDirIndex(raw, what) }
        break
      case PieceKind.MapLeaf:
        d = { kind, rawLen: raw.length, leaf: decodeMapLeaf(raw, what) }
        break
      case PieceKind.MapInner:
        d = { kind, rawLen: raw.length, inner: decodeMapInner(raw, what) }
        break
      case PieceKind.IdPage:
        d = { kind, rawLen: raw.length, page: decodeIdPage(raw, what) }
        break
      case PieceKind.IdIndex:
        d = { kind, rawLen: raw.length, index: decodeIdIndex(raw, what) }
        break
      default:
        d = { kind, rawLen: raw.length, payload: raw } as DecodedPiece
    }
    this.cache.set(ref.id.toString('hex'), d)
    return d
  }
}
