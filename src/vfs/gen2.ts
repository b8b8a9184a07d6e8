/**
 * The lazy tree a mount of a format 2 generation serves (issue 15 item 3): opening it reads
 * nothing but the manifest (whose root entry is inline), a directory's piece is read on its
 * first lookup or readdir, and decoded pieces live in one PieceReader's byte-bounded cache
 * (2 MiB by default, `--piece-cache`), so the mount's memory does not grow with the tree. Files are read
 * through the same BlockReader (and native read path) as format 1's mount.
 *
 * Unlike format 1's Vfs (tree.ts), whose catalog is in memory and answers synchronously, every
 * operation here may have to read a piece: the adapter calls the asynchronous entry points
 * (fuse/adapter.ts lazyOps). Inode numbers follow format.md §2.19: gen × 2^32 + 16 + ordBase
 * + ord, a `linked` entry taking its links row's ord (so hard links share it) and its
 * st_nlink from the row's nlinkInGen.
 */
import { FormatError } from '../format/errors.js'
import type { Extent as V1Extent } from '../format/maps.js'
import { E_LINKED, FileType, type Entry2 } from '../format/v2/dir.js'
import { TableKind, type LinkRow } from '../format/v2/idtable.js'
import type { ManifestV2 } from '../format/v2/records.js'
import { BlockReader, type AsyncBlockReader, type OpenFile } from '../blocks/reader.js'
import { IdTableReader } from '../pieces/idtables.js'
import { MapReader } from '../pieces/maps.js'
import { PieceReader, isPieceFailure } from '../pieces/reader.js'
import { TreeReader } from '../pieces/tree-reader.js'
import { StreamSource2 } from '../repo/v2/read2.js'
import type { Repo2 } from '../repo/v2/repo2.js'
import { dirListing } from '../codec/dirlist.js'
import { DEFAULT_TAPE_READAHEAD_UNITS, VfsError, type Attr, type NativeReads } from './tree.js'
import { RESIDENCY_XATTR, TapeReads, prefetchAtOpen, residencyOf, unitsOnTape, type InterruptibleRead, type TapeHandle, type TapeTier } from './tapereads.js'
import { TreeAhead2 } from './treeahead2.js'
import type { TreeAheadCounters } from './treeahead.js'
import { unitKeysOf } from '../repo/restore.js'
import { F_ATIME, F_BLKSIZE, F_BLOCKS, F_CTIME, F_FLAGS, F_GID, F_MODE, F_MTIME, F_NLINK, F_RDEV, F_SIZE, F_UID, STAT_FIELDS, STAT_NO_XATTRS, makedev, packAttr, packIno } from './statpack.js'

/**
 * Bytes of decoded pieces a mount keeps by default (estimated; the heap they and their
 * decoding churn take is ~3× that). 2 MiB holds the pages of a few 1,000-entry directories:
 * what `ls -l`, `find -ls` and `cp -a` revisit right after a readdir; a piece read again costs
 * one ranged read and its decoding. Measured on the 1M-file tree (`find MNT` over 1,001
 * directories, load 4-8): server RSS after it 16M 141 MiB, 8M 115, 4M 105, 2M 94 (with the
 * stat cache below), and less CPU the smaller the cache (7.8 s → 5.4 s: less to collect).
 */
export const MOUNT_PIECE_CACHE_BYTES = 2 << 20
/** Packs a mount keeps open between piece reads (each one fd; packs are immutable). */
export const MOUNT_OPEN_PACKS = 8

/**
 * Entries of the native stat cache of a format 2 mount (format 1's default is 262,144, ~190 B
 * each: 40 MB after a find over 1M files, for a cache whose hits are the lookups that follow
 * a readdir). 65,536 (~12 MB when full): `find | xargs cat` over the Linux tree (78,579 files)
 * missed 19,897 lookups with 16,384 (find lists directories ahead of cat, and each miss
 * costs a getattr, an open and a release on the event loop), none with 131,072.
 */
export const MOUNT_STAT_CACHE_ENTRIES = 65_536

/** Directory entries remembered by path (the way to a deep path is not looked up again each time); each may keep an 8 KiB Buffer pool slab alive (its name), so few. */
const DIR_MEMO = 1024

const GEN_INO = 2 ** 32
const SLASH = 0x2f

const TYPE_BITS: Record<number, number> = {
  [FileType.File]: 0o100000,
  [FileType.Dir]: 0o040000,
  [FileType.Symlink]: 0o120000,
  [FileType.CharDev]: 0o020000,
  [FileType.BlockDev]: 0o060000,
  [FileType.Fifo]: 0o010000,
  [FileType.Socket]: 0o140000,
}

