import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as native from '../native/index.js'
import { EntryType, ENTRY_FLAG_CHANGED_WHILE_READ, ENTRY_FLAG_LINK_FOLLOWER, ENTRY_FLAG_XATTRS, newEntry, ID_CTIME_NSEC, ID_CTIME_SEC, ID_DEV, ID_FIELDS, ID_FLAGS, ID_INO_HI, ID_INO_LO, ID_LEADER, ID_MTIME_NSEC, ID_MTIME_SEC, ID_OBJ_GEN, ID_OBJ_INDEX, ID_SIZE, ID_TYPE, type CatalogIndex, type Entry } from '../format/catalog.js'
import type { Extent, MapObject } from '../format/maps.js'
import type { GenStats, Manifest } from '../format/manifest.js'
import { BLOCK_BYTES, UNENCRYPTED_SEED } from '../codec/hash.js'
import type { Repository } from './repository.js'
import type { WorkerPool } from './pool.js'
import { emptyStats, newStream, writeGeneration, type CommitOptions, type CommitResult, type GenerationBody, type StreamSettings, type StreamWriter } from './commit/index.js'
import { storeObject, type BaseObject } from './objects.js'
import { ObjectResolver } from './resolve.js'
import { BfsError } from './errors.js'
import { compileExcludes, compileTagRules, type TagRules } from './exclude.js'
import type { Group } from './groups.js'
import { readPlanned, type ReadResult } from './worker.js'
import { openTreeFile } from './source.js'
import { BI_REASON_TEXT, OnlineCapture, type OnlineReport } from './online.js'

/** A backup's options: the commit's (label, threads, lock wait, signal), the stream's (unit, frame, level), and these. */
export interface BackupOptions extends CommitOptions, StreamSettings {
  source: string
  excludes?: string[]
  /** `--exclude-caches`, `--exclude-if-present NAME`: directories whose contents are skipped (exclude.ts). */
  tagRules?: TagRules
  /** Back up only this group's files, on the group's own chain. */
  group?: Group
  oneFileSystem?: boolean
  /** Ignore the previous generation: read everything. */
  full?: boolean
  /**
   * `--online`: read the tree as it was at T0 through a before-image capture
   * (native-notes/bilog.md). 'on' fails on a filesystem without pre-content events; 'auto'
   * backs up without it there and says so.
   */
  online?: 'on' | 'auto'
  /** With `online`: created once T0 is set (for scripts and tests). */
  t0File?: string
  /**
   * With `online`: how much lower (nice) bfs's own threads run while the capture is on, so that
   * the writers it holds up get a CPU first (default {@link DEFAULT_ONLINE_NICE}; 0: unchanged).
   */
  onlineNice?: number
  reporter?: BackupReporter
}

export type { OnlineReport } from './online.js'

export interface BackupProgress {
  entries: number
  bytesRead: number
  storedBytes: number
  path: string
  /** Files met so far and their logical bytes (unchanged ones included: GenStats' files and logicalBytes). */
  files: number
  bytes: number
  /** The same figures of the previous generation of the source, the estimate of the totals (null: none). */
  expectedFiles: number | null
  expectedBytes: number | null
}

/** The core never prints: warnings and progress go through this. */
export interface BackupReporter {
  warn(message: string): void
  /** What the run is doing that is not a problem (waiting for the lock), one line each. */
  note?(message: string): void
  progress?(p: BackupProgress): void
}

export interface BackupResult extends CommitResult {
  /** Volumes: where filesystems on the source were mounted while it was read. */
  mountPoints?: string[]
  /** `--online` runs. */
  online?: OnlineReport
}

export const S_IFMT = 0o170000
/** A stat mode's file type as an entry type (format 2's FileType has the same numbers). */
export const TYPE_OF: Record<number, EntryType> = {
  0o100000: EntryType.File,
  0o040000: EntryType.Dir,
  0o120000: EntryType.Symlink,
  0o020000: EntryType.CharDev,
  0o060000: EntryType.BlockDev,
  0o010000: EntryType.Fifo,
  0o140000: EntryType.Socket,
}
const SLASH = Buffer.from('/')

/** The stat fields an entry of either format keeps (format 1's Entry, format 2's Entry2): the same names, the same type numbers. */
export type StatFields = Pick<Entry, 'mode' | 'uid' | 'gid' | 'atimeSec' | 'atimeNsec' | 'mtimeSec' | 'mtimeNsec' | 'ctimeSec' | 'ctimeNsec' | 'srcDev' | 'srcInoHi' | 'srcInoLo' | 'nlink' | 'size' | 'rdevMajor' | 'rdevMinor'> & { type: number }

