/**
 * The streaming file backup of format 2 (native-notes/format.md §2.20.3 step 4–5): the source
 * tree is walked depth first, one directory at a time; each directory's listing (sorted
 * bytewise) is merged with the previous generation's, read lazily page by page (PrevCursor);
 * unchanged files copy ord, map, dataBlocks and xattrs from their previous entry; new and
 * changed files are stored through the stream (units) and get a map (inline or map pieces);
 * a directory is written when its subtree is done (post-order, TreeWriter), so only the open
 * path is in memory, never the tree.
 *
 * Changed files are block-incrementals against their previous map; hard-linked entries are
 * flagged `linked` and counted in the links table. Step 1 limits (native-notes/v2-backup.md):
 * whole hashes files read for the block-incremental, links rows in memory.
 * Excludes (issue 17) as format 1's: exclude.ts; --one-file-system as format 1's (a
 * directory on another filesystem is stored, empty, and not walked); --group as format 1's
 * (format.md §2.14.2: files outside the group are not listed, directories that keep nothing
 * and are not in the group are left out, on the group's own chain).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as native from '../../native/index.js'
import { BLOCK_BYTES } from '../../codec/hash.js'
import type { Extent } from '../../format/v2/common.js'
import { type Entry2, DIR_MAX_ENTRIES, E_CHANGED_WHILE_READ, E_LINKED, FileType, newEntry2 } from '../../format/v2/dir.js'
import { compareIdentity, type Identity, type PieceRef } from '../../format/v2/common.js'
import { type LinkRow, TableKind } from '../../format/v2/idtable.js'
import { IdTableReader, IdTableWriter } from '../../pieces/idtables.js'
import type { ManifestV2 } from '../../format/v2/records.js'
import { MapWriter, type StoredMap } from '../../pieces/maps.js'
import { Workarounds as Unreadable } from '../../pieces/reader.js'
import { type Workarounds, isPieceFailure } from '../../pieces/reader.js'
import { type DirRef, PrevCursor, TreeReader } from '../../pieces/tree-reader.js'
import { TreeWriter } from '../../pieces/tree-writer.js'
import { type CommitOptions, type StreamSettings, streamGeometry } from '../commit/index.js'
import { type Commit2Options, type Commit2Result, type Generation2Context, writeGeneration2 } from '../commit/generation2.js'
import { BfsError } from '../errors.js'
import { FormatError } from '../../format/errors.js'
import { type BaseObject, storeObject } from '../objects.js'
import { MAX_DELTA_DEPTH } from '../../format/maps.js'
import { MapReader } from '../../pieces/maps.js'
import { StreamSource2 } from './read2.js'
import { openTreeFile } from '../source.js'
import { compileExcludes, compileTagRules, type TagRules } from '../exclude.js'
import { S_IFMT, TYPE_OF, changedWhileRead, fillMeta, sameVersion, type BackupProgress } from '../backup.js'
import { READ_FILE_INFO, READ_FILE_MAX_BLOCKS, READ_FILE_SHORT, READ_FILE_XATTRS, ReadFileStep } from '../../native/index.js'
import type { Repo2 } from './repo2.js'
import { Dedup, StreamDigest, contentDigest, fileDigest } from './dedup.js'
import { BI_REASON_TEXT, type OnlineCapture } from '../online.js'
import { type Online2Options, foldOverlay, withCapture2 } from './online2.js'
import type { Group } from '../groups.js'

export interface Backup2Options extends Commit2Options, StreamSettings, Online2Options {
  source: string
  /** Warnings, and progress (format 1's BackupProgress, from the counters the walk keeps). */
  reporter?: CommitOptions['reporter'] & { progress?(p: BackupProgress): void }
  /** Read every file even if unchanged. */
  full?: boolean
  /** `--exclude` patterns (exclude.ts), and `--exclude-file`'s. */
  excludes?: string[]
  /** `--exclude-caches`, `--exclude-if-present NAME`. */
  tagRules?: TagRules
  /** `--one-file-system`: a directory on another filesystem than the source's (a mount point) is stored as an empty directory, not walked (format 1's rule). */
  oneFileSystem?: boolean
  /** `--group`: only this group's files (format.md §2.14.2), on the group's own chain (manifest `group`). */
  group?: Group
}

const SLASH = Buffer.from('/')

/**
 * Small new files are read on the threadpool, a directory's at a time (native
 * readFilesAsync: open, fstat, read, fstat, flistxattr, close in one call per chunk),
 * instead of one synchronous call per system call here: the per-file path cost a 100k-file
 * full backup most of its time (native-notes/v2-backup.md "Measured"). A window is at most
 * WINDOW entries and WINDOW_BYTES of such files' blocks (memory bounded, whatever the
 * directory), ends after a subdirectory (nothing of it is held while the walk is below), and
 * its reads go out in chunks of CHUNK files at once: the first chunk is stored while the
 * next ones are read.
 */
const WINDOW = 2048
const WINDOW_BYTES = 8 << 20
const CHUNK = 128
/** Directory listings read ahead of the walk (in walk order) on the threadpool. */
const SCAN_AHEAD = 4
/**
 * Only directories whose st_size is at least this are listed on the threadpool (ahead of
 * the walk); smaller ones are listed synchronously when the walk gets there, as format 1
 * does. A threadpool round trip (queue, futex wake-up, completion through the event loop,
 * the walk waiting for it) costs more than listing and lstat-ing a few dozen page-cached
 * entries: the Linux tree (~5,000 directories of ~15 entries) spent half its no-change
 * backup waiting (native-notes/v2-backup.md, "Incremental on the Linux tree"). A directory
 * of this size has some hundreds of entries (ext4: 4 KiB blocks of ~30-byte records; tmpfs
 * 20 bytes an entry; btrfs twice the names' bytes).
 */
const SCAN_ASYNC_MIN_BYTES = 8192

/** One chunk of a window's small files, read by readFilesAsync. */
interface ReadChunk {
  done: Promise<void>
  out: Buffer
  recs: Float64Array
  info: Int32Array
  slots: Uint32Array
  ends: Uint32Array
  names: Buffer
  /** Whether the blocks went into the stream yet (place), and each file's extents there. */
  placed: boolean
  extents: Extent[][]
  /** Per file: its content digest (dedup candidates read whole), and the map of an already stored copy (nothing placed). */
  digests: Array<Buffer | null>
  hits: Array<StoredMap | null>
}

/** Where a file of a window was read: its chunk and its index in it. */
interface PreRead {
  chunk: ReadChunk
  j: number
}

/** A hard-linked file stored in this run: its map, and the size, times and flags of the name read (what the map holds). */
type LinkedCopy = StoredMap & Pick<Entry2, 'size' | 'mtimeSec' | 'mtimeNsec' | 'ctimeSec' | 'ctimeNsec' | 'flags'>