export interface Vfs2Options {
  /** Bytes of decompressed frames to keep (default 16 MiB). */
  cacheBytes?: number
  /** Reads will mostly be served by the native path (attachNative): this process keeps 1 MiB of frames. */
  nativeReads?: boolean
  readaheadFrames?: number
  maxOpenUnits?: number
  /** Bytes of decoded pieces to keep (default MOUNT_PIECE_CACHE_BYTES). */
  pieceCacheBytes?: number
  /** List single-piece directories in C (default true; tests compare both ways). */
  nativeListing?: boolean
  /**
   * open answers once the unit of the file's first data is open (registered with the
   * native read path), so the first read is served natively (BlockReader.firstUnitOpen).
   * Only for units on local disk: a unit on tape would hold the open until its recall.
   */
  openWaitsForUnit?: boolean
  /**
   * The repository's tiered store when units are on tape (the block reader reads through it),
   * as format 1's VfsOptions.tape: `user.bfs.residency`, the prefetch at open, a close gives
   * up what only closed files' reads wait for (vfs/tapereads.ts).
   */
  tape?: TapeTier | null
  /** With a tape tier: the readahead over the tree, units at most (VfsOptions.tapeReadaheadUnits; vfs/treeahead2.ts). */
  tapeReadaheadUnits?: number
}

interface Handle extends TapeHandle {
  /** With a tape tier: the unit keys of its file (else empty). */
  keys: string[]
}

/**
 * What readdir answers, in the form the patched binding takes: `.`, `..`, then the children
 * in name order (latin1 strings: one char per byte), and their stats packed (vfs/statpack.ts:
 * STAT_FIELDS doubles each; slots 0 and 1, `.` and `..`, are left for the adapter to fill from
 * `self` and `parent`). A 1,000-entry directory then costs no Attr or stat object per entry.
 */
export interface Listing {
  /** Strings, or one Buffer of the names each ended by a NUL (the native listing). */
  names: string[] | Buffer
  stats: Float64Array
  self: Attr
  parent: Attr
}

/** A listing's arrays while it is built: `.` and `..` reserved. */
class ListingBuilder {
  readonly names: string[] = ['.', '..']
  stats = new Float64Array(STAT_FIELDS * 64)

  /** The offset of the next entry's stat (room made for it). */
  next(name: string): number {
    const o = this.names.length * STAT_FIELDS
    if (o + STAT_FIELDS > this.stats.length) {
      const grown = new Float64Array(this.stats.length * 2)
      grown.set(this.stats)
      this.stats = grown
    }
    this.names.push(name)
    return o
  }

  done(self: Attr, parent: Attr): Listing {
    return { names: this.names, stats: this.stats.subarray(0, this.names.length * STAT_FIELDS), self, parent }
  }
}

/** Open handles of a mount (shared by the generations of a whole-repository mount: FUSE names a handle by its number only). */
interface Handles {
  map: Map<number, Handle>
  next: number
  native: NativeReads | null
}

/** What the views of one mount share. */
export interface Vfs2Parts {
  pieces: PieceReader
  reader: BlockReader
  handles: Handles
  /** With a tape tier: it, and the reads a flush or the kernel's interrupt may give up. */
  tape: { tier: TapeTier; reads: TapeReads<Handle> } | null
}

export function vfs2Parts(repo: Repo2, opts: Vfs2Options = {}): Vfs2Parts {
  const cacheBytes = opts.cacheBytes ?? 16 << 20
  const handles: Handles = { map: new Map(), next: 0, native: null }
  const tier = opts.tape ?? null
  return {
    pieces: new PieceReader(repo.store, { cacheBytes: opts.pieceCacheBytes ?? MOUNT_PIECE_CACHE_BYTES, openPacks: MOUNT_OPEN_PACKS, keys: repo.sealing }),
    reader: new BlockReader({
      store: repo.data, // (the tiered store when units are on tape: format.md §2.18)
      source: new StreamSource2(repo),
      hashAlg: repo.config.hashAlg,
      blockSeed: repo.blockSeed,
      // (encrypted units too are read natively since 2026-12-04: native/nread.c opens their frames)
      cacheBytes: opts.nativeReads ? 1 << 20 : cacheBytes,
      maxOpenUnits: opts.maxOpenUnits,
      sealing: repo.unitSealing,
      readaheadFrames: opts.readaheadFrames,
    }),
    handles,
    tape: tier ? { tier, reads: new TapeReads<Handle>(tier, (h) => h.keys, () => handles.map.values()) } : null,
  }
}

/** A read of an open handle (through TapeReads with a tape tier). */
async function readHandle(parts: Vfs2Parts, handle: number, dst: Buffer, len: number, pos: number, req?: InterruptibleRead): Promise<number> {
  const h = parts.handles.map.get(handle)
  if (!h) throw new VfsError('EBADF')
  if (parts.tape) return parts.tape.reads.read(parts.reader, h, dst, len, pos, req)
  try {
    return await parts.reader.read(h.file, dst, len, pos)
  } catch (err) {
    throw Object.assign(new VfsError('EIO'), { cause: err })
  }
}

