import { EntryType, ST_ATIME_NSEC, ST_ATIME_SEC, ST_CTIME_NSEC, ST_CTIME_SEC, ST_FIELDS, ST_GID, ST_MODE, ST_MTIME_NSEC, ST_MTIME_SEC, ST_OBJ_GEN, ST_OBJ_INDEX, ST_RDEV_MAJOR, ST_RDEV_MINOR, ST_SIZE, ST_TARGET_LEN, ST_TYPE, ST_UID, ST_XATTRS, type CatalogIndex, type Entry } from '../format/catalog.js'
import { F_ATIME, F_BLKSIZE, F_BLOCKS, F_CTIME, F_FLAGS, F_GID, F_MODE, F_MTIME, F_NLINK, F_RDEV, F_SIZE, F_UID, STAT_FIELDS, STAT_NO_CACHE, STAT_NO_XATTRS, makedev, packIno, type Attr } from './statpack.js'
import type { Extent, MapObject, MapsIndex } from '../format/maps.js'
import type { Manifest } from '../format/manifest.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import type { Repository } from '../repo/repository.js'
import { ObjectResolver, type MapSource } from '../repo/resolve.js'
import type { AsyncBlockReader, OpenFile } from '../blocks/reader.js'
import type { NativeSink } from '../blocks/native.js'
import { repoBlockReader } from '../repo/stream-source.js'
import { extentUnits } from '../repo/needed.js'
import { TreeAhead } from './treeahead.js'
import { VfsError } from './errors.js'
import { RESIDENCY_XATTR, TapeReads, prefetchAtOpen, residencyOf, unitsOnTape, type InterruptibleRead, type TapeHandle, type TapeTier } from './tapereads.js'

export { RESIDENCY_XATTR, type InterruptibleRead, type TapeTier }

/** Units asked for ahead at most by the tape readahead over the tree (`bfs mount --tape-readahead`). */
export const DEFAULT_TAPE_READAHEAD_UNITS = 256

/** A native read path (bfs's C read path: src/native/fastpath.ts's FastPath, wired in by the fuse adapter) as the vfs sees it. */
export type NativeReads = NativeSink

/** An error a filesystem operation answers with (vfs/errors.ts; imported from here by the mount's other modules). */
export { VfsError }

/** Attributes of one node; times with nanoseconds. */
export type { Attr } from './statpack.js'

const TYPE_BITS: Record<number, number> = {
  [EntryType.File]: 0o100000,
  [EntryType.Dir]: 0o040000,
  [EntryType.Symlink]: 0o120000,
  [EntryType.CharDev]: 0o020000,
  [EntryType.BlockDev]: 0o060000,
  [EntryType.Fifo]: 0o010000,
  [EntryType.Socket]: 0o140000,
}

/** Inode numbers: gen × 2^32 + 16 + entry index (the hard-link leader's for links); 1…15 are the repository root's own nodes. */
const GEN_INO = 2 ** 32
const SLASH = 0x2f
const DOT = 0x2e

/** One node: either an entry of a generation, or a synthetic node of the all-generations root. */
export type Node =
  | { kind: 'entry'; view: GenView; index: number }
  | { kind: 'root' }
  | { kind: 'byDate' }
  | { kind: 'link'; target: Buffer; ino: number; time: number }

function splitTime(iso: string): [number, number] {
  const ms = Date.parse(iso)
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6]
}

/** Resolved extent lists a view remembers (then it starts over): bounds the mount's memory. */
const RESOLVED_MEMO = 8192

/** Block maps for the mount: each generation's maps indexed once, objects decoded when needed. */
class LazyMaps implements MapSource {
  private readonly index = new Map<number, MapsIndex>()
  constructor(private readonly repo: Repository) {}
  private of(gen: number): MapsIndex {
    let x = this.index.get(gen)
    if (!x) {
      x = this.repo.mapsIndex(gen)
      this.index.set(gen, x)
    }
    return x
  }
  mapObject(gen: number, i: number): MapObject | undefined {
    return this.of(gen).object(i)
  }
  fullDataBlocks(gen: number, i: number): number {
    return this.of(gen).fullDataBlocks(i, BLOCK_BYTES)
  }
  biOverlay(gen: number, i: number): Extent[] | undefined {
    return this.repo.biOverlay(gen, i)
  }
}