/** A directory whose subdirectories are scanned ahead: its listing in walk order, and how far. */
interface ScanFrame {
  dir: Buffer
  /** The directory's path from the source (for excludes). */
  rel: string
  /** `--group`: the directory is in the group (it, or a directory above it, matches an include): everything below it is; always true without a group. */
  included: boolean
  /** A tagged directory (--exclude-caches, --exclude-if-present): the only entries kept, its tag files. */
  onlyTags: Set<number> | null
  names: Buffer[]
  st: Float64Array
  order: number[]
  pos: number
}

/**
 * Whether an entry equals a listing's stat record o in every field fillMeta takes (the type
 * aside), except the atime: an access alone does not make an entry changed (format.md §2.20.3
 * step 4). Reading a file or listing a directory moves its atime (relatime: once a day), and
 * so does bfs's own readlink of every symlink; comparing it rewrote the directory pieces of
 * everything read since the last backup, and their parents up to the root, in a backup where
 * nothing changed. The entry keeps the atime of the backup that last stored it for another
 * reason (Borg stores no atime at all by default).
 */
function sameStat(e: Entry2, st: Float64Array, o: number): boolean {
  return e.ctimeNsec === st[o + native.S_CTIME_NSEC] && e.ctimeSec === st[o + native.S_CTIME_SEC] && e.mtimeNsec === st[o + native.S_MTIME_NSEC] && e.mtimeSec === st[o + native.S_MTIME_SEC] &&
    e.srcInoLo === st[o + native.S_INO_LO] && e.srcInoHi === st[o + native.S_INO_HI] && e.srcDev === st[o + native.S_DEV] &&
    e.mode === (st[o + native.S_MODE]! & 0o7777) &&
    e.uid === st[o + native.S_UID] && e.gid === st[o + native.S_GID] &&
    (e.type === FileType.Dir || e.nlink === st[o + native.S_NLINK]) &&
    (e.type !== FileType.File && e.type !== FileType.Symlink ? true : e.size === st[o + native.S_SIZE]) &&
    (e.type !== FileType.CharDev && e.type !== FileType.BlockDev ? true : e.rdevMajor === st[o + native.S_RDEV_MAJOR] && e.rdevMinor === st[o + native.S_RDEV_MINOR])
}

/** The same directory piece and entry count. */
function sameDirRef(a: DirRef | null, b: DirRef | null): boolean {
  if (!a || !b) return a === b
  const x = a.child
  const y = b.child
  return a.entries === b.entries && (x === y || (x.run === y.run && x.pack === y.pack && x.offset === y.offset && x.storedLen === y.storedLen && x.id.equals(y.id)))
}

/** sameVersion against a previous entry that may be missing. */
function unchanged(prev: Entry2 | null, e: Entry2): prev is Entry2 {
  return !!prev && sameVersion(prev, e)
}

function xattrsOf(p: Buffer): Entry2['xattrs'] {
  try {
    const x = native.getXattrs(p)
    return x.length ? x.sort((a, b) => Buffer.compare(a[0], b[0])) : null
  } catch {
    return null
  }
}

/** Backs up a directory tree as a new format 2 generation, incremental to the newest one of the same source. */
export async function backupTree2(repo: Repo2, opts: Backup2Options): Promise<Commit2Result> {
  const source = path.resolve(opts.source)
  let rootSt: Float64Array
  try {
    rootSt = native.lstatRecord(source)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new BfsError('BAD_INPUT', code === 'ENOENT' ? `source ${source} does not exist` : `cannot read source ${source}: ${code ?? (err as Error).message}`)
  }
  if ((rootSt[native.S_MODE]! & S_IFMT) !== 0o040000) throw new BfsError('BAD_INPUT', `source ${source} is not a directory (format 2 repositories take file backups only so far)`)
  const { unitBlocks, frameBlocks } = streamGeometry(opts, 'files')
  const reporter = opts.reporter ?? { warn: () => undefined }
  // parents are per host and source (format.md §2.20.3 step 3)
  const host = opts.host ?? os.hostname()
  const group = opts.group?.name ?? null
  return writeGeneration2(repo, opts, {
    source,
    kind: 'files',
    group,
    unitBlocks,
    frameBlocks,
    level: opts.level,
    choosePrev: (r) => {
      if (opts.full) return null
      for (const id of r.generationIds().reverse()) {
        try {
          const m = r.manifest(id)
          if (m.kind === 'files' && m.sources.length === 1 && m.sources[0]!.path === source && m.host === host && m.group === group) return m
        } catch (err) {
          if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
          reporter.warn(`gen${id} cannot be the base of this backup: ${err.message}`)
        }
      }
      return null
    },
    build: (ctx) => new Walk2(repo, ctx, source, rootSt, opts, reporter).run(),
  })
}

/**
 * PrevCursor with §2.20.10's fallback: a previous piece that cannot be read (damaged,
 * missing, EIO) ends the merge for this directory; the rest of its entries are new (stored
 * afresh) and the failure is counted.
 */
class SafeCursor {
  private c: PrevCursor | null
  /** Kept for release() after a failure set `c` to null. */
  private readonly cursor: PrevCursor

  constructor(reader: TreeReader, dir: DirRef | null, private readonly unreadable: Workarounds) {
    this.c = this.cursor = new PrevCursor(reader, dir)
  }

  /** The previous entry of `name` when known without waiting (see PrevCursor.seekSync), else undefined: call seek(). */
  seekSync(name: Buffer): Entry2 | null | undefined {
    try {
      return this.c ? this.c.seekSync(name) : null
    } catch (err) {
      // (pages read synchronously: a piece failure surfaces here)
      if (!isPieceFailure(err)) throw err
      this.unreadable.note(err)
      this.c = null
      return null
    }
  }

  async seek(name: Buffer): Promise<Entry2 | null> {
    try {
      return this.c ? await this.c.seek(name) : null
    } catch (err) {
      if (!isPieceFailure(err)) throw err
      this.unreadable.note(err)
      this.c = null
      return null
    }
  }

  /** Unpins the previous pages read (the directory is written). */
  release(): void {
    this.cursor.release()
  }

  /** Whether entries of the previous listing were passed over (deleted since). */
  async finish(): Promise<number> {
    try {
      return this.c ? (this.c.finishSync() ?? (await this.c.finish())) : 1
    } catch (err) {
      if (!isPieceFailure(err)) throw err
      this.unreadable.note(err)
      return 1
    }
  }
}