function releaseHandle(parts: Vfs2Parts, handle: number): void {
  const h = parts.handles.map.get(handle)
  if (h) parts.tape?.reads.released(h)
  parts.handles.map.delete(handle)
  parts.handles.native?.release(handle)
}

/** st_size of an entry (directories: 4096, as format 1 answers). */
function sizeOf(e: Entry2): number {
  if (e.type === FileType.File) return e.size
  if (e.type === FileType.Symlink) return e.target?.length ?? 0
  return e.type === FileType.Dir ? 4096 : 0
}

/** st_blocks of an entry: 512-byte units of the blocks stored (holes excluded). */
function blocksOf(e: Entry2): number {
  if (e.type === FileType.File) return e.dataBlocks * 8
  return e.type === FileType.Dir ? 8 : 0
}

/** A read-only, lazily loaded view of one format 2 generation. */
export class Vfs2 {
  /** Tells the adapter to use the asynchronous operations. */
  readonly lazy = true
  readonly reader: AsyncBlockReader
  readonly pieces: PieceReader
  private readonly tree: TreeReader
  private readonly maps: MapReader
  private readonly links: IdTableReader
  private readonly inoBase: number
  /** List single-piece directories in C (native/dirlist.c); false: always in JavaScript. */
  private readonly nativeListing: boolean
  private readonly tapeReadaheadUnits: number
  /** Directory entries by path (latin1), least recently used first. */
  private readonly dirs = new Map<string, Entry2>()
  private readonly h: Handles
  private readonly openWaitsForUnit: boolean
  private readonly parts: Vfs2Parts
  /** With a tape tier: the readahead over this generation's tree (null: off, or not made yet). */
  private ahead: TreeAhead2 | null = null

  /** `parts`: the piece cache, block reader and handles, shared by the views of a whole-repository mount (pieces are shared between generations). */
  constructor(
    readonly repo: Repo2,
    readonly manifest: ManifestV2,
    opts: Vfs2Options = {},
    parts: Vfs2Parts = vfs2Parts(repo, opts),
  ) {
    this.pieces = parts.pieces
    this.tree = new TreeReader(this.pieces)
    this.maps = new MapReader(this.pieces, manifest.biIndex) // (BI overlays first: §2.16)
    this.links = new IdTableReader(this.pieces, TableKind.Links)
    this.reader = parts.reader
    this.h = parts.handles
    this.parts = parts
    this.tapeReadaheadUnits = opts.tapeReadaheadUnits ?? DEFAULT_TAPE_READAHEAD_UNITS
    this.inoBase = manifest.id * GEN_INO + 16 + (manifest.sources[0]?.ordBase ?? 0)
    this.nativeListing = opts.nativeListing ?? true
    this.openWaitsForUnit = opts.openWaitsForUnit ?? false
  }

  /** A piece or store failure as EIO for this path (the message names the generation, the path and the place). */
  private damage(err: unknown, path: Buffer): unknown {
    if (err instanceof VfsError) return err
    if (err instanceof FormatError || isPieceFailure(err)) {
      return Object.assign(new VfsError('EIO'), { cause: new Error(`gen${this.manifest.id}:${trim(path).toString('latin1')}: ${(err as Error).message}`) })
    }
    return err
  }

  /** The entry at a raw path ('/'-separated; '' or '/' = the root). */
  async resolve(path: Buffer): Promise<Entry2> {
    try {
      return await this.walk(trim(path))
    } catch (err) {
      throw this.damage(err, path)
    }
  }

  private async walk(p: Buffer): Promise<Entry2> {
    if (p.length === 0) return this.manifest.rootEntry
    const key = p.toString('latin1')
    const memo = this.dirs.get(key)
    if (memo) {
      this.dirs.delete(key)
      this.dirs.set(key, memo)
      return memo
    }
    const slash = p.lastIndexOf(SLASH)
    const parent = await this.walk(slash < 0 ? p.subarray(0, 0) : p.subarray(0, slash))
    if (parent.type !== FileType.Dir) throw new VfsError('ENOTDIR')
    const e = await this.tree.lookup(parent.dir, p.subarray(slash + 1))
    if (!e) throw new VfsError('ENOENT')
    if (e.type === FileType.Dir) {
      this.dirs.set(key, e)
      if (this.dirs.size > DIR_MEMO) this.dirs.delete(this.dirs.keys().next().value!)
    }
    return e
  }

  /** The links row of a `linked` entry (its inode ord and link count). */
  private async linkRow(e: Entry2): Promise<LinkRow> {
    const row = await this.links.find(this.manifest.links, e)
    if (!row || !('nlinkInGen' in row)) throw new FormatError('BAD_VALUE', `the links table has no row for the hard-linked entry ${JSON.stringify(e.name.toString('latin1'))} (device ${e.srcDev}, inode ${e.srcInoHi * GEN_INO + e.srcInoLo})`)
    return row
  }