/** A read-only view of one file generation. */
export class GenView {
  readonly cat: CatalogIndex
  readonly resolver: ObjectResolver
  private readonly linkCount = new Map<number, number>()
  private readonly dirLinks: Uint32Array

  constructor(
    readonly repo: Repository,
    readonly manifest: Manifest,
    maps: MapSource = repo,
  ) {
    const cat = (this.cat = repo.catalogIndex(manifest.id))
    this.resolver = new ObjectResolver(maps, RESOLVED_MEMO)
    this.dirLinks = new Uint32Array(cat.length)
    for (let i = 0; i < cat.length; i++) {
      const t = cat.type[i]
      if (t === EntryType.Dir) {
        this.dirLinks[i] = this.dirLinks[i]! + 2
        if (i > 0) this.dirLinks[cat.parent[i]!]!++
      } else if (t === EntryType.File && (cat.leader[i] !== i || cat.nlink[i]! > 1)) {
        const l = cat.leader[i]!
        this.linkCount.set(l, (this.linkCount.get(l) ?? 0) + 1)
      }
    }
  }

  entry(i: number): Entry {
    return this.cat.entry(i)
  }

  leader(i: number): number {
    return this.cat.leader[i]!
  }

  ino(i: number): number {
    return this.manifest.id * GEN_INO + 16 + this.leader(i)
  }

  /** Entry index of a path relative to this generation's root; -1 if absent (throws ENOTDIR through a non-directory). */
  lookup(path: Buffer, start = 0): number {
    let cur = 0
    let s = start
    while (s < path.length) {
      let end = path.indexOf(SLASH, s)
      if (end < 0) end = path.length
      if (end > s) {
        if (this.cat.type[cur] !== EntryType.Dir) throw new VfsError('ENOTDIR')
        cur = this.cat.childIndex(cur, path.subarray(s, end))
        if (cur < 0) return -1
      }
      s = end + 1
    }
    return cur
  }

  extents(i: number): Extent[] {
    const d = this.entry(this.leader(i))
    return d.objGen ? this.resolver.resolve(d.objGen, d.objIndex) : []
  }