class Walk2 {
  private readonly tree: TreeWriter
  private readonly maps: MapWriter
  private readonly mapReader: MapReader
  private readonly reader: TreeReader
  private readonly streams: StreamSource2
  /** Block hashes of the streams bases' extents name (whole files for now: see v2-backup.md). */
  private readonly hashes = new Map<number, Buffer>()
  /**
   * The links table being collected (§2.15): one row per identity of a `linked` entry
   * (source nlink > 1), its group ord carried from the previous generation's table or
   * allocated now. Memory: proportional to the hard-linked files (a spill to a sorted
   * temporary file is a next step).
   */
  private readonly linkRows = new Map<string, LinkRow>()
  /** dev:inoHi:inoLo of each local directory holding the repository's bytes: never backed up (the repository may sit inside the source). */
  private readonly keepOut = new Set<string>()
  private readonly prevLinks: PieceRef | null
  private readonly idReader: IdTableReader
  /** Previous maps or hashes that could not be read: those files were stored whole. */
  private readonly noBase = new Unreadable()
  /** Dedup hits whose map could not be read: those files were stored. */
  private readonly noDedup = new Unreadable()
  private nextOrd: number
  private readonly warnings: string[] = []
  private readonly skippedPaths: string[] = []
  /**
   * Hard-linked files stored in this run (dev:ino → map): stored once. With the map, the size,
   * times and changed-while-read flag of the name that was read: the other names take them
   * (their scanned stat may be newer than the bytes stored — with --online, the T0 size and
   * times describe the map, not the live stat).
   */
  private readonly links = new Map<string, LinkedCopy>()
  /** Listings read ahead (path → scan), the frames they come from (the open path), the window's reads in flight. */
  private readonly scans = new Map<string, Promise<native.DirScan>>()
  private readonly frames: ScanFrame[] = []
  /**
   * Chunks whose reads are done and whose files were stored, for the next reads: fresh
   * memory costs a page fault per 4 KiB touched (a third of the reads' time here), reused
   * memory does not. At most a window's worth (WINDOW_BYTES, WINDOW / CHUNK chunks) is kept.
   */
  private readonly freeChunks: ReadChunk[] = []
  private lastProgress = 0
  private readonly stats = { entries: 0, files: 0, dirs: 0, logicalBytes: 0, newFiles: 0, changedFiles: 0, unchangedFiles: 0, skipped: 0, bytesRead: 0, changedDirs: 0 }
  /** Content dedup (§2.17): lookups, and this run's index objects. */
  private readonly dedup: Dedup
  /** `--online`: the capture (null without); files stored with blocks read as zeros so far (their order: the images' order in the stream). */
  private online: OnlineCapture | null = null
  private onlineStored = 0

  constructor(
    private readonly repo: Repo2,
    private readonly ctx: Generation2Context,
    private readonly source: string,
    private readonly rootSt: Float64Array,
    private readonly opts: Backup2Options,
    private readonly reporter: { warn(m: string): void; progress?(p: BackupProgress): void },
  ) {
    this.tree = new TreeWriter(ctx.packs, ctx.pieces, { xxh64: this.repo.pageCut })
    this.maps = new MapWriter(ctx.packs, ctx.pieces)
    this.reader = new TreeReader(ctx.pieces)
    // the previous generation's files as they were at its T0 (its BI overlays laid over their maps: §2.16)
    this.mapReader = new MapReader(ctx.pieces, ctx.prev?.biIndex ?? null)
    this.streams = new StreamSource2(repo)
    this.dedup = new Dedup(repo, ctx.run)
    this.prevLinks = ctx.prev?.links ?? null
    for (const dir of repo.store.localRoots()) {
      const st = native.lstatRecord(dir)
      this.keepOut.add(`${st[native.S_DEV]}:${st[native.S_INO_HI]}:${st[native.S_INO_LO]}`)
    }
    this.idReader = new IdTableReader(ctx.pieces, TableKind.Links)
    this.nextOrd = ctx.prev?.sources[0]?.nextOrd ?? 1
    const excludes = [...(opts.excludes ?? []), ...(opts.group?.excludes ?? [])]
    this.isExcluded = excludes.length ? compileExcludes(excludes) : null
    this.isIncluded = opts.group ? compileExcludes(opts.group.includes) : null
    this.tagged = compileTagRules(opts.tagRules ?? {})
  }

  private readonly isExcluded: ((rel: string, isDir: boolean) => boolean) | null
  /** `--group`: whether a path matches one of the group's includes (null without a group: everything is in). */
  private readonly isIncluded: ((rel: string, isDir: boolean) => boolean) | null
  private readonly tagged: ReturnType<typeof compileTagRules>
  /** `--group`: non-directory entries kept so far (none at the end: the backup fails). */
  private kept = 0

  /**
   * Whether entry i of a directory's listing is left out by an exclude or a tag (`isDir`: it
   * is a directory), or, with --group, a non-directory outside the group (not read, not listed).
   */
  private leftOut(f: ScanFrame, i: number, isDir: boolean): boolean {
    if (f.onlyTags && !f.onlyTags.has(i)) return true
    if (!this.isExcluded && (isDir || f.included)) return false
    const name = f.names[i]!.toString('latin1')
    const rel = f.rel ? `${f.rel}/${name}` : name
    if (this.isExcluded?.(rel, isDir)) return true
    return !isDir && !f.included && !this.isIncluded!(rel, false)
  }

  /** At most every 100 ms, after a window of entries (one clock read per window). */
  private progress(rel: string, name: Buffer): void {
    const now = Date.now()
    if (now - this.lastProgress < 100) return
    this.lastProgress = now
    const prev = this.ctx.prev?.stats as Record<string, number> | undefined
    this.reporter.progress!({
      entries: this.stats.entries, bytesRead: this.stats.bytesRead, storedBytes: 0, path: rel ? `${rel}/${name.toString()}` : name.toString(),
      files: this.stats.files, bytes: this.stats.logicalBytes, expectedFiles: prev?.files ?? null, expectedBytes: prev?.logicalBytes ?? null,
    })
  }

  private warn(m: string): void {
    this.warnings.push(m)
    this.reporter.warn(m)
  }

  private skip(rel: string, why: string): void {
    this.skippedPaths.push(rel)
    this.stats.skipped++
    this.warn(`skipped ${rel || '.'}: ${why}`)
  }