  /** Attributes of an entry (a links table lookup for a hard-linked one). */
  async attr(e: Entry2): Promise<Attr> {
    return (e.flags & E_LINKED) !== 0 ? this.attrOf(e, await this.linkRow(e)) : this.attrOf(e, null)
  }

  /** Attributes of an entry, given its links row when it is hard-linked. */
  private attrOf(e: Entry2, row: LinkRow | null): Attr {
    const ord = row ? row.ord : e.ord
    const nlink = row ? row.nlinkInGen : e.type === FileType.Dir ? e.nlink : 1
    const size = sizeOf(e)
    const blocks = blocksOf(e)
    return {
      ino: this.inoBase + ord,
      mode: TYPE_BITS[e.type]! | e.mode,
      nlink,
      uid: e.uid,
      gid: e.gid,
      size,
      blocks,
      rdevMajor: e.rdevMajor,
      rdevMinor: e.rdevMinor,
      atimeSec: e.atimeSec,
      atimeNsec: e.atimeNsec,
      mtimeSec: e.mtimeSec,
      mtimeNsec: e.mtimeNsec,
      ctimeSec: e.ctimeSec,
      ctimeNsec: e.ctimeNsec,
    }
  }

  /** attrOf(e, row) packed at arr[o] (vfs/statpack.ts), without the Attr object: readdir's per-entry path. */
  private packEntry(arr: Float64Array, o: number, e: Entry2, row: LinkRow | null): void {
    arr[o + F_MODE] = TYPE_BITS[e.type]! | e.mode
    arr[o + F_UID] = e.uid
    arr[o + F_GID] = e.gid
    arr[o + F_SIZE] = sizeOf(e)
    arr[o + F_NLINK] = row ? row.nlinkInGen || 1 : e.type === FileType.Dir ? e.nlink || 1 : 1
    packIno(arr, o, this.inoBase + (row ? row.ord : e.ord))
    arr[o + F_RDEV] = e.rdevMajor || e.rdevMinor ? makedev(e.rdevMajor, e.rdevMinor) : 0
    arr[o + F_BLKSIZE] = 4096
    arr[o + F_BLOCKS] = blocksOf(e)
    arr[o + F_ATIME] = e.atimeSec
    arr[o + F_ATIME + 1] = e.atimeNsec
    arr[o + F_MTIME] = e.mtimeSec
    arr[o + F_MTIME + 1] = e.mtimeNsec
    arr[o + F_CTIME] = e.ctimeSec
    arr[o + F_CTIME + 1] = e.ctimeNsec
    arr[o + F_FLAGS] = this.parts.tape || e.xattrs?.length ? 0 : STAT_NO_XATTRS
  }

  /**
   * What readdir in C needs to serve this generation without JavaScript (native/dirsrc.c),
   * or null: only for a repository on local disk, unencrypted, with the native listing on.
   */
  dirSource(): { root: Buffer; key: Buffer; inoBase: number; rootStat: Float64Array; rootRef: Float64Array | null; rootId: Buffer | null; openFiles: boolean } | null {
    const where = this.repo.store.describe()
    // (not with a tape tier: its listings would tell the native side that files have no xattrs, user.bfs.residency)
    if (!this.nativeListing || where?.kind !== 'disk' || !this.pieces.plainIds || this.parts.tape) return null
    const root = this.manifest.rootEntry
    const rootStat = new Float64Array(STAT_FIELDS)
    packAttr(rootStat, 0, this.attrOf(root, null), !!root.xattrs?.length)
    const c = root.dir?.child
    return {
      root: Buffer.from(where.root),
      key: Buffer.alloc(32),
      inoBase: this.inoBase,
      rootStat,
      rootRef: c ? new Float64Array([c.run, c.pack, c.offset, c.storedLen, root.dir!.entries]) : null,
      rootId: c ? c.id : null,
      // open in C too (native/hooks.c hook_open): what open() below does for such a file is
      // only the handle's registration. Not with BI overlays (a file's extents are its map
      // with its identity's overlay laid over it: MapReader.extents)
      openFiles: !this.manifest.biIndex,
    }
  }

  /** Attributes of a path, and whether it has extended attributes. */
  async stat(path: Buffer): Promise<{ attr: Attr; hasXattrs: boolean }> {
    const e = await this.resolve(path)
    try {
      return { attr: await this.attr(e), hasXattrs: !!this.parts.tape || !!e.xattrs?.length }
    } catch (err) {
      throw this.damage(err, path)
    }
  }