/** Fills an entry's metadata from an 18-field stat record at offset o. */
export function fillMeta(e: StatFields, st: Float64Array, o: number): void {
  e.mode = st[o + native.S_MODE]! & 0o7777
  e.uid = st[o + native.S_UID]!
  e.gid = st[o + native.S_GID]!
  e.atimeSec = st[o + native.S_ATIME_SEC]!
  e.atimeNsec = st[o + native.S_ATIME_NSEC]!
  e.mtimeSec = st[o + native.S_MTIME_SEC]!
  e.mtimeNsec = st[o + native.S_MTIME_NSEC]!
  e.ctimeSec = st[o + native.S_CTIME_SEC]!
  e.ctimeNsec = st[o + native.S_CTIME_NSEC]!
  e.srcDev = st[o + native.S_DEV]!
  e.srcInoHi = st[o + native.S_INO_HI]!
  e.srcInoLo = st[o + native.S_INO_LO]!
  e.nlink = st[o + native.S_NLINK]!
  if (e.type === EntryType.File || e.type === EntryType.Symlink) e.size = st[o + native.S_SIZE]!
  if (e.type === EntryType.CharDev || e.type === EntryType.BlockDev) {
    e.rdevMajor = st[o + native.S_RDEV_MAJOR]!
    e.rdevMinor = st[o + native.S_RDEV_MINOR]!
  }
}

/** Same inode, size, mtime and ctime: the incremental test (an unchanged file is not read again). */
export function sameVersion(a: StatFields, b: StatFields): boolean {
  return a.type === b.type && a.srcDev === b.srcDev && a.srcInoHi === b.srcInoHi && a.srcInoLo === b.srcInoLo && a.size === b.size &&
    a.mtimeSec === b.mtimeSec && a.mtimeNsec === b.mtimeNsec && a.ctimeSec === b.ctimeSec && a.ctimeNsec === b.ctimeNsec
}

/** Whether a file changed between two fstat records taken before and after it was read (or it read short). */
export function changedWhileRead(st1: Float64Array, st2: Float64Array, short: boolean): boolean {
  return short || st2[native.S_SIZE] !== st1[native.S_SIZE] || st2[native.S_MTIME_SEC] !== st1[native.S_MTIME_SEC] || st2[native.S_MTIME_NSEC] !== st1[native.S_MTIME_NSEC] || st2[native.S_CTIME_NSEC] !== st1[native.S_CTIME_NSEC]
}

/**
 * Which stored objects a new generation may refer to: those whose data (and base chain)
 * lies entirely in generations whose manifest reads. Anything else (data in a damaged or
 * missing generation, block maps that do not read) is read from the source afresh, so a
 * new generation never depends on damage. With no damaged generation an unchanged file
 * costs nothing here: an object can only refer to generations up to its own.
 */
export class SafeRefs {
  private readonly readable: Set<number>
  private readonly damaged: number[]
  private readonly minDamaged: number
  private readonly warned = new Set<string>()

  constructor(
    private readonly repo: Repository,
    private readonly resolver: ObjectResolver,
    private readonly warn: (message: string) => void,
  ) {
    this.readable = repo.readableIds()
    this.damaged = repo.damagedGenerations().map((d) => d.id)
    this.minDamaged = Math.min(Infinity, ...this.damaged)
  }

  /** Whether object `index` of gen `gen` may be referred to as it is (an unchanged file). */
  objectOk(gen: number, index: number): boolean {
    if (gen < this.minDamaged && this.readable.has(gen)) return true
    return this.check(gen, index) !== null
  }

  /** The object as a base for a block incremental, or null (read the file in full) when it depends on damage. */
  base(gen: number, index: number): BaseObject | null {
    const extents = this.check(gen, index)
    if (!extents) return null
    try {
      for (const g of new Set(extents.map((x) => x.gen))) this.repo.hashes(g) // read now: a damaged hashes file means no base
      const o = this.resolver.object(gen, index)
      return { gen, index, depth: o.depth, sizeBytes: o.sizeBytes, extents, hashesOf: (g) => this.repo.hashes(g), hashAlg: this.repo.config.hashAlg, blockSeed: UNENCRYPTED_SEED }
    } catch (err) {
      return this.unusable(err)
    }
  }

  /** The resolved extents of a usable object, or null. */
  private check(gen: number, index: number): Extent[] | null {
    let extents: Extent[]
    try {
      if (!this.readable.has(gen)) throw new BfsError('CORRUPT', `gen${gen} is damaged`)
      extents = this.resolver.resolve(gen, index)
    } catch (err) {
      return this.unusable(err)
    }
    for (const x of extents) {
      if (!this.readable.has(x.gen)) {
        this.warnOnce(`gen${x.gen}`, `gen${x.gen} is damaged: files whose data is there are read again`)
        return null
      }
    }
    return extents
  }

  private unusable(err: unknown): null {
    if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
    this.warnOnce(err.message, `${err.message}: files whose data depends on it are read again`)
    return null
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return
    this.warned.add(key)
    this.warn(message)
  }
}