  async run() {
    const root = newEntry2(FileType.Dir, Buffer.alloc(0))
    // --online: every file is read (on this thread) with the capture on; then writers stop
    // paying, and the capture's records of the files stored go into the stream, the packs
    // and the BI index
    const { out: r, captured } = await withCapture2(this.repo, this.opts, this.source, (m) => this.warn(m), this.ctx, this.maps, async (cap) => {
      this.online = cap
      const dir = cap?.captureDir // (never backed up)
      if (dir) {
        const st = native.lstatRecord(dir)
        this.keepOut.add(`${st[native.S_DEV]}:${st[native.S_INO_HI]}:${st[native.S_INO_LO]}`)
      }
      fillMeta(root, this.rootSt, 0)
      root.ord = 0
      const prevRoot = this.ctx.prev?.rootEntry ?? null
      root.xattrs = unchanged(prevRoot, root) ? prevRoot.xattrs : xattrsOf(Buffer.from(this.source))
      const out = await this.dir(Buffer.from(this.source), '', prevRoot?.dir ?? null, !this.isIncluded)
      // --group (format 1's rule): a group that keeps no file commits nothing
      if (this.opts.group && this.kept === 0) throw new BfsError('BAD_INPUT', `group '${this.opts.group.name}' matches no files in ${this.source}; nothing was committed`)
      return out
    })
    root.dir = r.ref
    root.nlink = 2 + r.subdirs
    if (this.noBase.count) this.warn(`${this.noBase.count} changed file${this.noBase.count > 1 ? 's were' : ' was'} stored whole: ${this.noBase.count > 1 ? 'their' : 'its'} previous map or block hashes could not be read (${this.noBase.messages[0] ?? ''})`)
    for (const [what, w] of [['directory', this.tree.unreadable], ['map', this.maps.unreadable]] as const) {
      if (w.count) this.warn(`${w.count} ${what} piece${w.count > 1 ? 's' : ''} of the previous generation could not be read and ${w.count > 1 ? 'were' : 'was'} written afresh (${w.messages[0] ?? ''})`)
    }
    const links = await this.linksTable()
    // §2.20.3 step 6: the run's last dedup object, before the manifest
    this.dedup.finish()
    if (this.noDedup.count) this.warn(`${this.noDedup.count} file${this.noDedup.count > 1 ? 's' : ''} already stored ${this.noDedup.count > 1 ? 'were' : 'was'} stored again: the stored copy's map could not be read (${this.noDedup.messages[0] ?? ''})`)
    if (this.dedup.problems.length) this.warn(`dedup index: ${this.dedup.problems.length} object${this.dedup.problems.length > 1 ? 's or pages' : ' or page'} could not be read and ${this.dedup.problems.length > 1 ? 'were' : 'was'} passed over (${this.dedup.problems[0]})`)
    const d = this.dedup.stats
    const { stats: biStats, ...bi } = captured
    return {
      rootEntry: root, links, nextOrd: this.nextOrd,
      stats: { ...this.stats, ...this.tree.stats, mapPieces: this.maps.stats.written, dedupHits: d.hits, dedupBytes: d.bytes, dedupIndexed: d.indexed, dedupPagesRead: d.pages, ...biStats },
      warnings: this.warnings, skippedPaths: this.skippedPaths,
      ...bi,
    }
  }

  /** --online: the capture when it runs and the file is on the source's filesystem (which the mark covers), else null. */
  private captureFor(e: Entry2): OnlineCapture | null {
    return this.online?.active && e.srcDev === this.rootSt[native.S_DEV] ? this.online : null
  }

  /**
   * --online: the file as it was at T0 — its size and times then (its bytes are read through
   * the capture). Lists it as not covered when writes to it raise no event (a writable fd or
   * shared mapping from before T0) or its inode was born after T0 (format 1's atT0).
   */
  private atT0(cap: OnlineCapture, fd: number, e: Entry2, rel: string): void {
    const t0 = cap.t0Stat(fd)
    this.stats.logicalBytes += t0.sizeBytes - e.size
    e.size = t0.sizeBytes
    e.mtimeSec = t0.mtimeSec
    e.mtimeNsec = t0.mtimeNsec
    e.ctimeSec = t0.ctimeSec
    e.ctimeNsec = t0.ctimeNsec
    const born = fs.fstatSync(fd, { bigint: true }).birthtimeNs
    const why = t0.uncovered ? (BI_REASON_TEXT[t0.uncovered] ?? `reason ${t0.uncovered}`) : born > cap.t0Ns ? 'created or replaced after T0' : ''
    if (why) {
      e.flags |= E_CHANGED_WHILE_READ
      cap.uncovered(rel, why)
    }
  }

  /** An unchanged file kept as the previous generation has it, its BI overlay folded in (foldOverlay); null: read it again. */
  private async folded(old: Entry2): Promise<Entry2 | null> {
    // (a null is counted by baseOf, which fails the same way when the file is read again)
    return old.type === FileType.File ? foldOverlay(this.mapReader, this.maps, old) : old
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
  }

  /** Whether entry o of a listing is a directory the walk goes into. */
  private isWalkedDir(st: Float64Array, o: number): boolean {
    return !st[o + native.S_ERRNO] && (st[o + native.S_MODE]! & S_IFMT) === 0o040000 && !this.keepOut.has(`${st[o + native.S_DEV]}:${st[o + native.S_INO_HI]}:${st[o + native.S_INO_LO]}`)
  }

  /** `--one-file-system`: whether entry o of a listing is on another filesystem than the source (a directory there is not walked). */
  private otherFs(st: Float64Array, o: number): boolean {
    return !!this.opts.oneFileSystem && st[o + native.S_DEV] !== this.rootSt[native.S_DEV]
  }

  /**
   * Starts listings of the next directories in walk order, up to SCAN_AHEAD held: the
   * innermost open directory's next subdirectories, then (it has none left) its parent's.
   */
  private scanAhead(): void {
    const F = native.STAT_FIELDS
    let d = this.frames.length - 1
    while (this.scans.size < SCAN_AHEAD && d >= 0) {
      const f = this.frames[d]!
      if (f.pos >= f.order.length) {
        d--
        continue
      }
      const k = f.order[f.pos++]!
      if (this.isWalkedDir(f.st, k * F) && !this.otherFs(f.st, k * F) && f.st[k * F + native.S_SIZE]! >= SCAN_ASYNC_MIN_BYTES && !this.leftOut(f, k, true)) this.startScan(Buffer.concat([f.dir, SLASH, f.names[k]!]))
    }
  }

  private startScan(p: Buffer): void {
    const pr = native.scanDirAsync(p)
    pr.catch(() => undefined) // taken when the walk gets there
    this.scans.set(p.toString('latin1'), pr)
  }

  /** The listing of `p`: read ahead, or now; `parent` (its frame and position) is moved past it. */
  private async scanOf(p: Buffer, parent: { frame: ScanFrame; k: number } | null): Promise<native.DirScan> {
    const key = p.toString('latin1')
    let pr = this.scans.get(key)
    if (pr) this.scans.delete(key)
    else {
      if (parent && parent.frame.pos <= parent.k) parent.frame.pos = parent.k + 1
      const big = parent ? parent.frame.st[parent.frame.order[parent.k]! * native.STAT_FIELDS + native.S_SIZE]! >= SCAN_ASYNC_MIN_BYTES : true
      if (!big) {
        this.scanAhead()
        return native.scanDir(p, true) // (throws as scanDirAsync rejects: the caller skips the directory)
      }
      pr = native.scanDirAsync(p)
    }
    this.scanAhead()
    return await pr
  }