  /** A directory's children in name order, with their attributes (all pages read; as format 1's readdir answers in one go). */
  async readdir(path: Buffer): Promise<Listing> {
    const p = trim(path)
    const e = await this.resolve(p)
    if (e.type !== FileType.Dir) throw new VfsError('ENOTDIR')
    try {
      const slash = p.lastIndexOf(SLASH)
      const parentOf = async (self: Attr): Promise<Attr> => (p.length === 0 ? self : this.attr(await this.walk(slash < 0 ? p.subarray(0, 0) : p.subarray(0, slash))))
      // one DIR piece (no index, no delta): listed in C from its raw payload (native/dirlist.c),
      // no JavaScript object per entry; it declines what it cannot answer exactly (hard links,
      // anything the decoder would refuse), and the decoded path below answers or reports it
      if (e.dir && this.nativeListing) {
        const raw = await this.pieces.dirPayload(e.dir.child)
        const d = raw && dirListing(raw, this.inoBase)
        if (d && d[1].length === (e.dir.entries + 2) * STAT_FIELDS) {
          // with a tape tier every file has user.bfs.residency: never "no xattrs"
          if (this.parts.tape) for (let o = 2 * STAT_FIELDS + F_FLAGS; o < d[1].length; o += STAT_FIELDS) d[1][o] = d[1][o]! & ~STAT_NO_XATTRS
          const self = await this.attr(e)
          return { names: d[0], stats: d[1], self, parent: await parentOf(self) }
        }
      }
      const l = new ListingBuilder()
      // a page at a time (an async step per entry costs more than the page's decoding)
      if (e.dir) {
        for await (const page of this.tree.pages(e.dir, null)) {
          for (const c of page.entries) {
            const o = l.next(c.name.toString('latin1'))
            this.packEntry(l.stats, o, c, (c.flags & E_LINKED) !== 0 ? await this.linkRow(c) : null)
          }
        }
      }
      const self = await this.attr(e)
      return l.done(self, await parentOf(self))
    } catch (err) {
      throw this.damage(err, path)
    }
  }

  async readlink(path: Buffer): Promise<Buffer> {
    const e = await this.resolve(path)
    if (e.type !== FileType.Symlink) throw new VfsError('EINVAL')
    return e.target ?? Buffer.alloc(0)
  }

  async listxattr(path: Buffer): Promise<Buffer[]> {
    return ((await this.resolve(path)).xattrs ?? []).map(([name]) => name)
  }

  /** user.bfs.residency of a regular file with a tape tier (vfs/tapereads.ts residencyOf: format 1's), else its stored xattrs. */
  async getxattr(path: Buffer, name: Buffer): Promise<Buffer> {
    const e = await this.resolve(path)
    const t = this.parts.tape
    if (t && e.type === FileType.File && name.toString('latin1') === RESIDENCY_XATTR) return Buffer.from(residencyOf(t.tier, await this.unitKeys(e, path)))
    for (const [k, v] of e.xattrs ?? []) if (k.equals(name)) return v
    throw new VfsError('ENODATA')
  }

  /** The store keys of the units a regular file's data is in (its map resolved), in file order. */
  private async unitKeys(e: Entry2, path: Buffer): Promise<string[]> {
    let extents
    try {
      extents = await this.maps.extents(e)
    } catch (err) {
      throw this.damage(err, path)
    }
    return this.keysOf(extents, e.size)
  }

  private keysOf(extents: ReadonlyArray<{ fileBlock: number; count: number; stream: number; streamBlock: number }>, size: number): string[] {
    return unitKeysOf(extents.flatMap((x) => [x.fileBlock, x.count, x.stream, x.streamBlock]), size, (s) => this.repo.stream(s).unitBlocks)
  }

  /** The readahead over this generation's tree (null: off). */
  private treeAhead(t: TapeTier): TreeAhead2 | null {
    if (this.tapeReadaheadUnits <= 0) return null
    return (this.ahead ??= new TreeAhead2(
      {
        list: async (dir, ref, after, limit) => {
          const d = ref ?? (await this.walk(Buffer.from(dir.map((c) => c.toString('latin1')).join('/'), 'latin1')))
          return d.type === FileType.Dir ? this.tree.list(d.dir, { after, limit }) : { entries: [], more: false }
        },
        unitsOnTape: async (path, e) => unitsOnTape(t, this.keysOf(await this.maps.extents(e), e.size)),
        ask: (keys) => {
          try {
            t.prefetch(keys, { ahead: true })
          } catch {
            // only a hint
          }
        },
      },
      { maxUnits: this.tapeReadaheadUnits, maxBytes: t.cacheLimitBytes / 4 },
    ))
  }

  /** The readahead over the tree's counters (null: none made): the server's stats line. */
  get tapeAheadStats(): TreeAheadCounters | null {
    return this.ahead ? { ...this.ahead.counters } : null
  }