/** Backs up a directory tree as a new file generation (incremental against the previous one from the same source). */
export async function backupTree(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  const source = path.resolve(opts.source)
  let rootSt: Float64Array
  try {
    rootSt = native.lstatRecord(source)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new BfsError('BAD_INPUT', code === 'ENOENT' ? `source ${source} does not exist` : `cannot read source ${source}: ${code ?? (err as Error).message}`)
  }
  if ((rootSt[native.S_MODE]! & S_IFMT) !== 0o040000) throw new BfsError('BAD_INPUT', `source ${source} is not a directory (use --volume for an image or device)`)
  try {
    fs.accessSync(source, fs.constants.R_OK | fs.constants.X_OK)
  } catch {
    throw new BfsError('BAD_INPUT', `cannot read source directory ${source}: permission denied`)
  }
  const reporter = opts.reporter ?? { warn: () => undefined }
  // the parent is the newest generation of the same source and host (as restic's)
  const host = opts.host ?? os.hostname()
  let prevCat: CatalogIndex | null = null
  let online: OnlineReport | undefined
  const res = await writeGeneration(repo, opts, {
    source,
    kind: 'files',
    group: opts.group?.name ?? null,
    // the newest readable generation of this source whose catalog reads (damaged ones are skipped)
    choosePrev: (r) => {
      if (opts.full) return null
      for (const m of [...r.generations(opts.group?.name ?? null)].reverse()) {
        if (m.kind !== 'files' || m.source !== source || m.host !== host) continue
        try {
          prevCat = r.catalogIndex(m.id)
          return m
        } catch (err) {
          if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
          reporter.warn(`gen${m.id} cannot be the base of this backup: ${err.message}`)
        }
      }
      return null
    },
    build: async ({ genId, pool, prev }) => {
      const w = new TreeWriter(repo, pool, genId, source, rootSt, opts, reporter, prev, prevCat)
      const body = await w.run()
      online = w.onlineReport
      return body
    },
  })
  return online ? { ...res, online } : res
}

interface DirTask {
  index: number
  path: Buffer
  rel: string
  /** The same directory's entry in the previous generation, or -1. */
  prevIndex: number
  /** Group backups: this directory matched an include pattern, so its whole subtree is in. */
  included: boolean
}

class TreeWriter {
  private readonly entries: Entry[] = []
  private readonly objects: MapObject[] = []
  private readonly stream: StreamWriter
  private readonly warnings: string[] = []
  private readonly skippedPaths: string[] = []
  private readonly links = new Map<string, number>()
  /** The previous generation's catalog, read through its index: entries decoded as the merge reaches them. */
  private prevCat: CatalogIndex | null = null
  private readonly resolver: ObjectResolver
  /** Which previous objects may be referred to (none that depend on a damaged generation). */
  private readonly refs: SafeRefs
  /** Unchanged files read again because their stored data depends on a damaged generation. */
  private reread = 0
  private readonly isExcluded: (rel: string, isDir: boolean) => boolean
  /** Group backups: does an include pattern match this path? (null: no group, everything is in) */
  private readonly isIncluded: ((rel: string, isDir: boolean) => boolean) | null
  private readonly tagged: ReturnType<typeof compileTagRules>
  private readonly includedDirs = new Set<number>()
  /** Scratch for CatalogIndex.identity(). */
  private readonly id = new Float64Array(ID_FIELDS)
  /** Files whose data the workers are reading, by read tag. */
  private readonly pending = new Map<number, { e: Entry; rel: string; isNew: boolean; online: boolean }>()
  private nextTag = 1
  /** Files that could not be read by a worker: removed from the catalog at the end. */
  private readonly failed = new Set<Entry>()
  /** 512-byte blocks the scan saw allocated for the file being stored (to spot sparse files). */
  private scanBlocks = 0
  private readonly rootDev: number
  /** dev:inoHi:inoLo of each local directory holding the repository's bytes (the store's localRoots): never backed up. */
  private readonly keepOutIds = new Set<string>()
  /** Their inoLo, a cheap first test. */
  private readonly keepOutInoLo = new Set<number>()
  private readonly stats: GenStats = emptyStats()
  private lastProgress = 0
  /** `--online`: the capture (null without --online). */
  private online: OnlineCapture | null = null

  constructor(
    private readonly repo: Repository,
    pool: WorkerPool,
    private readonly genId: number,
    private readonly source: string,
    private readonly rootSt: Float64Array,
    private readonly opts: BackupOptions,
    private readonly reporter: BackupReporter,
    private readonly prev: Manifest | null,
    prevCat: CatalogIndex | null,
  ) {
    this.stream = newStream(repo, pool, genId, opts, 'files')
    this.stream.onReadResults = (r) => this.readResults(r)
    this.resolver = new ObjectResolver(repo)
    this.isExcluded = compileExcludes([...(opts.excludes ?? []), ...(opts.group?.excludes ?? [])])
    this.isIncluded = opts.group ? compileExcludes(opts.group.includes) : null
    this.tagged = compileTagRules(opts.tagRules ?? {})
    this.rootDev = rootSt[native.S_DEV]!
    for (const dir of repo.store.localRoots()) {
      const rst = native.lstatRecord(dir)
      this.keepOutIds.add(`${rst[native.S_DEV]}:${rst[native.S_INO_HI]}:${rst[native.S_INO_LO]}`)
      this.keepOutInoLo.add(rst[native.S_INO_LO]!)
    }
    if (prev) this.prevCat = prevCat ?? repo.catalogIndex(prev.id)
    this.refs = new SafeRefs(repo, this.resolver, (m) => this.warn(m))
  }

  private warn(msg: string): void {
    this.warnings.push(msg)
    this.reporter.warn(msg)
  }

