/**
 * The lazy tree a mount of a format 2 generation serves (issue 15 item 3): opening it reads
 * nothing but the manifest (whose root entry is inline), a directory's piece is read on its
 * first lookup or readdir, and decoded pieces live in one PieceReader's byte-bounded cache
 * (16 MiB by default, `--piece-cache`), so the mount's memory does not grow with the tree. Files are read
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
import { VfsError, type Attr, type NativeReads } from './tree.js'

/** Bytes of decoded pieces a mount keeps by default. */
export const MOUNT_PIECE_CACHE_BYTES = 16 << 20

/** Directory entries remembered by path (the way to a deep path is not looked up again each time). */
const DIR_MEMO = 4096

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
}

interface Handle {
  file: OpenFile
}

/** What readdir answers: the children (without . and ..), and the attributes of the directory and its parent. */
export interface Listing {
  names: Buffer[]
  attrs: Attr[]
  hasXattrs: boolean[]
  self: Attr
  parent: Attr
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
  /** Directory entries by path (latin1), least recently used first. */
  private readonly dirs = new Map<string, Entry2>()
  private readonly handles = new Map<number, Handle>()
  private nextHandle = 0
  private native: NativeReads | null = null

  constructor(
    readonly repo: Repo2,
    readonly manifest: ManifestV2,
    opts: Vfs2Options = {},
  ) {
    this.pieces = new PieceReader(repo.store, { cacheBytes: opts.pieceCacheBytes ?? MOUNT_PIECE_CACHE_BYTES })
    this.tree = new TreeReader(this.pieces)
    this.maps = new MapReader(this.pieces)
    this.links = new IdTableReader(this.pieces, TableKind.Links)
    const cacheBytes = opts.cacheBytes ?? 16 << 20
    this.reader = new BlockReader({
      store: repo.store,
      source: new StreamSource2(repo),
      hashAlg: repo.config.hashAlg,
      cacheBytes: opts.nativeReads ? 1 << 20 : cacheBytes,
      maxOpenUnits: opts.maxOpenUnits,
      readaheadFrames: opts.readaheadFrames,
    })
    this.inoBase = manifest.id * GEN_INO + 16 + (manifest.sources[0]?.ordBase ?? 0)
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
    let size = 0
    let blocks = 0
    if (e.type === FileType.File) {
      size = e.size
      blocks = e.dataBlocks * 8
    } else if (e.type === FileType.Symlink) size = e.target?.length ?? 0
    else if (e.type === FileType.Dir) {
      size = 4096
      blocks = 8
    }
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

  /** Attributes of a path, and whether it has extended attributes. */
  async stat(path: Buffer): Promise<{ attr: Attr; hasXattrs: boolean }> {
    const e = await this.resolve(path)
    try {
      return { attr: await this.attr(e), hasXattrs: !!e.xattrs?.length }
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
      const names: Buffer[] = []
      const attrs: Attr[] = []
      const hasXattrs: boolean[] = []
      // a page at a time (an async step per entry costs more than the page's decoding)
      if (e.dir) {
        for await (const page of this.tree.pages(e.dir, null)) {
          for (const c of page.entries) {
            names.push(c.name)
            attrs.push((c.flags & E_LINKED) !== 0 ? this.attrOf(c, await this.linkRow(c)) : this.attrOf(c, null))
            hasXattrs.push(!!c.xattrs?.length)
          }
        }
      }
      const slash = p.lastIndexOf(SLASH)
      const self = await this.attr(e)
      const parent = p.length === 0 ? self : await this.attr(await this.walk(slash < 0 ? p.subarray(0, 0) : p.subarray(0, slash)))
      return { names, attrs, hasXattrs, self, parent }
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

  async getxattr(path: Buffer, name: Buffer): Promise<Buffer> {
    for (const [k, v] of (await this.resolve(path)).xattrs ?? []) if (k.equals(name)) return v
    throw new VfsError('ENODATA')
  }

  /** Opens a regular file: its map resolved (map pieces read now), a handle number returned. */
  async open(path: Buffer): Promise<number> {
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
    const file = this.reader.file(v1, e.size)
    const h = this.newHandle()
    this.handles.set(h, { file })
    if (this.native) {
      try {
        const x = this.reader.nativeExtents(file)
        if (x) this.native.file(h, file.sizeBytes, x)
      } catch {
        // a stream record that cannot be read, or no room: this handle is read in JavaScript, whose reads say what is wrong
      }
    }
    return h
  }

  private newHandle(): number {
    do this.nextHandle = this.nextHandle >= 0x7fffffff ? 1 : this.nextHandle + 1
    while (this.handles.has(this.nextHandle))
    return this.nextHandle
  }

  release(handle: number): void {
    this.handles.delete(handle)
    this.native?.release(handle)
  }

  async read(handle: number, dst: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handles.get(handle)
    if (!h) throw new VfsError('EBADF')
    try {
      return await this.reader.read(h.file, dst, len, pos)
    } catch (err) {
      throw Object.assign(new VfsError('EIO'), { cause: err })
    }
  }

  /** Lets a native path serve reads of handles opened from now on (and units opened so far). */
  attachNative(n: NativeReads): void {
    this.native = n
    this.reader.attachNative(n)
  }

  /** No tape tier on format 2 yet: no virtual xattrs, no flush. */
  readonly virtualXattrs = false
  readonly cancelsOnFlush = false

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
    await this.reader.close()
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