  /** A regular file's extents (its map resolved: map pieces read now) and its block reader's open file. */
  private async openFile(path: Buffer): Promise<{ e: Entry2; extents: Awaited<ReturnType<MapReader['extents']>>; file: OpenFile }> {
    const e = await this.resolve(path)
    if (e.type === FileType.Dir) throw new VfsError('EISDIR')
    if (e.type !== FileType.File) throw new VfsError('ENOTSUP')
    let extents
    try {
      extents = await this.maps.extents(e)
    } catch (err) {
      throw this.damage(err, path)
    }
    const v1: V1Extent[] = extents.map((x) => ({ fileBlock: x.fileBlock, count: x.count, gen: x.stream, streamBlock: x.streamBlock }))
    return { e, extents, file: this.reader.file(v1, e.size) }
  }

  /** Native handles being adopted (adopt): one open each, however many reads come back. */
  private readonly adopting = new Map<number, Promise<void>>()

  /**
   * A handle the native open gave (>= NATIVE_FH: native/hooks.c, without this process),
   * one of whose reads the native path handed back (its unit retired meanwhile, an I/O
   * error, a corrupt frame): the file opened here by its path under that number, so that
   * read(), which reports what is wrong, serves it; its release then comes here too.
   */
  adopt(handle: number, path: Buffer): Promise<void> {
    if (this.h.map.has(handle)) return Promise.resolve()
    let p = this.adopting.get(handle)
    if (!p) {
      p = this.openFile(path).then(({ file }) => {
        // (native opens are only on where there is no tape tier: no unit keys to keep)
        this.h.map.set(handle, { file, keys: [] })
        this.h.native?.adopt?.(handle)
      })
      const done = (): void => void this.adopting.delete(handle)
      p.then(done, done)
      this.adopting.set(handle, p)
    }
    return p
  }

  /** Opens a regular file: its map resolved (map pieces read now), a handle number returned. */
  async open(path: Buffer): Promise<number> {
    const { e, extents, file } = await this.openFile(path)
    const h = this.newHandle()
    const t = this.parts.tape
    let keys: string[] = []
    if (t) {
      try {
        keys = this.keysOf(extents, e.size)
      } catch {
        // a stream record that cannot be read: the reads say what is wrong
      }
    }
    this.h.map.set(h, { file, keys })
    if (t && t.tier.policy.offline !== 'eio') {
      prefetchAtOpen(t.tier, () => keys)
      // after the open is answered, one open at a time (a hint: never fails the open)
      this.treeAhead(t.tier)?.opened(trim(path).toString('latin1').split('/').map((c) => Buffer.from(c, 'latin1')))
    }
    if (this.h.native) {
      let x: Float64Array | null = null
      try {
        x = this.reader.nativeExtents(file)
        if (x) this.h.native.file(h, file.sizeBytes, x)
      } catch {
        // a stream record that cannot be read, or no room: this handle is read in JavaScript, whose reads say what is wrong
      }
      // the first read comes right after the open: with its unit registered it is served natively
      if (x && this.openWaitsForUnit) await this.reader.firstUnitOpen(file)
    }
    return h
  }

  private newHandle(): number {
    const h = this.h
    do h.next = h.next >= 0x7fffffff ? 1 : h.next + 1
    while (h.map.has(h.next))
    return h.next
  }

  release(handle: number): void {
    releaseHandle(this.parts, handle)
  }

  read(handle: number, dst: Buffer, len: number, pos: number, req?: InterruptibleRead): Promise<number> {
    return readHandle(this.parts, handle, dst, len, pos, req)
  }

  /** A close(2) of a descriptor of `handle` (FUSE_FLUSH; only with a tape tier): TapeReads.flush. */
  flush(handle: number): { reads: number; cancelled: number } | null {
    return this.parts.tape?.reads.flush(this.h.map.get(handle)) ?? null
  }

  /** Lets a native path serve reads of handles opened from now on (and units opened so far). */
  attachNative(n: NativeReads): void {
    this.h.native = n
    this.reader.attachNative(n)
  }

  /** With a tape tier: every regular file has user.bfs.residency (the native side never answers "no xattrs"), and a close reaches flush(). */
  get virtualXattrs(): boolean {
    return !!this.parts.tape
  }

  get cancelsOnFlush(): boolean {
    return !!this.parts.tape
  }

  /** The block reader (the server's stats line reads frames.stats and frames.openUnitCount). */
  get frames(): AsyncBlockReader {
    return this.reader
  }

  /** Nothing to warm: a unit is opened when a file in it is. */
  startWarming(): void {}

  /** For the server's stats line: the piece cache's counters and bytes held. */
  get pieceStats(): Record<string, number> {
    return { ...this.pieces.stats, cachedBytes: this.pieces.cachedBytes, dirsRemembered: this.dirs.size }
  }

  async close(): Promise<void> {
    this.pieces.close()
    await this.reader.close()
  }
}

/** A node of the whole-repository mount: a path in a generation, or one of its own nodes. */
type Node2 = { kind: 'gen'; view: Vfs2; rest: Buffer } | { kind: 'root' } | { kind: 'byDate' } | { kind: 'link'; target: Buffer; ino: number; time: string }