  attr(i: number): Attr {
    const e = this.entry(i)
    const d = this.leader(i) === i ? e : this.entry(this.leader(i))
    let size = 0
    let blocks = 0
    if (e.type === EntryType.File) {
      size = d.size
      blocks = d.objGen ? this.resolver.dataBlocks(d.objGen, d.objIndex) * (BLOCK_BYTES / 512) : 0
    } else if (e.type === EntryType.Symlink) size = e.target!.length
    else if (e.type === EntryType.Dir) {
      size = BLOCK_BYTES
      blocks = BLOCK_BYTES / 512
    }
    return {
      ino: this.ino(i),
      mode: TYPE_BITS[e.type]! | e.mode,
      nlink: e.type === EntryType.Dir ? this.dirLinks[i]! : this.linkCount.get(this.leader(i)) ?? 1,
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

  private readonly raw = new Float64Array(ST_FIELDS)
  private readonly rawLeader = new Float64Array(ST_FIELDS)

  /**
   * attr(i) written straight into a packed stat at arr[o] (vfs/statpack.ts), read from the
   * catalog's bytes without an Entry or Attr object: readdir's per-child path. `allXattrs`:
   * every entry says it may have xattrs (a tape tier's virtual one).
   */
  packStat(i: number, arr: Float64Array, o: number, allXattrs: boolean): void {
    const r = this.raw
    this.cat.stat(i, r)
    const type = r[ST_TYPE]!
    const l = this.leader(i)
    let size = 0
    let blocks = 0
    if (type === EntryType.File) {
      let gen = r[ST_OBJ_GEN]!
      let index = r[ST_OBJ_INDEX]!
      size = r[ST_SIZE]!
      if (l !== i) {
        // a hard link: the data (size, blocks) is its leader's
        const d = this.rawLeader
        this.cat.stat(l, d)
        size = d[ST_SIZE]!
        gen = d[ST_OBJ_GEN]!
        index = d[ST_OBJ_INDEX]!
      }
      blocks = gen ? this.resolver.dataBlocks(gen, index) * (BLOCK_BYTES / 512) : 0
    } else if (type === EntryType.Symlink) size = r[ST_TARGET_LEN]!
    else if (type === EntryType.Dir) {
      size = BLOCK_BYTES
      blocks = BLOCK_BYTES / 512
    }
    const major = r[ST_RDEV_MAJOR]!
    const minor = r[ST_RDEV_MINOR]!
    arr[o + F_MODE] = TYPE_BITS[type]! | r[ST_MODE]!
    arr[o + F_UID] = r[ST_UID]!
    arr[o + F_GID] = r[ST_GID]!
    arr[o + F_SIZE] = size
    arr[o + F_NLINK] = type === EntryType.Dir ? this.dirLinks[i]! : this.linkCount.get(l) ?? 1
    packIno(arr, o, this.ino(i))
    arr[o + F_RDEV] = major || minor ? makedev(major, minor) : 0
    arr[o + F_BLKSIZE] = 4096
    arr[o + F_BLOCKS] = blocks
    arr[o + F_ATIME] = r[ST_ATIME_SEC]!
    arr[o + F_ATIME + 1] = r[ST_ATIME_NSEC]!
    arr[o + F_MTIME] = r[ST_MTIME_SEC]!
    arr[o + F_MTIME + 1] = r[ST_MTIME_NSEC]!
    arr[o + F_CTIME] = r[ST_CTIME_SEC]!
    arr[o + F_CTIME + 1] = r[ST_CTIME_NSEC]!
    arr[o + F_FLAGS] = allXattrs || r[ST_XATTRS]! > 0 ? 0 : STAT_NO_XATTRS
  }

  /** Directories whose whole listing was published to the native side (Vfs.publishAhead). */
  private published: Uint8Array | null = null

  /**
   * Publishes, in the order `find` visits them (depth first, by name), the listings of the
   * directories that come after `dir` in that order (those below it, then the later
   * siblings of it and of its ancestors, with theirs) that were not published yet, `.` and
   * `..` included, until about `budget` entries went out. Returns the entries published.
   */
  publishBelow(dir: number, dirPath: Buffer, budget: number, allXattrs: boolean, sink: (path: Buffer, l: PackedListing) => void): number {
    const cat = this.cat
    const done = (this.published ??= new Uint8Array(cat.length))
    let sent = 0
    // explicit stack of [index, path]: a deep tree must not overflow the call stack
    const stack: Array<[number, Buffer]> = []
    const pushChildren = (d: number, p: Buffer, from = 0): void => {
      const first = Math.max(cat.firstChild[d]!, from)
      // pushed in reverse, so popped in name order
      for (let c = cat.firstChild[d]! + cat.childCount[d]! - 1; c >= first; c--) {
        if (cat.type[c] !== EntryType.Dir) continue
        // p + "/" + name (p "/": the root)
        const s = cat.nameStart[c]!
        const len = cat.nameLen[c]!
        const lead = p.length === 1 ? 1 : p.length + 1
        const child = Buffer.allocUnsafe(lead + len)
        for (let k = 0; k < lead - 1; k++) child[k] = p[k]!
        child[lead - 1] = SLASH
        for (let k = 0; k < len; k++) child[lead + k] = cat.payload[s + k]!
        stack.push([c, child])
      }
    }
    // after the subtree, where a depth-first walk goes next: the later siblings of `dir`,
    // then of its parent, … up to the root's children (find overtaking what was published
    // lands on such a sibling: it is then the next one published, not only its own subtree)
    const up: Array<[number, Buffer]> = []
    for (let x = dir, p = dirPath; x !== 0 && p.length > 1; ) {
      const slash = p.lastIndexOf(SLASH)
      const pp = slash <= 0 ? p.subarray(0, 1) : p.subarray(0, slash)
      up.push([x, pp])
      x = cat.parent[x]!
      p = pp
    }
    for (let k = up.length - 1; k >= 0; k--) pushChildren(cat.parent[up[k]![0]]!, up[k]![1], up[k]![0] + 1)
    pushChildren(dir, dirPath)
    // (directories published before are gone through, not skipped: below them may be some
    // that a smaller budget left out)
    while (stack.length && sent < budget) {
      const [d, p] = stack.pop()!
      if (!done[d]) {
        const l = this.listing(d, allXattrs)
        this.packStat(d, l.stats, 0, allXattrs)
        this.packStat(cat.parent[d]!, l.stats, STAT_FIELDS, allXattrs)
        l.stats[F_FLAGS] = STAT_NO_CACHE
        l.stats[STAT_FIELDS + F_FLAGS] = STAT_NO_CACHE
        sink(p, l)
        done[d] = 1
        sent += cat.childCount[d]! + 2
      }
      pushChildren(d, p)
    }
    return sent
  }

  /** The children of directory `dir` packed (PackedListing; slots 0 and 1 for `.` and `..`). */
  listing(dir: number, allXattrs: boolean): PackedListing {
    const cat = this.cat
    const first = cat.firstChild[dir]!
    const n = cat.childCount[dir]!
    let bytes = 5 // ".\0..\0"
    for (let c = first; c < first + n; c++) bytes += cat.nameLen[c]! + 1
    const names = Buffer.allocUnsafe(bytes)
    names[0] = DOT
    names[1] = 0
    names[2] = DOT
    names[3] = DOT
    names[4] = 0
    const stats = new Float64Array((n + 2) * STAT_FIELDS)
    const payload = cat.payload
    let at = 5
    for (let k = 0; k < n; k++) {
      const c = first + k
      // byte by byte: Buffer#copy's own cost per call was more than a short name's copy
      for (let s = cat.nameStart[c]!, e = s + cat.nameLen[c]!; s < e; s++) names[at++] = payload[s]!
      names[at++] = 0
      this.packStat(c, stats, (k + 2) * STAT_FIELDS, allXattrs)
    }
    return { names, stats }
  }
}

/** What a readdir answers in the binding's packed form: names each ended by a NUL, `.` and `..` first; stats (vfs/statpack.ts) of `.` and `..` left to the caller. */
export interface PackedListing {
  names: Buffer
  stats: Float64Array
}

/** An open regular file: the reader's open object (its resolved extents), kept for the life of the handle. */
interface Handle extends TapeHandle {
  view: GenView
  index: number
  /** With a tape tier: its file's unit keys, computed when a flush first needs them. */
  keys?: string[]
}

export interface VfsOptions {
  /** Bytes of decompressed frames to keep (default 16 MiB). */
  cacheBytes?: number
  /**
   * Reads will mostly be served by a native path with its own cache of cacheBytes
   * (attachNative): this process then keeps only 1 MiB, for the few reads it still serves.
   */
  nativeReads?: boolean
  /** Frames to prefetch ahead of a sequential reader (default: about 1 MiB of frames; 0 disables). */
  readaheadFrames?: number
  /** Serve only this generation at the root (else every generation under genN/). */
  generation?: number
  /** Re-read the generation list at most this often, ms (default 1000). */
  refreshMs?: number
  /** Unit files kept open at most, one descriptor each (default 1024). */
  maxOpenUnits?: number
  now?: () => number
  /**
   * The repository's tiered store when units are on tape (the reader reads through it):
   * opening a file whose units are on tape asks for them all (the scheduler orders what
   * concurrent readers want), and `user.bfs.residency` says where a file's units are.
   */
  tape?: TapeTier | null
  /**
   * With a tape tier: once opens follow the tree's traversal order, the units on tape of the
   * files that come next are asked for ahead, this many at most (and a quarter of the buffer
   * cache), so that readers going through a tree in order (`find | xargs cat`, `cp -a`) give
   * the scheduler a deep queue (vfs/treeahead.ts). Default 256; 0: only each opened file's
   * own units.
   */
  tapeReadaheadUnits?: number
  /** Called by close() after the reader is closed (the data store's close). */
  onClose?: () => Promise<void>
}


/**
 * The read-only tree the mount serves, without any FUSE in it: one generation at the root,
 * or all of them (gen1/ … genN/, latest, by-date/<time>), picking up new generations.
 */
export class Vfs {
  /** The block reader the mount reads through (asynchronous entry points only: a mount never blocks its event loop). */
  readonly reader: AsyncBlockReader
  private readonly views = new Map<number, GenView>()
  private gens: Manifest[] = []
  private lastRefresh = 0
  private readonly handles = new Map<number, Handle>()
  /** The tape readahead over the tree, per generation shown. */
  private readonly treeAhead = new WeakMap<GenView, TreeAhead>()
  private nextHandle = 0
  private readonly now: () => number
  private readonly maps: LazyMaps

  constructor(
    readonly repo: Repository,
    private readonly opts: VfsOptions = {},
  ) {
    const cacheBytes = opts.cacheBytes ?? 16 << 20
    this.reader = repoBlockReader(repo, { cacheBytes: opts.nativeReads ? 1 << 20 : cacheBytes, maxOpenUnits: opts.maxOpenUnits, readaheadFrames: opts.readaheadFrames })
    this.maps = new LazyMaps(repo)
    this.now = opts.now ?? Date.now
    this.tapeReads = opts.tape ? new TapeReads<Handle>(opts.tape, (h) => this.keysOf(h), () => this.handles.values()) : null
    this.refresh(true)
    if (opts.generation !== undefined) this.view(opts.generation)
  }

  private refresh(force = false): void {
    if (this.opts.generation !== undefined && !force) return
    const t = this.now()
    if (!force && t - this.lastRefresh < (this.opts.refreshMs ?? 1000)) return
    this.lastRefresh = t
    this.gens = this.repo.generations()
  }

  view(id: number): GenView {
    let v = this.views.get(id)
    if (!v) {
      v = new GenView(this.repo, this.repo.manifest(id), this.maps)
      this.views.set(id, v)
      // Only a single-generation mount warms: on the whole-repository mount `ls /` makes
      // a view of every generation, and warming them all would hold every unit open.
      if (this.warming && this.opts.generation === id) this.reader.warm(id)
    }
    return v
  }

  /** Resolves a raw path ('/'-separated, leading '/') to a node. */
  resolve(path: Buffer): Node {
    if (this.opts.generation !== undefined) {
      const v = this.view(this.opts.generation)
      const i = v.lookup(path)
      if (i < 0) throw new VfsError('ENOENT')
      return { kind: 'entry', view: v, index: i }
    }
    let s = 0
    while (s < path.length && path[s] === SLASH) s++
    if (s >= path.length) return { kind: 'root' }
    let end = path.indexOf(SLASH, s)
    if (end < 0) end = path.length
    const first = path.toString('latin1', s, end)
    if (first === 'latest' || first === 'by-date') {
      const rest = path.subarray(end).toString('latin1').replace(/^\/+/, '')
      if (first === 'latest') {
        this.refresh()
        const g = this.gens[this.gens.length - 1]
        if (!g || rest) throw new VfsError(rest ? 'ENOTDIR' : 'ENOENT')
        return { kind: 'link', target: Buffer.from(`gen${g.id}`), ino: 3, time: Date.parse(g.time) }
      }
      if (!rest) return { kind: 'byDate' }
      this.refresh()
      const k = this.gens.findIndex((m) => dateName(m, this.gens) === rest.split('/')[0])
      if (k < 0) throw new VfsError('ENOENT')
      if (rest.includes('/')) throw new VfsError('ENOTDIR')
      const g = this.gens[k]!
      return { kind: 'link', target: Buffer.from(`../gen${g.id}`), ino: 16 + k, time: Date.parse(g.time) }
    }
    const m = /^gen(\d+)$/.exec(first)
    if (!m) throw new VfsError('ENOENT')
    const id = Number(m[1])
    if (!this.gens.some((g) => g.id === id)) {
      this.refresh()
      if (!this.gens.some((g) => g.id === id)) throw new VfsError('ENOENT')
    }
    const v = this.view(id)
    const i = v.lookup(path, end)
    if (i < 0) throw new VfsError('ENOENT')
    return { kind: 'entry', view: v, index: i }
  }

  attr(n: Node): Attr {
    if (n.kind === 'entry') return n.view.attr(n.index)
    const newest = this.gens[this.gens.length - 1]
    const [sec, nsec] = splitTime(n.kind === 'link' ? new Date(n.time).toISOString() : newest?.time ?? new Date(0).toISOString())
    const base = { uid: 0, gid: 0, rdevMajor: 0, rdevMinor: 0, atimeSec: sec, atimeNsec: nsec, mtimeSec: sec, mtimeNsec: nsec, ctimeSec: sec, ctimeNsec: nsec }
    if (n.kind === 'link') return { ...base, ino: n.ino, mode: 0o120777, nlink: 1, size: n.target.length, blocks: 0 }
    if (n.kind === 'byDate') return { ...base, ino: 2, mode: 0o040555, nlink: 2, size: 4096, blocks: 8 }
    return { ...base, ino: 1, mode: 0o040555, nlink: 3 + this.gens.length, size: 4096, blocks: 8 }
  }

  getattr(path: Buffer): Attr {
    return this.attr(this.resolve(path))
  }

  /** Names and attributes of a directory's children (without . and ..). */
  readdir(path: Buffer): { names: Buffer[]; attrs: Attr[]; hasXattrs?: boolean[] } {
    const n = this.resolve(path)
    if (n.kind === 'root') {
      this.refresh()
      const names = [...this.gens.map((g) => Buffer.from(`gen${g.id}`)), Buffer.from('by-date')]
      if (this.gens.length) names.push(Buffer.from('latest'))
      return { names, attrs: names.map((nm) => this.getattr(Buffer.concat([Buffer.from('/'), nm]))) }
    }
    if (n.kind === 'byDate') {
      this.refresh()
      const names = this.gens.map((g) => Buffer.from(dateName(g, this.gens)))
      return { names, attrs: names.map((nm) => this.getattr(Buffer.concat([Buffer.from('/by-date/'), nm]))) }
    }
    if (n.kind === 'link') throw new VfsError('ENOTDIR')
    const cat = n.view.cat
    if (cat.type[n.index] !== EntryType.Dir) throw new VfsError('ENOTDIR')
    const names: Buffer[] = []
    const attrs: Attr[] = []
    // Whether each child has xattrs, from the entry in hand: asking listxattr by path
    // resolved every child's path again (half of the JS time of a cold `find`).
    const hasXattrs: boolean[] = []
    const first = cat.firstChild[n.index]!
    for (let c = first; c < first + cat.childCount[n.index]!; c++) {
      names.push(cat.name(c))
      attrs.push(n.view.attr(c))
      hasXattrs.push(!!n.view.entry(c).xattrs?.length)
    }
    return { names, attrs, hasXattrs }
  }

  /**
   * readdir in the binding's packed form (GenView.listing: no name string, Attr or stat
   * object per child) for a directory of a generation; null for the whole-repository
   * mount's own directories (the root, by-date/), which readdir answers.
   */
  listing(path: Buffer): PackedListing | null {
    const n = this.resolve(path)
    if (n.kind !== 'entry') {
      if (n.kind === 'link') throw new VfsError('ENOTDIR')
      return null
    }
    if (n.view.cat.type[n.index] !== EntryType.Dir) throw new VfsError('ENOTDIR')
    return n.view.listing(n.index, this.virtualXattrs)
  }

  /**
   * A single-generation mount: publishes (`sink`) the whole listings of directories below
   * `path` that the kernel is likely to ask for next (GenView.publishBelow), about `budget`
   * entries; the native side then answers their readdir without JavaScript. A generation
   * never changes, so a published listing is what readdir would answer at any later time.
   * The whole-repository mount publishes nothing (its root grows).
   */
  publishAhead(path: Buffer, budget: number, sink: (path: Buffer, l: PackedListing) => void): number {
    if (this.opts.generation === undefined) return 0
    const n = this.resolve(path)
    if (n.kind !== 'entry' || n.view.cat.type[n.index] !== EntryType.Dir) return 0
    return n.view.publishBelow(n.index, path, budget, this.virtualXattrs, sink)
  }

  readlink(path: Buffer): Buffer {
    const n = this.resolve(path)
    if (n.kind === 'link') return n.target
    if (n.kind !== 'entry' || n.view.cat.type[n.index] !== EntryType.Symlink) throw new VfsError('EINVAL')
    return n.view.entry(n.index).target!
  }

  listxattr(path: Buffer): Buffer[] {
    const n = this.resolve(path)
    if (n.kind !== 'entry') return []
    return (n.view.entry(n.index).xattrs ?? []).map(([name]) => name)
  }

  getxattr(path: Buffer, name: Buffer): Buffer {
    const n = this.resolve(path)
    if (this.opts.tape && n.kind === 'entry' && name.toString('latin1') === RESIDENCY_XATTR && n.view.cat.type[n.index] === EntryType.File) return Buffer.from(residencyOf(this.opts.tape, this.fileUnits(n.view, n.index)))
    if (n.kind === 'entry') for (const [k, v] of n.view.entry(n.index).xattrs ?? []) if (k.equals(name)) return v
    throw new VfsError('ENODATA')
  }

  /** Opens a regular file for reading; returns a handle number. */
  open(path: Buffer): number {
    const n = this.resolve(path)
    if (n.kind !== 'entry') throw new VfsError(n.kind === 'link' ? 'EINVAL' : 'EISDIR')
    const t = n.view.cat.type[n.index]
    if (t === EntryType.Dir) throw new VfsError('EISDIR')
    if (t !== EntryType.File) throw new VfsError('ENOTSUP')
    const h = this.newHandle()
    const d = n.view.entry(n.view.leader(n.index))
    const handle: Handle = { view: n.view, index: n.index, file: this.reader.file(n.view.extents(n.index), d.size, d.objGen ? { gen: d.objGen, index: d.objIndex } : undefined) }
    this.handles.set(h, handle)
    if (this.opts.tape && this.opts.tape.policy.offline !== 'eio') {
      prefetchAtOpen(this.opts.tape, () => this.fileUnits(n.view, n.index))
      try {
        this.aheadOf(n.view)?.opened(n.index)
      } catch {
        // the readahead is only a hint: an open never fails for it
      }
    }
    if (this.native) {
      try {
        const x = this.reader.nativeExtents(handle.file)
        if (x) this.native.file(h, handle.file.sizeBytes, x)
      } catch {
        // refused, no memory, or a manifest that cannot be read: this handle is read in
        // JavaScript, whose reads report what is wrong
      }
    }
    return h
  }

  /** Whether the native read path may answer "no xattrs" for regular files (not with a tape tier: user.bfs.residency). */
  get virtualXattrs(): boolean {
    return !!this.opts.tape
  }

  /** The store keys of the units file `i` of `v` reads (its resolved block map), in file order. */
  private fileUnits(v: GenView, i: number): string[] {
    return extentUnits(this.repo, v.extents(i), v.entry(v.leader(i)).size)
  }

  /** The tape readahead over `v`'s tree (null when off). */
  private aheadOf(v: GenView): TreeAhead | null {
    const units = this.opts.tapeReadaheadUnits ?? DEFAULT_TAPE_READAHEAD_UNITS
    if (units <= 0) return null
    let a = this.treeAhead.get(v)
    if (!a) {
      const t = this.opts.tape!
      a = new TreeAhead(
        {
          cat: v.cat,
          unitsOnTape: (i) => {
            try {
              return unitsOnTape(t, this.fileUnits(v, i))
            } catch {
              return [] // a readahead is only a hint: the reads say what is wrong
            }
          },
          ask: (keys) => {
            try {
              t.prefetch(keys, { ahead: true })
            } catch {
              // only a hint
            }
          },
        },
        { maxUnits: units, maxBytes: t.cacheLimitBytes / 4 },
      )
      this.treeAhead.set(v, a)
    }
    return a
  }

  /**
   * A handle number not in use. They cross fuse-native as 32-bit ints, so after 2^31 - 1
   * opens they start again at 1, skipping those still open: a number is reused only after
   * its release, and the kernel sends no read of a handle after its release.
   */
  private newHandle(): number {
    do this.nextHandle = this.nextHandle >= MAX_HANDLE ? 1 : this.nextHandle + 1
    while (this.handles.has(this.nextHandle))
    return this.nextHandle
  }

  release(handle: number): void {
    const h = this.handles.get(handle)
    if (h) this.tapeReads?.released(h)
    this.handles.delete(handle)
    this.native?.release(handle)
  }

  /**
   * Whether close(2) should reach flush() (the adapter registers a FUSE flush only then):
   * with a tape tier, a reader interrupted while it waits for a recall closes its file,
   * and the flush is the one message that says so in time (native-notes/tape.md,
   * "Interrupting a read"). Without one, a close costs no round trip to JavaScript.
   */
  get cancelsOnFlush(): boolean {
    return !!this.opts.tape
  }

  /** A close(2) of a descriptor of `handle` (FUSE_FLUSH): TapeReads.flush (vfs/tapereads.ts) says what it gives up; null when it did nothing. */
  flush(handle: number): { reads: number; cancelled: number } | null {
    return this.tapeReads?.flush(this.handles.get(handle)) ?? null
  }

  /** With a tape tier: the reads that a flush or the kernel's interrupt may give up (vfs/tapereads.ts). */
  private readonly tapeReads: TapeReads<Handle> | null

  /** The unit keys of an open handle's file (remembered for the handle). */
  private keysOf(h: Handle): string[] {
    if (!h.keys) {
      try {
        h.keys = this.fileUnits(h.view, h.index)
      } catch {
        h.keys = [] // a map that cannot be read: its reads say what is wrong
      }
    }
    return h.keys
  }

  private native: NativeReads | null = null

  /** Lets a native path serve reads of handles opened from now on (and units opened so far). */
  attachNative(n: NativeReads): void {
    this.native = n
    this.reader.attachNative(n)
  }

  /**
   * Reads up to `len` bytes at `pos` into `dst`; returns the count (0 at EOF). Holes read
   * as zeros. Sequential readers get the next frames prefetched.
   */
  async read(handle: number, dst: Buffer, len: number, pos: number, req?: InterruptibleRead): Promise<number> {
    const h = this.handles.get(handle)
    if (!h) throw new VfsError('EBADF')
    if (this.tapeReads) return this.tapeReads.read(this.reader, h, dst, len, pos, req)
    try {
      return await this.reader.read(h.file, dst, len, pos)
    } catch (err) {
      throw Object.assign(new VfsError('EIO'), { cause: err })
    }
  }

  /** The reader under its old name (cli/mount.ts's stats line reads frames.stats and frames.openUnitCount). */
  get frames(): AsyncBlockReader {
    return this.reader
  }

  /** From now on, load each viewed generation's seek tables in the background (call once mounted). */
  startWarming(): void {
    this.warming = true
    if (this.opts.generation !== undefined && this.views.has(this.opts.generation)) this.reader.warm(this.opts.generation)
  }

  private warming = false

  async close(): Promise<void> {
    await this.reader.close()
    await this.opts.onClose?.()
  }
}

/** The largest handle number (fuse-native passes them as int32). */
const MAX_HANDLE = 0x7fffffff


/** by-date/ name of a generation: its ISO 8601 start time ('2026-11-22T04:28:01.123Z'), with '+genN' only if two generations share a millisecond. */
export function dateName(m: Manifest, all: Manifest[]): string {
  return all.some((o) => o !== m && o.time === m.time) ? `${m.time}+gen${m.id}` : m.time
}