  private skip(rel: string, why: string): void {
    this.skippedPaths.push(rel)
    this.stats.skipped++
    this.warn(`skipped ${rel || '.'}: ${why}`)
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'interrupted; nothing was committed')
  }

  /** `behind`: bytes of the current file still to plan (a big file reports as its reads go). */
  private progress(rel: string, behind = 0): void {
    if (!this.reporter.progress) return
    const now = Date.now()
    if (now - this.lastProgress < 100) return
    this.lastProgress = now
    this.reporter.progress({
      entries: this.entries.length, bytesRead: this.stats.bytesRead, storedBytes: this.stream.storedBytes, path: rel,
      files: this.stats.files, bytes: this.stats.logicalBytes - behind, expectedFiles: this.prev?.stats.files ?? null, expectedBytes: this.prev?.stats.logicalBytes ?? null,
    })
  }

  async run(): Promise<GenerationBody> {
    try {
      this.startCapture()
      const root = newEntry(EntryType.Dir, 0, Buffer.alloc(0))
      fillMeta(root, this.rootSt, 0)
      root.xattrs = this.xattrsOf(Buffer.from(this.source), root, 0)
      this.entries.push(root)
      const stack: DirTask[] = [{ index: 0, path: Buffer.from(this.source), rel: '', prevIndex: this.prevCat ? 0 : -1, included: !this.isIncluded }]
      while (stack.length) {
        const t = stack.pop()!
        const subdirs = await this.scanDir(t)
        for (let i = subdirs.length - 1; i >= 0; i--) stack.push(subdirs[i]!)
      }
    } catch (err) {
      this.online?.abort()
      throw err
    }
    // Every file was read: writers need not wait for the listener while the stream is finished.
    let biLog: Buffer | null = null
    if (this.online) {
      try {
        // every read through the capture is done before it stops (the workers' too)
        if (this.online.active) await this.stream.settleReads(readPlanned)
        this.online.stop()
        biLog = await this.online.ingest(this.stream, this.genId)
      } catch (err) {
        this.online.abort() // writers released, the capture file removed
        throw err
      }
    }
    await this.stream.finish()
    // Hard links share their leader's xattrs, which planned reads fill in only now.
    for (const e of this.entries) if (e.flags & ENTRY_FLAG_LINK_FOLLOWER) e.xattrs = this.entries[e.linkLeader]!.xattrs
    if (this.isIncluded || this.failed.size) this.compact()
    if (this.reread) this.warn(`${this.reread} unchanged file${this.reread > 1 ? 's were' : ' was'} read again: ${this.reread > 1 ? 'their' : 'its'} stored data depends on a damaged generation`)
    return { entries: this.entries, objects: this.objects, stream: this.stream, stats: this.stats, warnings: this.warnings, skippedPaths: this.skippedPaths, ...(this.online ? { online: this.online.report } : {}), ...(biLog ? { biLog } : {}) }
  }

  /** `--online`: what the run did (after run()). */
  get onlineReport(): OnlineReport | undefined {
    return this.online?.report
  }

  /** `--online`: sets the capture's mark (T0); its directory is never backed up. */
  private startCapture(): void {
    if (!this.opts.online) return
    this.online = OnlineCapture.start(this.source, this.opts.online, this.opts.t0File, (m) => this.warn(m), this.opts.onlineNice)
    const dir = this.online.captureDir
    if (dir) {
      // the capture file's directory is never backed up (the source may hold it)
      const dst = native.lstatRecord(dir)
      this.keepOutIds.add(`${dst[native.S_DEV]}:${dst[native.S_INO_HI]}:${dst[native.S_INO_LO]}`)
      this.keepOutInoLo.add(dst[native.S_INO_LO]!)
    }
  }

  /** Xattrs of a path, reusing the previous generation's when the inode's ctime has not changed. */
  private xattrsOf(p: Buffer, e: Entry, prevIndex: number): Entry['xattrs'] {
    const prev = this.prevEntry(prevIndex)
    if (prev && prev.ctimeSec === e.ctimeSec && prev.ctimeNsec === e.ctimeNsec && prev.srcInoLo === e.srcInoLo && prev.srcInoHi === e.srcInoHi) return prev.xattrs
    try {
      const x = native.getXattrs(p)
      return x.length ? x : null
    } catch {
      return null
    }
  }

  /** Lists one directory: its children get contiguous entry indices (sorted by name), files are stored now. */
  private async scanDir(t: DirTask): Promise<DirTask[]> {
    this.checkAbort()
    let scan: native.DirScan
    try {
      scan = native.scanDir(t.path)
    } catch (err) {
      this.skip(t.rel, `cannot list directory (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      return []
    }
    const names = scan.names
    const order = names.map((_, i) => i).sort((a, b) => Buffer.compare(names[a]!, names[b]!))
    const st = scan.stats
    const F = native.STAT_FIELDS
    const relOf = (name: Buffer): string => (t.rel ? `${t.rel}/${name.toString('latin1')}` : name.toString('latin1'))
    const pathOf = (name: Buffer): Buffer => Buffer.concat([t.path, SLASH, name])
    const excluding = (this.opts.excludes ?? []).length > 0 || (this.opts.group?.excludes ?? []).length > 0
    const kidIncluded: boolean[] = []
    const kidBlocks: number[] = []
    const kids: Entry[] = []
    // a tagged directory (--exclude-caches, --exclude-if-present): only its tag files are kept
    const onlyTags = this.tagged?.(t.path, names, (i) => !st[i * F + native.S_ERRNO] && (st[i * F + native.S_MODE]! & S_IFMT) === 0o100000) ?? null
    for (const i of order) {
      const o = i * F
      if (st[o + native.S_ERRNO]) continue // vanished between readdir and stat
      if (onlyTags && !onlyTags.has(i)) continue
      const type = TYPE_OF[st[o + native.S_MODE]! & S_IFMT]
      if (type === undefined) continue
      if (excluding && this.isExcluded(relOf(names[i]!), type === EntryType.Dir)) continue
      const inc = t.included || !!this.isIncluded?.(relOf(names[i]!), type === EntryType.Dir)
      if (!inc && type !== EntryType.Dir) continue // not in the group: not read, not listed
      if (type === EntryType.Dir && this.keepOutInoLo.has(st[o + native.S_INO_LO]!) && this.keepOutIds.has(`${st[o + native.S_DEV]}:${st[o + native.S_INO_HI]}:${st[o + native.S_INO_LO]}`)) continue
      kidIncluded.push(inc)
      kidBlocks.push(st[o + native.S_BLOCKS]!)
      const e = newEntry(type, t.index, names[i]!)
      fillMeta(e, st, o)
      kids.push(e)
    }
    const parent = this.entries[t.index]!
    parent.firstChild = this.entries.length
    parent.childCount = kids.length
    for (const k of kids) this.entries.push(k)
    // The previous generation's children of this directory, matched by a merge of two sorted lists.
    const prevDir = this.prevEntry(t.prevIndex)
    let pc = prevDir && prevDir.type === EntryType.Dir ? prevDir.firstChild : 0
    const pcEnd = prevDir && prevDir.type === EntryType.Dir ? prevDir.firstChild + prevDir.childCount : 0
    const subdirs: DirTask[] = []
    for (let j = 0; j < kids.length; j++) {
      const e = kids[j]!
      const index = parent.firstChild + j
      let prevIndex = -1
      while (pc < pcEnd) {
        const c = this.prevCat!.compareName(pc, e.name)
        if (c < 0) pc++
        else {
          if (c === 0) prevIndex = pc++
          break
        }
      }
      // Files are checked against the previous catalog's bytes (CatalogIndex.identity);
      // only other kinds, and files that changed, have their previous entry decoded.
      const prev = prevIndex > 0 && e.type !== EntryType.File ? this.prevEntry(prevIndex) : undefined
      if (this.reporter.progress && (j & 63) === 0) this.progress(relOf(e.name))
      switch (e.type) {
        case EntryType.Dir: {
          this.stats.dirs++
          const p = pathOf(e.name)
          e.xattrs = this.xattrsOf(p, e, prevIndex)
          if (kidIncluded[j]) this.includedDirs.add(index)
          if (!this.opts.oneFileSystem || e.srcDev === this.rootDev) subdirs.push({ index, path: p, rel: relOf(e.name), prevIndex, included: kidIncluded[j]! })
          break
        }
        case EntryType.Symlink:
          if (prev && prev.type === EntryType.Symlink && sameVersion(prev, e)) {
            e.target = prev.target
            e.xattrs = prev.xattrs
          } else {
            const p = pathOf(e.name)
            try {
              e.target = fs.readlinkSync(p, { encoding: 'buffer' })
            } catch (err) {
              this.skip(relOf(e.name), `cannot read symlink (${(err as NodeJS.ErrnoException).code})`)
              e.target = Buffer.alloc(0)
            }
            e.xattrs = this.xattrsOf(p, e, prevIndex)
          }
          break
        case EntryType.File:
          if (!this.unchangedFile(e, index, prevIndex)) {
            this.scanBlocks = kidBlocks[j]!
            await this.file(e, index, pathOf(e.name), relOf(e.name), prevIndex > 0 ? this.prevEntry(prevIndex) : undefined)
          }
          break
        default:
          e.xattrs = prev && sameVersion(prev, e) ? prev.xattrs : this.xattrsOf(pathOf(e.name), e, prevIndex)
      }
    }
    // Entries of skipped files are dropped: compact this directory's children if any were removed.
    this.compactChildren(t.index, subdirs)
    return subdirs
  }

  /** What the workers found reading planned files: xattrs, bytes, changes while read, failures. */
  private readResults(results: ReadResult[]): void {
    for (const r of results) {
      const p = this.pending.get(r.tag)
      if (!p) continue
      const e = p.e
      this.stats.bytesRead += r.bytesRead
      if (r.error) {
        if (!this.failed.has(e)) {
          this.failed.add(e)
          // --online: the path names another inode than the scan found (native bilog_read_file)
          const replaced = p.online && r.error === 'ESTALE'
          if (replaced) this.online!.uncovered(p.rel, 'replaced after T0 before it was read (left out)')
          this.skip(p.rel, replaced ? 'replaced after T0 before it was read: its T0 content is gone (not covered by --online)' : `cannot ${r.errorAt ?? 'read'} (${r.error})`)
          this.stats.files--
          if (p.isNew) this.stats.newFiles--
          else this.stats.changedFiles--
          this.stats.logicalBytes -= e.size
        }
        continue
      }
      if (r.xattrs !== undefined) e.xattrs = r.xattrs ? r.xattrs.map(([n, v]) => [Buffer.from(n), Buffer.from(v)]) : null
      // --online: blocks read as zeros have their images in the capture, for the BI log
      if (r.logged) this.online!.noteStored(e.srcDev, e.srcInoHi, e.srcInoLo, e.objIndex)
      const a = r.after
      // (--online: a change after T0 is not one; what was read is the file at T0)
      if (a && !p.online && !(e.flags & ENTRY_FLAG_CHANGED_WHILE_READ) && (a[0] !== e.size || a[1] !== e.mtimeSec || a[2] !== e.mtimeNsec || a[3] !== e.ctimeSec || a[4] !== e.ctimeNsec)) {
        e.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
        this.warn(`${p.rel} changed while it was read; its copy may be inconsistent (it will be read again next time)`)
      }
      if (a || r.last) this.pending.delete(r.tag)
    }
  }

  /**
   * Removes files the workers could not read (and hard links to them) and, for a group
   * backup, everything outside the group; renumbers (each directory's children stay contiguous).
   */
  private compact(): void {
    const n = this.entries.length
    const keep = new Uint8Array(n)
    keep[0] = 1
    for (let i = n - 1; i > 0; i--) {
      const e = this.entries[i]!
      if (e.type !== EntryType.Dir || !this.isIncluded || this.includedDirs.has(i)) keep[i] = 1
      if (this.failed.has(e)) keep[i] = 0
      if (keep[i]) keep[e.parent] = 1
    }
    for (let i = 1; i < n; i++) {
      const e = this.entries[i]!
      if (keep[i] && e.flags & ENTRY_FLAG_LINK_FOLLOWER && !keep[e.linkLeader]) {
        keep[i] = 0
        this.skip(e.name.toString(), 'a hard link to a file that could not be read')
      }
    }
    if (this.isIncluded && !this.entries.some((e, i) => keep[i] && e.type !== EntryType.Dir)) {
      throw new BfsError('BAD_INPUT', `group '${this.opts.group!.name}' matches no files in ${this.source}; nothing was committed`)
    }
    const newIndex = new Int32Array(n).fill(-1)
    const out: Entry[] = []
    for (let i = 0; i < n; i++) if (keep[i]) newIndex[i] = out.push(this.entries[i]!) - 1
    let dirs = 0
    for (let i = 0; i < n; i++) {
      if (!keep[i]) continue
      const e = this.entries[i]!
      e.parent = newIndex[e.parent]!
      if (e.flags & ENTRY_FLAG_LINK_FOLLOWER) e.linkLeader = newIndex[e.linkLeader]!
      if (e.type === EntryType.Dir) {
        if (i > 0) dirs++
        let first = -1
        let count = 0
        for (let c = e.firstChild; c < e.firstChild + e.childCount; c++) {
          if (!keep[c]) continue
          if (first < 0) first = newIndex[c]!
          count++
        }
        e.firstChild = first < 0 ? 0 : first
        e.childCount = count
      }
    }
    this.entries.length = 0
    this.entries.push(...out)
    if (this.isIncluded) this.stats.dirs = dirs
  }

  /** Files that could not be read are removed from the catalog (they are listed as skipped). */
  private readonly dropped = new Set<number>()
  private compactChildren(dirIndex: number, subdirs: DirTask[]): void {
    if (this.dropped.size === 0) return
    const dir = this.entries[dirIndex]!
    const start = dir.firstChild
    const end = start + dir.childCount
    const keep: Entry[] = []
    const remap = new Map<number, number>()
    for (let i = start; i < end; i++) {
      if (this.dropped.has(i)) continue
      remap.set(i, start + keep.length)
      keep.push(this.entries[i]!)
    }
    if (keep.length === dir.childCount) return
    // Only the last directory's children can be compacted: nothing after them was added yet.
    this.entries.length = start
    for (const e of keep) this.entries.push(e)
    dir.childCount = keep.length
    for (const s of subdirs) s.index = remap.get(s.index)!
    for (const [k, v] of this.links) if (remap.has(v)) this.links.set(k, remap.get(v)!)
    for (const e of keep) if (e.flags & ENTRY_FLAG_LINK_FOLLOWER && remap.has(e.linkLeader)) e.linkLeader = remap.get(e.linkLeader)!
    this.dropped.clear()
  }

  /** Synchronous fast path: a hard link to a file already stored, or a file unchanged since the previous generation. */
  private unchangedFile(e: Entry, index: number, prevIndex: number): boolean {
    this.stats.files++
    const linkKey = e.nlink > 1 ? `${e.srcDev}:${e.srcInoHi}:${e.srcInoLo}` : ''
    if (linkKey) {
      const leader = this.links.get(linkKey)
      if (leader !== undefined) {
        const l = this.entries[leader]!
        e.flags |= ENTRY_FLAG_LINK_FOLLOWER
        e.linkLeader = leader
        e.xattrs = l.xattrs
        e.size = l.size
        return true
      }
    }
    this.stats.logicalBytes += e.size
    const c = this.prevCat
    if (!c || prevIndex <= 0) return false
    // sameVersion(), against the previous entry's bytes
    const id = this.id
    c.identity(prevIndex, id)
    if (id[ID_TYPE] !== e.type || id[ID_DEV] !== e.srcDev || id[ID_INO_HI] !== e.srcInoHi || id[ID_INO_LO] !== e.srcInoLo || id[ID_SIZE] !== e.size ||
      id[ID_MTIME_SEC] !== e.mtimeSec || id[ID_MTIME_NSEC] !== e.mtimeNsec || id[ID_CTIME_SEC] !== e.ctimeSec || id[ID_CTIME_NSEC] !== e.ctimeNsec) return false
    const flags = id[ID_FLAGS]!
    if (flags & ENTRY_FLAG_LINK_FOLLOWER) c.identity(id[ID_LEADER]!, id) // the data is the leader's
    // data in a damaged generation is read again (file() finds no usable base either)
    if (id[ID_OBJ_GEN] && !this.refs.objectOk(id[ID_OBJ_GEN]!, id[ID_OBJ_INDEX]!)) {
      this.reread++
      return false
    }
    e.objGen = id[ID_OBJ_GEN]!
    e.objIndex = e.objGen ? id[ID_OBJ_INDEX]! : 0
    e.xattrs = flags & ENTRY_FLAG_XATTRS ? c.entry(prevIndex).xattrs : null
    // --online: kept as stored, never read; writes to it from now on need no before-images
    if (this.online?.active && e.srcDev === this.rootDev) this.online.keep(e.srcDev, e.srcInoHi, e.srcInoLo)
    this.stats.unchangedFiles++
    if (linkKey) this.links.set(linkKey, index)
    return true
  }

  private async file(e: Entry, index: number, p: Buffer, rel: string, prev: Entry | undefined): Promise<void> {
    const linkKey = e.nlink > 1 ? `${e.srcDev}:${e.srcInoHi}:${e.srcInoLo}` : ''
    const prevObj = prev && prev.type === EntryType.File ? this.prevObject(prev) : null
    // the previous version as the base of a block incremental (none if it depends on damage)
    const base = prevObj && !this.opts.full ? this.refs.base(prevObj.gen, prevObj.index) : null
    // A new file (or one without a usable base) that is not sparse: the compression worker reads it (file I/O in parallel,
    // off this thread); the scan's stat is compared with an fstat after the read.
    // With --online (the file on the source's filesystem) the worker reads it through the
    // shared capture, sparse or not (the whole T0 size is read), after its T0 size and times
    // are taken here.
    const capturing = !!this.online?.active
    const captured = capturing && e.srcDev === this.rootDev
    if (!base && e.size > 0 && (captured || (!capturing && this.scanBlocks * 512 >= e.size))) {
      if (captured) {
        // (no open here: every open is a round trip through the listener; the worker opens it quietly)
        this.atT0Ino(this.online!, p, e, rel)
        if (e.size === 0) {
          // empty at T0
          if (prev) this.stats.changedFiles++
          else this.stats.newFiles++
          if (linkKey) this.links.set(linkKey, index)
          return
        }
      }
      const tag = this.nextTag++
      this.pending.set(tag, { e, rel, isNew: !prev, online: captured })
      // the object first: a read's result (which names it for the BI log) can arrive while later ranges are planned
      e.objGen = this.genId
      e.objIndex = this.objects.length
      const obj: MapObject = { sizeBytes: e.size, baseGen: 0, baseIndex: 0, depth: 0, extents: [] }
      this.objects.push(obj)
      let pos = 0
      let first = -1
      while (pos < e.size) {
        const r = await this.stream.planRead(tag, p, pos, e.size - pos, pos === 0, e.size, captured ? this.online!.sharedId : 0, captured ? [e.srcDev, e.srcInoHi, e.srcInoLo] : undefined)
        if (first < 0) first = r.streamBlock
        pos += r.bytes
        if (this.reporter.progress && pos < e.size) this.progress(rel, e.size - pos)
      }
      obj.extents.push({ fileBlock: 0, count: Math.ceil(e.size / BLOCK_BYTES), gen: this.genId, streamBlock: first })
      if (prev) this.stats.changedFiles++
      else this.stats.newFiles++
      if (linkKey) this.links.set(linkKey, index)
      return
    }
    let fd: number
    try {
      // --online: an fd whose reads raise no events
      fd = captured ? this.online!.openQuiet(p) : openTreeFile(p)
    } catch (err) {
      this.skip(rel, `cannot open (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      this.dropped.add(index)
      this.stats.files--
      this.stats.logicalBytes -= e.size
      return
    }
    try {
      const st1 = native.fstatRecord(fd)
      const scanned = e.size
      fillMeta(e, st1, 0)
      // The capture covers the source's filesystem only (a mount inside the tree, a btrfs
      // subvolume: another st_dev): such a file is read as it is, and listed.
      const cap = capturing && e.srcDev === this.rootDev ? this.online! : null
      if (capturing && !cap) {
        e.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
        this.online!.uncovered(rel, 'on another filesystem than the source, read as it is')
      }
      if (cap) {
        e.size = scanned // (logicalBytes counted it; atT0 counts the T0 size instead)
        this.atT0(cap, fd, e, rel)
      }
      e.xattrs = this.xattrsOf(p, e, -1)
      const size = e.size
      let regions = size > 0 ? [0, size] : []
      // (with --online the whole T0 size is read: a hole punched since T0 was data then)
      if (!cap && size > 0 && st1[native.S_BLOCKS]! * 512 < size) regions = native.dataRegions(fd, size)
      // --online: the live bytes, with the blocks changed since T0 (before this read) as zeros:
      // their before-images go into the generation's BI log, which readers lay over the map
      let logged = 0
      const hooks = cap ? { read: cap.readHook(fd, (n) => (logged += n)) } : undefined
      const stored = size === 0 ? null : await storeObject(fd, size, regions, this.stream, base, hooks)
      if (stored) this.stats.bytesRead += stored.bytesRead
      const st2 = cap ? null : native.fstatRecord(fd)
      // With --online a change after T0 is not one: what was read is the file at T0.
      if (st2 ? changedWhileRead(st1, st2, !!stored?.short) : !!stored?.short) {
        e.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
        this.warn(`${rel} changed while it was read; its copy may be inconsistent (it will be read again next time)`)
      }
      if (prev) this.stats.changedFiles++
      else this.stats.newFiles++
      // (a file with blocks in the BI log needs an object of its own for the log to lay them over)
      if (stored && stored.sameAsBase && base && !logged) {
        e.objGen = base.gen
        e.objIndex = base.index
      } else if (stored && (stored.object.extents.length > 0 || stored.object.baseGen !== 0 || logged)) {
        e.objGen = this.genId
        e.objIndex = this.objects.length
        this.objects.push(stored.object)
        if (logged) cap!.noteStored(e.srcDev, e.srcInoHi, e.srcInoLo, e.objIndex)
      }
      if (linkKey) this.links.set(linkKey, index)
    } catch (err) {
      // Our own errors, and a full disk while placing data in the stream, end the backup:
      // only a problem with the source file skips it.
      const code = (err as NodeJS.ErrnoException).code
      if (err instanceof BfsError || code === 'ENOSPC' || code === 'EDQUOT') throw err
      this.skip(rel, `read error (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
      this.dropped.add(index)
    } finally {
      fs.closeSync(fd)
    }
  }

  /**
   * --online: the file as it was at T0 — its size and times then (its bytes are read through
   * the capture: each block once, marked read, so later writes to it are not logged). Adjusts
   * logicalBytes from the scanned size to the T0 size. Lists it when not covered.
   */
  private atT0(cap: OnlineCapture, fd: number, e: Entry, rel: string): void {
    const t0 = cap.t0Stat(fd)
    this.stats.logicalBytes += t0.sizeBytes - e.size
    e.size = t0.sizeBytes
    e.mtimeSec = t0.mtimeSec
    e.mtimeNsec = t0.mtimeNsec
    e.ctimeSec = t0.ctimeSec
    e.ctimeNsec = t0.ctimeNsec
    // Writes through an fd or mapping from before T0 raise no event: the copy may be torn.
    // An inode born after T0 was not there at T0 (created, or renamed over the file that
    // was): stored as it is now. (Birth times are coarse: one created within a clock tick
    // of T0 is not seen.)
    const born = fs.fstatSync(fd, { bigint: true }).birthtimeNs
    const why = t0.uncovered ? (BI_REASON_TEXT[t0.uncovered] ?? `reason ${t0.uncovered}`) : born > cap.t0Ns ? 'created or replaced after T0' : ''
    if (why) {
      e.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
      cap.uncovered(rel, why)
    }
  }

  /**
   * atT0 without an fd: the capture's T0 state of the inode if it has seen it, else the scan's
   * stat (nothing changed the file between T0 and the scan, which came after T0); the birth
   * time from a statx by path (which raises no event).
   */
  private atT0Ino(cap: OnlineCapture, p: Buffer, e: Entry, rel: string): void {
    // a file born after T0 has its ctime after T0 too (the birth sets both; a ctime never
    // goes back): only those need the birth time (a statx by path, ~10 µs with its BigInts)
    const changedAfterT0 = e.ctimeSec > cap.t0Sec || (e.ctimeSec === cap.t0Sec && e.ctimeNsec > cap.t0Nsec)
    const { t0, uncovered } = cap.t0StatIno(e.srcDev, e.srcInoHi, e.srcInoLo)
    if (t0) {
      this.stats.logicalBytes += t0.sizeBytes - e.size
      e.size = t0.sizeBytes
      e.mtimeSec = t0.mtimeSec
      e.mtimeNsec = t0.mtimeNsec
      e.ctimeSec = t0.ctimeSec
      e.ctimeNsec = t0.ctimeNsec
    }
    let born = 0n
    if (changedAfterT0) {
      try {
        born = fs.lstatSync(p, { bigint: true }).birthtimeNs
      } catch {
        // gone: the worker's open says so
      }
    }
    const why = uncovered ? (BI_REASON_TEXT[uncovered] ?? `reason ${uncovered}`) : born > cap.t0Ns ? 'created or replaced after T0' : ''
    if (why) {
      e.flags |= ENTRY_FLAG_CHANGED_WHILE_READ
      cap.uncovered(rel, why)
    }
  }

  /** Entry i of the previous generation's catalog, if there is one. */
  private prevEntry(i: number): Entry | undefined {
    const c = this.prevCat
    return c && i >= 0 && i < c.length ? c.entry(i) : undefined
  }

  /** The object a previous entry's data lives in (following its hard-link leader). */
  private prevObject(prev: Entry): { gen: number; index: number } | null {
    const src = prev.flags & ENTRY_FLAG_LINK_FOLLOWER ? this.prevEntry(prev.linkLeader)! : prev
    return src.objGen ? { gen: src.objGen, index: src.objIndex } : null
  }
}