/** by-date/ name of a generation: its start time, with '+genN' only if two generations share it (as format 1's dateName). */
function dateName2(m: ManifestV2, all: readonly ManifestV2[]): string {
  return all.some((o) => o !== m && o.time === m.time) ? `${m.time}+gen${m.id}` : m.time
}

function splitTime(iso: string): [number, number] {
  const ms = Date.parse(iso)
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6]
}

/**
 * The whole format 2 repository mounted (`bfs mount MOUNTPOINT`), as format 1's Vfs shows it:
 * gen1/ … genN/ (each a lazy Vfs2 view; all share one piece cache, block reader and handle
 * table, so a piece shared by generations is decoded once), `latest` and by-date/<time>
 * symlinks, and generations committed after the mount (the list is read again at most once
 * a second; manifests are read once each). A damaged manifest's generation is not shown.
 */
export class Repo2Vfs {
  readonly lazy = true
  private readonly parts: Vfs2Parts
  private gens: ManifestV2[] = []
  private readonly known = new Map<number, ManifestV2 | null>()
  private lastRefresh = 0
  private readonly views = new Map<number, Vfs2>()

  constructor(
    readonly repo: Repo2,
    private readonly opts: Vfs2Options & { refreshMs?: number; onOpen?: (m: ManifestV2) => void } = {},
  ) {
    this.parts = vfs2Parts(repo, opts)
    this.refresh(true)
  }

  private refresh(force = false): void {
    const t = Date.now()
    if (!force && t - this.lastRefresh < (this.opts.refreshMs ?? 1000)) return
    this.lastRefresh = t
    const out: ManifestV2[] = []
    for (const id of this.repo.generationIds()) {
      let m = this.known.get(id)
      if (m === undefined) {
        try {
          m = this.repo.manifest(id)
        } catch {
          m = null // damaged (or gone): not shown
        }
        this.known.set(id, m)
      }
      if (m) out.push(m)
    }
    this.gens = out
  }

  private view(m: ManifestV2): Vfs2 {
    let v = this.views.get(m.id)
    if (!v) {
      this.opts.onOpen?.(m) // the mount's lease pins it (format.md §2.20.4)
      v = new Vfs2(this.repo, m, this.opts, this.parts)
      this.views.set(m.id, v)
    }
    return v
  }

  private route(path: Buffer): Node2 {
    const p = trim(path)
    if (p.length === 0) return { kind: 'root' }
    let end = p.indexOf(SLASH)
    if (end < 0) end = p.length
    const first = p.toString('latin1', 0, end)
    const rest = p.subarray(Math.min(end + 1, p.length))
    if (first === 'latest') {
      this.refresh()
      const g = this.gens[this.gens.length - 1]
      if (!g || rest.length) throw new VfsError(rest.length ? 'ENOTDIR' : 'ENOENT')
      return { kind: 'link', target: Buffer.from(`gen${g.id}`), ino: 3, time: g.time }
    }
    if (first === 'by-date') {
      if (!rest.length) return { kind: 'byDate' }
      this.refresh()
      const slash = rest.indexOf(SLASH)
      const name = rest.toString('latin1', 0, slash < 0 ? rest.length : slash)
      const k = this.gens.findIndex((m) => dateName2(m, this.gens) === name)
      if (k < 0) throw new VfsError('ENOENT')
      if (slash >= 0) throw new VfsError('ENOTDIR')
      const g = this.gens[k]!
      return { kind: 'link', target: Buffer.from(`../gen${g.id}`), ino: 16 + k, time: g.time }
    }
    const m = /^gen(\d+)$/.exec(first)
    if (!m) throw new VfsError('ENOENT')
    const id = Number(m[1])
    let g = this.gens.find((x) => x.id === id)
    if (!g) {
      this.refresh()
      g = this.gens.find((x) => x.id === id)
      if (!g) throw new VfsError('ENOENT')
    }
    return { kind: 'gen', view: this.view(g), rest }
  }

  /** Attributes of the mount's own nodes (times: the link's generation, else the newest). */
  private own(n: Exclude<Node2, { kind: 'gen' }>): Attr {
    const [sec, nsec] = splitTime(n.kind === 'link' ? n.time : this.gens[this.gens.length - 1]?.time ?? new Date(0).toISOString())
    const base = { uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, atimeSec: sec, atimeNsec: nsec, mtimeSec: sec, mtimeNsec: nsec, ctimeSec: sec, ctimeNsec: nsec }
    if (n.kind === 'link') return { ...base, ino: n.ino, mode: 0o120777, nlink: 1, size: n.target.length, blocks: 0 }
    if (n.kind === 'byDate') return { ...base, ino: 2, mode: 0o040555, nlink: 2, size: 4096, blocks: 8 }
    return { ...base, ino: 1, mode: 0o040555, nlink: 3 + this.gens.length, size: 4096, blocks: 8 }
  }