  /** One directory, its subtree first: returns its DirRef (null when empty) and its number of subdirectories. */
  private async dir(p: Buffer, rel: string, prevDir: DirRef | null, included: boolean, parent: { frame: ScanFrame; k: number } | null = null): Promise<{ ref: DirRef | null; subdirs: number }> {
    this.checkAbort()
    this.stats.dirs++
    let scan: native.DirScan
    try {
      scan = await this.scanOf(p, parent)
    } catch (err) {
      this.skip(rel, `cannot list directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      return { ref: null, subdirs: 0 }
    }
    const names = scan.names
    const st = scan.stats
    const F = native.STAT_FIELDS
    // (scanDirAsync sorts on the threadpool: the sort here only checks, n − 1 comparisons)
    const order = names.map((_, i) => i).sort((a, b) => Buffer.compare(names[a]!, names[b]!))
    // the position in `order` of each entry taken (for the parent frame of subdirectories)
    const onlyTags = this.tagged?.(p, names, (i) => !st[i * F + native.S_ERRNO] && (st[i * F + native.S_MODE]! & S_IFMT) === 0o100000) ?? null
    const frame: ScanFrame = { dir: p, rel, included, onlyTags, names, st, order, pos: 0 }
    this.frames.push(frame)
    this.scanAhead()
    const cursor = new SafeCursor(this.reader, prevDir, this.tree.unreadable)
    const w = this.tree.openDir(prevDir)
    let subdirs = 0
    let changed = false
    /**
     * While every entry so far is the previous generation's own (same name, same encoding),
     * entries are held here rather than encoded: if the whole directory turns out so, its
     * previous ref is reused as it is. Up to DIR_MAX_ENTRIES (a bigger one is paged: the
     * writer compares page by page).
     */
    let same = prevDir !== null
    const held: Entry2[] = []
    const flushHeld = async (): Promise<void> => {
      same = false
      for (const h of held) await w.add(h)
      held.length = 0
    }
    const add = async (e: Entry2, isOld: boolean): Promise<void> => {
      if (same && isOld && held.length < DIR_MAX_ENTRIES) {
        held.push(e)
        return
      }
      if (same) await flushHeld()
      await w.add(e)
    }
    const small = READ_FILE_MAX_BLOCKS * BLOCK_BYTES
    const win: Array<{ k: number; type: FileType; old: Entry2 | null; pre: PreRead | null }> = []
    try {
      for (let k = 0; k < order.length; ) {
        // a window: the previous entries looked up, the small files to read sent to the threadpool
        win.length = 0
        const toRead: number[] = [] // indices into win
        let bytes = 0
        while (k < order.length && win.length < WINDOW && bytes < WINDOW_BYTES) {
          const i = order[k]!
          const o = i * F
          k++
          if (st[o + native.S_ERRNO]) continue // vanished between readdir and stat
          const type = TYPE_OF[st[o + native.S_MODE]! & S_IFMT] as FileType | undefined
          if (type === undefined) continue
          if (type === FileType.Dir && !this.isWalkedDir(st, o)) continue
          if (this.leftOut(frame, i, type === FileType.Dir)) continue
          let old = cursor.seekSync(names[i]!)
          if (old === undefined) old = await cursor.seek(names[i]!)
          win.push({ k: k - 1, type, old, pre: null })
          if (type === FileType.Dir) break
          if (type !== FileType.File) continue
          const size = st[o + native.S_SIZE]!
          // (hard-linked files go the general way: the first name met stores the data for all)
          // (--online: every file is read through the capture, on this thread)
          if (size <= 0 || size > small || st[o + native.S_NLINK]! > 1 || this.online?.active) continue
          if (!this.opts.full && old) {
            // unchanged (copied), or changed with a previous map (the block-incremental path)
            if (old.type === FileType.File && (old.map || (sameVersion(old, { type, srcDev: st[o + native.S_DEV]!, srcInoHi: st[o + native.S_INO_HI]!, srcInoLo: st[o + native.S_INO_LO]!, size, mtimeSec: st[o + native.S_MTIME_SEC]!, mtimeNsec: st[o + native.S_MTIME_NSEC]!, ctimeSec: st[o + native.S_CTIME_SEC]!, ctimeNsec: st[o + native.S_CTIME_NSEC]! } as Entry2) && !(old.flags & E_CHANGED_WHILE_READ)))) continue
          }
          toRead.push(win.length - 1)
          bytes += Math.ceil(size / BLOCK_BYTES) * BLOCK_BYTES
        }
        const chunks: ReadChunk[] = []
        for (let c = 0; c < toRead.length; c += CHUNK) chunks.push(this.readChunk(p, names, st, order, win, toRead.slice(c, c + CHUNK)))
        for (const x of win) {
          const i = order[x.k]!
          const o = i * F
          const type = x.type
          const old = x.old
          // an unchanged non-directory: its previous entry is the entry (nothing allocated, nothing read)
          // (a previous generation with BI overlays: the file's entry with them folded into its
          // map; null when they cannot be read: the file is read again)
          let kept: Entry2 | null = null
          if (old && type !== FileType.Dir && old.type === type && sameStat(old, st, o) &&
            (type === FileType.File ? !this.opts.full && !(old.flags & E_CHANGED_WHILE_READ) : type !== FileType.Symlink || old.target) &&
            (kept = type === FileType.File && this.ctx.prev?.biIndex ? await this.folded(old) : old)) {
            this.stats.entries++
            this.kept++
            if (type === FileType.File) {
              this.stats.files++
              this.stats.logicalBytes += old.size
              this.stats.unchangedFiles++
            }
            if (old.nlink > 1) await this.link(old)
            // --online: kept as stored, never read: writes to it from now on need no before-images
            if (type === FileType.File && this.online && this.captureFor(old)) this.online.keep(old.srcDev, old.srcInoHi, old.srcInoLo)
            if (kept !== old) {
              await add(kept, false)
              continue
            }
            if (same && held.length < DIR_MAX_ENTRIES) held.push(old)
            else await add(old, true)
            continue
          }
          const r = await this.entry(p, rel, frame, x, names[i]!, st, o)
          if (!r) {
            if (old) changed = true // (skipped, or --group: a directory left out, that the previous generation had)
            continue
          }
          if (!old) changed = true
          if (type === FileType.Dir) subdirs++
          else this.kept++
          await add(r.e, r.old)
        }
        for (const c of chunks) void c.done.then(() => this.freeChunks.length < WINDOW / CHUNK && this.freeChunks.push(c), () => undefined)
        if (this.reporter.progress && win.length) this.progress(rel, names[order[win[win.length - 1]!.k]!]!)
      }
    } finally {
      // (an error: the reads of the window still in flight finish into buffers nobody reads)
      const at = this.frames.lastIndexOf(frame)
      if (at >= 0) this.frames.length = at
    }
    // (the previous pages stay pinned until the directory is written: the DirWriter compares
    // against them. A failure before this point fails the whole backup.)
    try {
      if ((await cursor.finish()) > 0) changed = true
      if (changed) this.stats.changedDirs++
      if (same && !changed && held.length === prevDir!.entries) {
        // every entry is the previous one: the DirWriter would encode them all to find the
        // previous piece again (§2.13.3 rule 1); its ref is the answer
        this.tree.stats.dirs++
        this.tree.stats.reused++
        return { ref: prevDir, subdirs }
      }
      await flushHeld()
      const ref = await w.close()
      await this.ctx.packs.settle()
      return { ref, subdirs }
    } finally {
      cursor.release()
    }
  }

  /**
   * A new or changed entry of the listing (not an unchanged non-directory, which dir() takes
   * inline): a subdirectory walked, a file stored, a symlink read. The entry to add and
   * whether it is the previous one itself, or null when it is left out (skipped).
   * (Out of dir() so that dir(), the hot loop over unchanged entries, stays small: V8
   * compiled the whole of it again, 0.3–0.7 s each time, whenever one of these rarer paths
   * first ran after it was optimized — native-notes/v2-backup.md.)
   */
  private async entry(p: Buffer, rel: string, frame: ScanFrame, x: { k: number; type: FileType; old: Entry2 | null; pre: PreRead | null }, name: Buffer, st: Float64Array, o: number): Promise<{ e: Entry2; old: boolean } | null> {
    const type = x.type
    const old = x.old
    const full = Buffer.concat([p, SLASH, name])
    const childRel = rel ? `${rel}/${name.toString('latin1')}` : name.toString('latin1')
    const e = newEntry2(type, Buffer.from(name))
    fillMeta(e, st, o)
    e.ord = old && old.type === e.type ? old.ord : this.nextOrd++
    this.stats.entries++
    switch (type) {
      case FileType.Dir: {
        e.xattrs = unchanged(old, e) ? old.xattrs : xattrsOf(full)
        // --one-file-system: the mount point's own entry (the other filesystem's root), empty
        // --group: a directory is in the group when it, or one above it, matches an include
        const included = frame.included || this.isIncluded!(childRel, true)
        const sub = this.otherFs(st, o) ? (this.stats.dirs++, { ref: null, subdirs: 0 }) : await this.dir(full, childRel, old?.type === FileType.Dir ? old.dir : null, included, { frame, k: x.k })
        // --group: a directory outside the group that keeps nothing is left out
        if (!included && sub.ref === null) return null
        e.dir = sub.ref
        e.nlink = 2 + sub.subdirs
        if (old && old.type === FileType.Dir && old.nlink === e.nlink && old.xattrs === e.xattrs && sameStat(old, st, o) && sameDirRef(old.dir, e.dir)) return { e: old, old: true }
        break
      }
      case FileType.File:
        if (!(await this.file(e, full, childRel, old, x.pre))) return null
        break
      case FileType.Symlink:
        if (unchanged(old, e) && old.target) {
          e.target = old.target
          e.xattrs = old.xattrs
        } else {
          try {
            e.target = fs.readlinkSync(full, { encoding: 'buffer' })
          } catch (err) {
            this.skip(childRel, `cannot read symlink (${(err as NodeJS.ErrnoException).code})`)
            return null
          }
          e.xattrs = xattrsOf(full)
        }
        break
      default:
        e.xattrs = unchanged(old, e) ? old.xattrs : xattrsOf(full)
    }
    if (e.type !== FileType.Dir && e.nlink > 1) await this.link(e)
    return { e, old: false }
  }

  /** Sends one chunk of a window's small files to the threadpool; each file's `pre` says where its bytes will be. */
  private readChunk(p: Buffer, names: Buffer[], st: Float64Array, order: number[], win: Array<{ k: number; pre: PreRead | null }>, idx: number[]): ReadChunk {
    const F = native.STAT_FIELDS
    const n = idx.length
    let block = 0
    for (let j = 0; j < n; j++) block += Math.ceil(st[order[win[idx[j]!]!.k]! * F + native.S_SIZE]! / BLOCK_BYTES)
    let chunk = this.freeChunks.pop()
    if (!chunk || chunk.out.length < block * BLOCK_BYTES || chunk.ends.length < n) {
      const nn = Math.max(n, CHUNK)
      chunk = { done: Promise.resolve(), out: Buffer.allocUnsafe(Math.max(block, CHUNK) * BLOCK_BYTES), recs: new Float64Array(2 * F * nn), info: new Int32Array(READ_FILE_INFO * nn), slots: new Uint32Array(2 * nn), ends: new Uint32Array(nn), names: Buffer.allocUnsafe(nn * 64), placed: false, extents: [], digests: [], hits: [] }
    }
    const ends = chunk.ends.subarray(0, n)
    const slots = chunk.slots
    let len = 0
    block = 0
    for (let j = 0; j < n; j++) {
      const i = order[win[idx[j]!]!.k]!
      const name = names[i]!
      if (chunk.names.length < len + name.length) {
        const grown = Buffer.allocUnsafe(Math.max(2 * chunk.names.length, len + name.length))
        chunk.names.copy(grown, 0, 0, len)
        chunk.names = grown
      }
      name.copy(chunk.names, len)
      len += name.length
      ends[j] = len
      const blocks = Math.ceil(st[i * F + native.S_SIZE]! / BLOCK_BYTES)
      slots[2 * j] = block
      slots[2 * j + 1] = blocks
      block += blocks
    }
    const c = chunk
    c.placed = false
    c.extents = new Array<Extent[]>(n)
    c.digests = new Array<Buffer | null>(n).fill(null)
    c.hits = new Array<StoredMap | null>(n).fill(null)
    c.done = native.readFilesAsync(p, c.names.subarray(0, len), ends, slots, c.out, c.recs, c.info)
    c.done.catch(() => undefined) // awaited by the first file of the chunk stored
    for (let j = 0; j < n; j++) win[idx[j]!]!.pre = { chunk: c, j }
    return c
  }

  /** A hard-linked entry: flag `linked`, and count it in its identity's links row. */
  private async link(e: Entry2): Promise<void> {
    e.flags |= E_LINKED
    const key = `${e.srcDev}:${e.srcInoHi}:${e.srcInoLo}`
    let row = this.linkRows.get(key)
    if (!row) {
      const id: Identity = { srcDev: e.srcDev, srcInoHi: e.srcInoHi, srcInoLo: e.srcInoLo }
      let prev = null
      try {
        prev = this.prevLinks ? ((await this.idReader.find(this.prevLinks, id)) as LinkRow | null) : null
      } catch (err) {
        if (!isPieceFailure(err)) throw err
        this.noBase.note(err)
      }
      row = { ...id, source: 0, ord: prev && prev.source === 0 ? prev.ord : this.nextOrd++, nlinkInGen: 0 }
      this.linkRows.set(key, row)
    }
    row.nlinkInGen++
  }

  /** The links table, written once the walk is done (rows sorted by identity), or null. */
  private async linksTable(): Promise<PieceRef | null> {
    if (!this.linkRows.size) return null
    const w = new IdTableWriter(this.ctx.packs, this.ctx.pieces, TableKind.Links, this.prevLinks, this.repo.pageCut)
    for (const row of [...this.linkRows.values()].sort(compareIdentity)) await w.add(row)
    const t = await w.close()
    return t?.ref ?? null
  }

  /**
   * The previous version of a changed file as the base of a block-incremental: its resolved
   * extents and the block hashes of the streams they name; storeObject then stores only the
   * blocks whose hash differs. Depth is set at the limit so that storeObject returns the
   * whole resolved map (format 2 maps are never deltas, §2.13.1). Null (stored whole) when
   * the map or a hashes file cannot be read (§2.20.10).
   */
  private async baseOf(old: Entry2): Promise<BaseObject | null> {
    try {
      const ext = await this.mapReader.extents(old)
      for (const x of ext) if (!this.hashes.has(x.stream)) this.hashes.set(x.stream, this.streams.blockHashes(x.stream))
      return {
        gen: 0, index: 0, depth: MAX_DELTA_DEPTH, sizeBytes: old.size, hashAlg: this.repo.config.hashAlg, blockSeed: this.repo.blockSeed,
        extents: ext.map((x) => ({ fileBlock: x.fileBlock, count: x.count, gen: x.stream, streamBlock: x.streamBlock })),
        hashesOf: (g) => this.hashes.get(g)!,
      }
    } catch (err) {
      if (!isPieceFailure(err) && !(err instanceof BfsError && err.code === 'CORRUPT')) throw err
      this.noBase.note(err as Error)
      return null
    }
  }

  /**
   * A dedup hit, if its map can be used: a map reference must read (a damaged map piece of an
   * older generation is not copied into this one, §2.20.10: the file is stored instead).
   */
  private async usable(hit: StoredMap | null, size: number): Promise<StoredMap | null> {
    if (!hit) return null
    if (hit.map?.kind === 'ref') {
      try {
        await this.mapReader.extents({ map: hit.map, size, dataBlocks: hit.dataBlocks })
      } catch (err) {
        if (!isPieceFailure(err) && !(err instanceof BfsError && err.code === 'CORRUPT') && !(err instanceof FormatError)) throw err
        this.noDedup.note(err as Error)
        return null
      }
    }
    this.dedup.used(size)
    return hit
  }

  /**
   * A read chunk's blocks into the stream, in file order, all at once: every file read whole
   * gets its extents (all-zero blocks are holes), and runs contiguous in the chunk and in the
   * stream are copied in one go (one copy per 4 KiB file was a sixth of a full backup).
   */
  private async place(c: ReadChunk): Promise<void> {
    c.placed = true
    const stream = this.ctx.stream
    const n = c.extents.length
    // dedup (§2.17): a file read whole whose content is already stored takes that map; a
    // second copy within the chunk takes the first's extents; neither is placed
    const dups = new Map<string, number>()
    const dupOf: number[] = []
    for (let j = 0; j < n; j++) {
      const inf = j * READ_FILE_INFO
      if (c.info[inf + 1] !== ReadFileStep.Ok) continue
      const size = c.recs[j * 2 * native.STAT_FIELDS + native.S_SIZE]!
      if (!this.dedup.wants(size) || c.info[inf + 2] !== size || c.info[inf + 3]! & READ_FILE_SHORT) continue
      const digest = contentDigest(c.out, c.slots[2 * j]! * BLOCK_BYTES, size, this.dedup.contentKey)
      c.digests[j] = digest
      const hit = await this.usable(this.dedup.lookup(digest, size), size)
      if (hit) {
        c.hits[j] = hit
        continue
      }
      const k = digest.toString('latin1')
      const first = dups.get(k)
      if (first === undefined) dups.set(k, j)
      else {
        dupOf[j] = first
        this.dedup.used(size)
      }
    }
    let from = 0 // pending copy: chunk bytes [from, to) → stream space at `at`
    let to = 0
    let space: { buf: Buffer; offsetBytes: number; blocks: number } | null = null
    let used = 0 // blocks of `space` taken
    const flush = (): void => {
      if (to > from) c.out.copy(space!.buf, space!.offsetBytes + used * BLOCK_BYTES - (to - from), from, to)
      from = to
    }
    // frame placement (format.md §2.20.3): a file's data that fits in a frame is not split
    // across two, a larger file's is in phase with its frames; the slots skipped are zeros
    // nothing refers to (they compress to a few bytes)
    const F = stream.frameBlocks
    const at = (): number => stream.nextStreamBlock + (space ? used : 0)
    const pad = async (k: number): Promise<void> => {
      while (k > 0) {
        flush()
        if (!space || used === space.blocks) {
          if (space) stream.commit(used)
          space = await stream.reserve()
          used = 0
        }
        const m = Math.min(k, space.blocks - used)
        space.buf.fill(0, space.offsetBytes + used * BLOCK_BYTES, space.offsetBytes + (used + m) * BLOCK_BYTES)
        used += m
        k -= m
      }
    }
    for (let j = 0; j < n; j++) {
      const ext: Extent[] = []
      c.extents[j] = ext
      if (c.info[j * READ_FILE_INFO + 1] !== ReadFileStep.Ok || c.hits[j]) continue
      if (dupOf[j] !== undefined) {
        for (const x of c.extents[dupOf[j]!]!) ext.push({ ...x })
        continue
      }
      const zero = c.info[j * READ_FILE_INFO + 4]!
      const blocks = Math.ceil(c.recs[j * 2 * native.STAT_FIELDS + native.S_SIZE]! / BLOCK_BYTES)
      const first = c.slots[2 * j]!
      let data = 0
      for (let b = 0; b < blocks; b++) if (!(zero & (1 << b))) data++
      const inPhase = data > F
      if (!inPhase && data > 0) {
        const room = F - (at() % F)
        if (room < F && data > room) await pad(room)
      }
      for (let b = 0; b < blocks; b++) {
        if (zero & (1 << b)) continue
        if (inPhase) await pad((((b - at()) % F) + F) % F)
        const src = (first + b) * BLOCK_BYTES
        if (!space || used === space.blocks) {
          flush()
          if (space) stream.commit(used)
          space = await stream.reserve()
          used = 0
          from = to = src
        } else if (src !== to) {
          flush()
          from = to = src
        }
        to = src + BLOCK_BYTES
        const sb = stream.nextStreamBlock + used
        used++
        const last = ext[ext.length - 1]
        if (last && last.fileBlock + last.count === b && last.streamBlock + last.count === sb) last.count++
        else ext.push({ fileBlock: b, count: 1, stream: stream.genId, streamBlock: sb })
      }
    }
    if (space) {
      flush()
      stream.commit(used)
    }
  }

  /**
   * A small new file read on the threadpool (readChunk): its blocks copied into the stream
   * (all-zero blocks are holes), its map written. False: not read there (an error, or it
   * grew, or is sparse): the general path reads it again and reports what goes wrong.
   */
  private async storeRead(e: Entry2, full: Buffer, rel: string, old: Entry2 | null, pre: PreRead, linkKey: string): Promise<boolean> {
    const c = pre.chunk
    await c.done
    const F = native.STAT_FIELDS
    const inf = pre.j * READ_FILE_INFO
    if (c.info[inf + 1] !== ReadFileStep.Ok) return false
    const r1 = pre.j * 2 * F
    fillMeta(e, c.recs, r1)
    e.xattrs = c.info[inf + 3]! & READ_FILE_XATTRS ? xattrsOf(full) : null
    const size = e.size
    const got = c.info[inf + 2]!
    const short = (c.info[inf + 3]! & READ_FILE_SHORT) !== 0
    if (!c.placed) await this.place(c)
    const extents = c.extents[pre.j]!
    this.stats.bytesRead += got
    let consistent = true
    if (changedWhileRead(c.recs.subarray(r1, r1 + F), c.recs.subarray(r1 + F, r1 + 2 * F), short)) {
      e.flags |= E_CHANGED_WHILE_READ
      consistent = false
      this.warn(`${rel} changed while it was read; its copy may be inconsistent (it will be read again next time)`)
    }
    const hit = c.hits[pre.j]
    if (hit) {
      this.stored(e, old, linkKey, hit)
      return true
    }
    const m = await this.maps.write(extents, size, old?.type === FileType.File ? old : null)
    this.stored(e, old, linkKey, m)
    const digest = c.digests[pre.j]
    if (digest && consistent) this.dedup.add(digest, size, m)
    return true
  }

  /** A stored file's map on its entry, counted, and remembered for its other hard links. */
  private stored(e: Entry2, old: Entry2 | null, linkKey: string, m: StoredMap): void {
    e.map = m.map
    e.dataBlocks = m.dataBlocks
    if (old) this.stats.changedFiles++
    else this.stats.newFiles++
    if (linkKey) this.links.set(linkKey, { map: m.map, dataBlocks: m.dataBlocks, size: e.size, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, ctimeSec: e.ctimeSec, ctimeNsec: e.ctimeNsec, flags: e.flags })
  }

  /** Fills a file entry's map: copied from an unchanged previous entry, else stored. False: skipped. */
  private async file(e: Entry2, full: Buffer, rel: string, old: Entry2 | null, pre: PreRead | null = null): Promise<boolean> {
    this.checkAbort()
    this.stats.files++
    this.stats.logicalBytes += e.size
    const f = !this.opts.full && unchanged(old, e) && !(old.flags & E_CHANGED_WHILE_READ) ? await this.folded(old) : null
    if (f) {
      e.map = f.map
      e.dataBlocks = f.dataBlocks
      e.xattrs = f.xattrs
      this.stats.unchangedFiles++
      if (this.captureFor(e)) this.online!.keep(e.srcDev, e.srcInoHi, e.srcInoLo)
      return true
    }
    const linkKey = e.nlink > 1 ? `${e.srcDev}:${e.srcInoHi}:${e.srcInoLo}` : ''
    const linked = linkKey ? this.links.get(linkKey) : undefined
    if (linked) {
      e.map = linked.map
      e.dataBlocks = linked.dataBlocks
      this.stats.logicalBytes += linked.size - e.size
      e.size = linked.size
      e.mtimeSec = linked.mtimeSec
      e.mtimeNsec = linked.mtimeNsec
      e.ctimeSec = linked.ctimeSec
      e.ctimeNsec = linked.ctimeNsec
      e.flags |= linked.flags & E_CHANGED_WHILE_READ
      e.xattrs = xattrsOf(full)
      return true
    }
    if (pre && (await this.storeRead(e, full, rel, old, pre, linkKey))) return true
    // --online (the file on the source's filesystem): read through the capture, with an fd
    // whose reads raise no events
    const cap = this.captureFor(e)
    if (this.online?.active && !cap) {
      e.flags |= E_CHANGED_WHILE_READ
      this.online.uncovered(rel, 'on another filesystem than the source, read as it is')
    }
    let fd: number
    try {
      fd = cap ? cap.openQuiet(full) : openTreeFile(full)
    } catch (err) {
      this.skip(rel, `cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      this.stats.files--
      this.stats.logicalBytes -= e.size
      return false
    }
    try {
      const st1 = native.fstatRecord(fd)
      const scanned = e.size
      fillMeta(e, st1, 0)
      if (cap) {
        e.size = scanned // (logicalBytes counted it; atT0 counts the T0 size instead)
        this.atT0(cap, fd, e, rel)
      }
      e.xattrs = xattrsOf(full)
      const size = e.size
      let regions = size > 0 ? [0, size] : []
      // (with --online the whole T0 size is read: a hole punched since T0 was data then)
      if (!cap && size > 0 && st1[native.S_BLOCKS]! * 512 < size) regions = native.dataRegions(fd, size)
      // dedup (§2.17): the content's digest first; a copy already stored is referred to, nothing read again or stored
      // (not with --online: the digest would be of the live bytes, not of the file at T0)
      let digest: Buffer | null = null
      let streamed: StreamDigest | null = null
      if (cap) {
        // no dedup
      } else if (this.dedup.wants(size) && !this.dedup.maySize(size)) streamed = new StreamDigest(size, this.dedup.contentKey)
      else if (this.dedup.wants(size)) {
        digest = fileDigest(fd, size, this.dedup.contentKey)
        if (digest && changedWhileRead(st1, native.fstatRecord(fd), false)) digest = null
        const hit = digest ? await this.usable(this.dedup.lookup(digest, size), size) : null
        if (hit) {
          this.stats.bytesRead += size
          this.stored(e, old, linkKey, hit)
          return true
        }
      }
      const base = size > 0 && !this.opts.full && old?.type === FileType.File && old.map ? await this.baseOf(old) : null
      // --online: the live bytes, with the blocks changed since T0 (before this read) as zeros:
      // their before-images go into the BI log and the BI index, which readers lay over the map
      let logged = 0
      const hooks = cap ? { read: cap.readHook(fd, (n) => (logged += n)) } : streamed ? { onData: (b: Buffer, o: number, l: number, p: number) => streamed.update(b, o, l, p) } : {}
      const stored = size === 0 ? null : await storeObject(fd, size, regions, this.ctx.stream, base, { signal: this.opts.signal, fitFrames: true, ...hooks })
      if (streamed) digest = streamed.digest()
      if (stored) this.stats.bytesRead += stored.bytesRead
      if (logged) cap!.noteStored(e.srcDev, e.srcInoHi, e.srcInoLo, this.onlineStored++)
      // (--online: a change after T0 is not one: what was read is the file at T0)
      if (cap ? !!stored?.short : changedWhileRead(st1, native.fstatRecord(fd), !!stored?.short)) {
        digest = null
        e.flags |= E_CHANGED_WHILE_READ
        this.warn(`${rel} changed while it was read; its copy may be inconsistent (it will be read again next time)`)
      }
      const extents: Extent[] = (stored?.object.extents ?? []).filter((x) => x.gen !== 0).map((x) => ({ fileBlock: x.fileBlock, count: x.count, stream: x.gen, streamBlock: x.streamBlock }))
      const last = extents[extents.length - 1]
      if (last && last.fileBlock + last.count > Math.ceil(size / BLOCK_BYTES)) throw new Error(`internal: ${rel}: extents beyond the size`)
      // nothing differs from the previous version: its map stays (no piece written) — unless
      // the previous generation has BI overlays: the base was its overlaid (T0) content, which
      // its map alone does not hold; the map written from the base's extents folds them in
      const m = stored?.sameAsBase && old && !this.ctx.prev?.biIndex ? { map: old.map, dataBlocks: old.dataBlocks } : await this.maps.write(extents, size, old?.type === FileType.File ? old : null)
      this.stored(e, old, linkKey, m)
      if (digest) this.dedup.add(digest, size, m)
      return true
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (err instanceof BfsError || code === 'ENOSPC' || code === 'EDQUOT' || !code) throw err
      this.skip(rel, `read error (${code})`)
      return false
    } finally {
      fs.closeSync(fd)
    }
  }
}