  async resolve(path: Buffer): Promise<void> {
    const n = this.route(path)
    if (n.kind === 'gen') await n.view.resolve(n.rest)
  }

  async stat(path: Buffer): Promise<{ attr: Attr; hasXattrs: boolean }> {
    const n = this.route(path)
    return n.kind === 'gen' ? n.view.stat(n.rest) : { attr: this.own(n), hasXattrs: false }
  }

  async readdir(path: Buffer): Promise<Listing> {
    const n = this.route(path)
    if (n.kind === 'link') throw new VfsError('ENOTDIR')
    if (n.kind === 'gen') {
      const d = await n.view.readdir(n.rest)
      // a generation's root: its parent is the mount's root
      if (n.rest.length === 0) d.parent = this.own({ kind: 'root' })
      return d
    }
    this.refresh()
    const root = this.own({ kind: 'root' })
    const l = new ListingBuilder()
    // names are ASCII: latin1 = UTF-8
    if (n.kind === 'byDate') {
      this.gens.forEach((g, k) => packAttr(l.stats, l.next(dateName2(g, this.gens)), this.own({ kind: 'link', target: Buffer.from(`../gen${g.id}`), ino: 16 + k, time: g.time }), false))
      return l.done(this.own(n), root)
    }
    for (const g of this.gens) packAttr(l.stats, l.next(`gen${g.id}`), await this.view(g).attr(g.rootEntry), !!g.rootEntry.xattrs?.length)
    packAttr(l.stats, l.next('by-date'), this.own({ kind: 'byDate' }), false)
    const last = this.gens[this.gens.length - 1]
    if (last) packAttr(l.stats, l.next('latest'), this.own({ kind: 'link', target: Buffer.from(`gen${last.id}`), ino: 3, time: last.time }), false)
    return l.done(root, root)
  }

  async readlink(path: Buffer): Promise<Buffer> {
    const n = this.route(path)
    if (n.kind === 'link') return n.target
    if (n.kind === 'gen') return n.view.readlink(n.rest)
    throw new VfsError('EINVAL')
  }

  async listxattr(path: Buffer): Promise<Buffer[]> {
    const n = this.route(path)
    return n.kind === 'gen' ? n.view.listxattr(n.rest) : []
  }

  async getxattr(path: Buffer, name: Buffer): Promise<Buffer> {
    const n = this.route(path)
    if (n.kind === 'gen') return n.view.getxattr(n.rest, name)
    throw new VfsError('ENODATA')
  }

  async open(path: Buffer): Promise<number> {
    const n = this.route(path)
    if (n.kind === 'gen') return n.view.open(n.rest)
    throw new VfsError(n.kind === 'link' ? 'EINVAL' : 'EISDIR')
  }

  release(handle: number): void {
    releaseHandle(this.parts, handle)
  }

  read(handle: number, dst: Buffer, len: number, pos: number, req?: InterruptibleRead): Promise<number> {
    return readHandle(this.parts, handle, dst, len, pos, req)
  }

  flush(handle: number): { reads: number; cancelled: number } | null {
    return this.parts.tape?.reads.flush(this.parts.handles.map.get(handle)) ?? null
  }

  get virtualXattrs(): boolean {
    return !!this.parts.tape
  }

  get cancelsOnFlush(): boolean {
    return !!this.parts.tape
  }

  attachNative(n: NativeReads): void {
    this.parts.handles.native = n
    this.parts.reader.attachNative(n)
  }

  get frames(): AsyncBlockReader {
    return this.parts.reader
  }

  startWarming(): void {}

  get pieceStats(): Record<string, number> {
    return { ...this.parts.pieces.stats, cachedBytes: this.parts.pieces.cachedBytes, generationsViewed: this.views.size }
  }

  /** The readahead over the tree's counters, summed over the generations (null: none made). */
  get tapeAheadStats(): TreeAheadCounters | null {
    let sum: TreeAheadCounters | null = null
    for (const v of this.views.values()) {
      const c = v.tapeAheadStats
      if (!c) continue
      sum ??= { inOrder: 0, elsewhere: 0, askedUnits: 0 }
      sum.inOrder += c.inOrder
      sum.elsewhere += c.elsewhere
      sum.askedUnits += c.askedUnits
    }
    return sum
  }

  async close(): Promise<void> {
    this.parts.pieces.close()
    await this.parts.reader.close()
  }
}

/** A path without leading, trailing or doubled slashes. */
function trim(p: Buffer): Buffer {
  let s = 0
  let e = p.length
  while (s < e && p[s] === SLASH) s++
  while (e > s && p[e - 1] === SLASH) e--
  const t = p.subarray(s, e)
  if (!t.includes('//')) return t
  return Buffer.from(t.toString('latin1').replace(/\/+/g, '/'), 'latin1')
}

/** What a format 2 mount serves: one generation, or the whole repository. */
export type LazyVfs = Vfs2 | Repo2Vfs
