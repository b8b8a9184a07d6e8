import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as native from '../native/index.js'
import { EntryType, ENTRY_FLAG_LINK_FOLLOWER, type Entry } from '../format/catalog.js'
import type { Manifest } from '../format/manifest.js'
import { Repository } from './repository.js'
import { WorkerPool } from './pool.js'
import { Lanes } from './lanes.js'
import { WorkerReaders } from './readers.js'
import { ObjectResolver } from './resolve.js'
import { BfsError } from './errors.js'
import { subtree } from './tree.js'
import { bringIn, planTapePasses, type TapePlan } from './tapepasses.js'
import type { TieredStore } from '../store/tiered.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import { keys } from '../format/layout.js'
import { createOrReplace, DirFds, K, notReplaced, setidSafeMode, why } from './restore-fs.js'
import type { RestoreFile, RestoreJob, RestoreJobResult } from './restore-worker.js'

export interface RestoreOptions {
  /** Subtree root entry index (0 = the whole generation). */
  root: number
  dest: string
  overwrite?: boolean
  threads?: number
  signal?: AbortSignal
  reporter?: { warn(msg: string): void; progress?(p: RestoreProgress): void; tapePlan?(p: TapePlan): void }
  /**
   * The repository's tiered store when units are on tape (the readers of `repo` read
   * through it: useDataStore): the units not on disk are recalled up front, pinned for
   * `holder`, in passes of half of `passBytes` (default: the buffer cache's limit).
   */
  tape?: { tiered: TieredStore; holder: string; passBytes?: number } | null
  /** Workers started already (an encrypted repository's, during scrypt: cli/v2.ts); the restore uses and closes them. */
  pool?: WorkerPool
}

/** The store keys of the units a file's extents (fileBlock, count, gen, streamBlock)* read within its size. */
function unitsOf(repo: Repository, flat: number[], sizeBytes: number): string[] {
  return unitKeysOf(flat, sizeBytes, (gen) => repo.manifest(gen).unitBlocks)
}

/** The same for either format: `unitBlocks(s)` of stream s (unit keys are `gens/S/unit-U` in both). */
export function unitKeysOf(flat: number[], sizeBytes: number, unitBlocks: (stream: number) => number): string[] {
  const blocks = Math.ceil(sizeBytes / BLOCK_BYTES)
  const out = new Set<string>()
  for (let j = 0; j < flat.length; j += 4) {
    const [fileBlock, count, gen, streamBlock] = [flat[j]!, flat[j + 1]!, flat[j + 2]!, flat[j + 3]!]
    if (gen === 0 || fileBlock >= blocks) continue
    const n = Math.min(count, blocks - fileBlock)
    const ub = unitBlocks(gen)
    for (let u = Math.floor(streamBlock / ub); u * ub < streamBlock + n; u++) out.add(keys.unit(gen, u))
  }
  return [...out]
}

export interface RestoreResult {
  entries: number
  files: number
  bytes: number
  errors: string[]
  /** Entries restored without their setuid/setgid bits because their owner or group was not restored. */
  setidDropped: number
  /** Directories this restore created and removed again because its errors had left them empty. */
  removedDirs: number
}

/** A job for a worker (restore's data phase): its files, and the units they read when those are warmed first (RestoreSet.warm). */
interface Job {
  files: RestoreFile[]
  units: Set<string>
}

/** Bytes of file data per job handed to a worker: large enough to amortize, small enough to balance. */
const JOB_BYTES = 16 << 20
const JOB_FILES = 2000

/**
 * Files to restore by where their data starts: the generation (format 2: stream) and stream
 * block of their first extent (flattened: fileBlock, count, gen, streamBlock, …; gen 0 is a
 * hole), files without data first; ties keep their catalog order (Array.prototype.sort is stable).
 */
export function dataOrder(a: { f: { extents: number[] } }, b: { f: { extents: number[] } }): number {
  const x = firstData(a.f.extents)
  const y = firstData(b.f.extents)
  if (x < 0 || y < 0) return x < 0 && y < 0 ? 0 : x < 0 ? -1 : 1
  return a.f.extents[x]! - b.f.extents[y]! || a.f.extents[x + 1]! - b.f.extents[y + 1]!
}

/** The index of the first extent's gen that is not a hole in flattened extents, or -1. */
function firstData(flat: number[]): number {
  for (let j = 2; j < flat.length; j += 4) if (flat[j]) return j
  return -1
}

/** Where a restore's file data stands: done of the totals known before the first byte is written. */
export interface RestoreProgress {
  /** Files (hard-link groups count once) whose data is written. */
  files: number
  bytes: number
  totalFiles: number
  totalBytes: number
  /** The last file written, relative to the restored root; '' before the first. */
  path: string
}

const S_IFMT = 0o170000
const S_IFDIR = 0o040000
const S_IFCHR = 0o020000
const S_IFBLK = 0o060000
const SLASH = Buffer.from('/')
const EMPTY = Buffer.alloc(0)

/**
 * Restores a generation (or a subtree) into `dest`: directories and special files first,
 * file data in parallel on worker threads (each decompressing its own frames), then hard
 * links, then metadata of everything else with directories last (bottom-up), so that
 * times and read-only modes stick.
 *
 * DEST itself and its missing parents are the caller's path and are followed like any
 * path (as `tar -C` does). Below DEST nothing is ever reached through a symlink: DEST is
 * opened once, every directory below it with openat2(RESOLVE_NO_SYMLINKS |
 * RESOLVE_BENEATH) relative to that fd, and every entry is made with a single-name *at
 * call in such a directory (restore-fs.ts). `overwrite` replaces what is in the way
 * (rename over it, or remove a symlink or file where a directory goes) instead of
 * writing through it.
 *
 * If the restore fails (errors, or an interruption), the directories it created that the
 * failures left empty are removed again, bottom-up, never through a symlink; what
 * remains holds restored entries, and the result (or the thrown error) says how many
 * were removed.
 */
export async function restoreTree(repo: Repository, man: Manifest, opts: RestoreOptions): Promise<RestoreResult> {
  const entries = repo.catalog(man.id)
  const resolver = new ObjectResolver(repo)
  return restoreEntries(
    {
      label: `gen${man.id}`,
      entries,
      order: subtree(entries, opts.root),
      problems: [],
      extents: (d) => {
        const flat: number[] = []
        if (d.objGen) for (const x of resolver.resolve(d.objGen, d.objIndex)) flat.push(x.fileBlock, x.count, x.gen, x.streamBlock)
        return flat
      },
      readers: (pool) => new WorkerReaders(repo, pool),
      unitsOf: (flat, size) => unitsOf(repo, flat, size),
      planTape: (tiered, units, passBytes) => planTapePasses(repo, tiered, units, passBytes),
    },
    opts,
  )
}

/**
 * What restoreEntries restores: entries in the shape of format 1's catalog (parent indexes,
 * childCount, hard-link followers naming their leader), whoever read them (format 1's
 * catalog, or format 2's tree walked directory by directory: repo/v2/restore2.ts), and how
 * to find their data.
 */
export interface RestoreSet {
  /** For messages: `genN`. */
  label: string
  entries: Entry[]
  /** The entries to restore (opts.root and everything below it), parents before children. */
  order: number[]
  /**
   * Damage met while reading the entries (a directory piece that does not read): the entry
   * below which something could not be read, and the line naming the damage. Each is an
   * error of the restore; what was read is restored.
   */
  problems: Array<{ index: number; message: string }>
  /**
   * The data of file entry `d` (a link leader's for a follower) as flattened extents
   * (fileBlock, count, stream, streamBlock)*, stream 0 = a hole; a BfsError CORRUPT for data
   * that cannot be found (the file is reported, the rest restored).
   */
  extents(d: Entry, i: number): number[] | Promise<number[]>
  /** The worker threads' readers of the streams the extents name. */
  readers(pool: WorkerPool): WorkerReaders
  /** Units on tape (format 1 only): the store keys a file's extents read, and the recall plan. */
  unitsOf?(flat: number[], sizeBytes: number): string[]
  planTape?(tiered: TieredStore, units: string[], passBytes: number): TapePlan
  /**
   * Units in a remote store with a local cache (S3: Store.warm): fetches one into the cache
   * ahead of the worker that will read it (needs unitsOf). Absent: units are local.
   */
  warm?(unitKey: string): Promise<boolean>
}

/** Jobs whose units are fetched into a remote store's cache ahead of the worker (each lane's next jobs): ~2 units ahead per worker. */
const WARM_AHEAD = 2

/** Restores a RestoreSet (see restoreTree: the same for both formats). */
export async function restoreEntries(set: RestoreSet, opts: RestoreOptions): Promise<RestoreResult> {
  const entries = set.entries
  const k = K()
  const asRoot = process.getuid?.() === 0
  const euid = process.geteuid?.() ?? 0
  const egid = process.getegid?.() ?? 0
  const overwrite = !!opts.overwrite
  const dest = path.resolve(opts.dest)
  const root = entries[opts.root]!
  const rootIsDir = root.type === EntryType.Dir
  const order = set.order
  const dot = Buffer.from('.')
  const dotdot = Buffer.from('..')
  for (const i of order) {
    const n = entries[i]!.name
    if (i !== opts.root && (n.equals(dot) || n.equals(dotdot))) throw new BfsError('CORRUPT', `${set.label}: catalog entry ${i} is named "${n}"`)
  }

  // Everything is made relative to `base`: DEST for a directory, DEST's directory for anything else.
  const base = rootIsDir ? dest : path.dirname(dest)
  const rootName = rootIsDir ? EMPTY : Buffer.from(path.basename(dest))
  const nameOf = (i: number): Buffer => (i === opts.root ? rootName : entries[i]!.name)
  // Paths relative to base as latin1 strings (one char per byte: names need not be UTF-8).
  const rel = new Map<number, string>()
  rel.set(opts.root, rootName.toString('latin1'))
  for (const i of order) {
    if (i === opts.root) continue
    const p = rel.get(entries[i]!.parent)!
    const n = entries[i]!.name.toString('latin1')
    rel.set(i, p.length ? `${p}/${n}` : n)
  }
  const dirRel = (i: number): string => (i === opts.root ? '' : rel.get(entries[i]!.parent)!)
  const show = (i: number): string => (rel.get(i)!.length ? Buffer.concat([Buffer.from(base), SLASH, Buffer.from(rel.get(i)!, 'latin1')]).toString() : base)

  // DEST as the user gave it (followed, like any path the user names).
  let destStat: fs.Stats | undefined
  try {
    destStat = rootIsDir ? fs.statSync(dest) : fs.lstatSync(dest)
  } catch {
    // absent
  }
  if (destStat) {
    if (rootIsDir && !destStat.isDirectory()) throw new BfsError('EXISTS', `${dest} exists and is not a directory`)
    if (!rootIsDir) {
      if (destStat.isDirectory()) throw new BfsError('EXISTS', `${dest} is a directory`)
      if (!overwrite) throw new BfsError('EXISTS', `${dest} exists; use --overwrite to replace it`)
      if (destStat.isBlockDevice() || destStat.isCharacterDevice()) throw new BfsError('BAD_INPUT', `${dest} is a device; restore replaces it with a file, it does not write into it (restore to an image file, then copy that)`)
    }
  }
  // Like restic and tar, create the missing directories up to the base; remember which.
  const createdAbove: string[] = []
  for (let d = base; !fs.existsSync(d); d = path.dirname(d)) createdAbove.unshift(d)
  if (createdAbove.length) fs.mkdirSync(base, { recursive: true })
  const baseFd = fs.openSync(base, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY)
  const dirs = new DirFds(baseFd)
  try {
    return await restoreInto()
  } finally {
    dirs.close()
    fs.closeSync(baseFd)
  }

  async function restoreInto(): Promise<RestoreResult> {
    // Refuse to overwrite unless asked: find conflicts before writing anything. An
    // existing real directory where the backup has one is merged into, as tar does.
    if (!overwrite && rootIsDir && destStat && fs.readdirSync(dest).length > 0) {
      const conflicts: string[] = []
      const absent = new Set<number>() // nothing below these need be looked at
      for (const i of order) {
        if (i === opts.root) continue
        const e = entries[i]!
        if (absent.has(e.parent)) {
          absent.add(i)
          continue
        }
        let st: Float64Array
        try {
          st = native.fstatatRecord(dirs.get(dirRel(i)), nameOf(i), k.AT_SYMLINK_NOFOLLOW)
        } catch {
          absent.add(i) // absent (or unreachable): fine, and so is everything below it
          continue
        }
        if (!(e.type === EntryType.Dir && (st[native.S_MODE]! & S_IFMT) === S_IFDIR)) {
          conflicts.push(show(i))
          absent.add(i)
          if (conflicts.length >= 5) break
        }
      }
      if (conflicts.length) throw new BfsError('EXISTS', `restore would overwrite ${conflicts[0]}${conflicts.length > 1 ? ` and others` : ''}; use --overwrite or restore elsewhere`)
    }

    const errors: string[] = []
    const warn = (msg: string): void => {
      errors.push(msg)
      opts.reporter?.warn(msg)
    }
    for (const p of set.problems) warn(`${show(p.index)}: what is below it was not restored: ${p.message}`)
    let setidDropped = 0
    let removedAbove = 0 // directories restore made on the way to DEST (and DEST's parents) and removed again
    /** Directories this restore made, with their inode (so that cleaning up removes only those). */
    const created = new Map<number, number>()
    /** Entries that exist now as restore made or found them (directories, symlinks, special files). */
    const made = new Set<number>()
    /** Directories that could not be made or entered: nothing below them is restored. */
    const failedDirs = new Set<number>()

    // Phase 1: directories (writable while we fill them), symlinks, special files.
    const linkFirst = new Map<number, number>() // leader entry → first restored member in this subtree
    const dataFiles: number[] = []
    const followers: number[] = []
    for (const i of order) {
      const e = entries[i]!
      if (i !== opts.root && failedDirs.has(e.parent)) {
        if (e.type === EntryType.Dir) failedDirs.add(i)
        continue
      }
      if (e.type === EntryType.File) {
        const leader = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? e.linkLeader : i
        if (linkFirst.has(leader)) followers.push(i)
        else {
          linkFirst.set(leader, i)
          dataFiles.push(i)
        }
        continue
      }
      if (i === opts.root && rootIsDir) {
        made.add(i)
        continue
      }
      try {
        const dirFd = dirs.get(dirRel(i))
        const name = nameOf(i)
        if (e.type === EntryType.Dir) {
          const ino = makeDir(dirFd, name)
          if (ino !== undefined) created.set(i, ino)
        } else if (e.type === EntryType.Symlink) {
          createOrReplace(dirFd, name, overwrite, (n) => native.symlinkat(e.target!, dirFd, n))
        } else {
          const fmt = { [EntryType.CharDev]: S_IFCHR, [EntryType.BlockDev]: S_IFBLK, [EntryType.Fifo]: 0o010000, [EntryType.Socket]: 0o140000 }[e.type]
          createOrReplace(dirFd, name, overwrite, (n) => native.mknodat(dirFd, n, fmt | 0o600, e.rdevMajor, e.rdevMinor))
        }
        made.add(i)
      } catch (err) {
        if (e.type === EntryType.Dir) {
          failedDirs.add(i)
          warn(`${show(i)}: ${why(err)}; nothing below it was restored`)
        } else {
          warn(`${show(i)}: ${why(err)}`)
        }
      }
    }

    /** mkdirat; an existing real directory is used as it is; with --overwrite anything else there is removed (never followed). Returns the inode of a directory it made. */
    function makeDir(dirFd: number, name: Buffer): number | undefined {
      for (let attempt = 0; ; attempt++) {
        try {
          native.mkdirat(dirFd, name, 0o700)
          const st = native.fstatatRecord(dirFd, name, k.AT_SYMLINK_NOFOLLOW)
          return st[native.S_INO_HI]! * 2 ** 32 + st[native.S_INO_LO]!
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err
        }
        let st: Float64Array
        try {
          st = native.fstatatRecord(dirFd, name, k.AT_SYMLINK_NOFOLLOW)
        } catch {
          continue // gone again: retry
        }
        if ((st[native.S_MODE]! & S_IFMT) === S_IFDIR) return undefined
        if (!overwrite) throw notReplaced('exists and is not a directory (use --overwrite to replace it)')
        try {
          native.unlinkat(dirFd, name, 0) // a symlink is removed itself
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      }
    }

    // Phase 2: file data on the workers, in the order of the data in the streams (dataOrder),
    // in jobs of ~16 MiB.
    // Units on tape (a tiered store): planned up front, recalled pass by pass (restoreTape).
    const failedFiles = new Set<number>()
    let bytes = 0
    let filesDone = 0
    const tape = opts.tape ?? null
    try {
      const pool = opts.pool ?? new WorkerPool(opts.threads ?? os.availableParallelism())
      const readers = set.readers(pool)
      try {
        const all: Array<{ f: RestoreFile; size: number; units: string[] }> = []
        for (const i of dataFiles) {
          const e = entries[i]!
          const d = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? entries[e.linkLeader]! : e
          let flat: number[]
          try {
            flat = await set.extents(d, i)
            for (let j = 2; j < flat.length; j += 4) if (flat[j]) readers.add(flat[j]!)
          } catch (err) {
            // Damage stays local: a file whose data lies in a damaged generation (its
            // manifest or maps unreadable) is reported, the rest is restored.
            if (!(err instanceof BfsError && err.code === 'CORRUPT')) throw err
            warn(`${show(i)}: not restored: ${err.message}`)
            failedFiles.add(i)
            continue
          }
          all.push({
            f: {
              index: i, dir: dirRel(i), name: nameOf(i).toString('latin1'), sizeBytes: d.size, mode: e.mode, uid: e.uid, gid: e.gid,
              times: [e.atimeSec, e.atimeNsec, e.mtimeSec, e.mtimeNsec],
              // copies: a view into the catalog would send the whole catalog with the job
              xattrs: e.xattrs && e.xattrs.map(([n, v]) => [Uint8Array.from(n), Uint8Array.from(v)]),
              extents: flat,
            },
            size: d.size,
            units: (tape || set.warm) && set.unitsOf ? set.unitsOf(flat, d.size) : [],
          })
        }
        // Where the data lies, not the catalog, decides the order: a backup's writers
        // interleave files in the stream, and incrementals or a merge put a file's changed
        // blocks in later units. In catalog order each job's files touched frames all over
        // the units, and a frame was decompressed again by the next job on the other worker
        // (the Linux tree: 1.8 decodes per frame for a full generation, 2.6 after 20
        // incrementals and a merge).
        all.sort(dataOrder)
        /** Jobs of ~16 MiB (at most JOB_FILES files) of `list`, in its order, with the units they read (when they are warmed). */
        const makeJobs = (list: typeof all): Job[] => {
          const jobs: Job[] = [{ files: [], units: new Set() }]
          let jobBytes = 0
          for (const x of list) {
            const job = jobs[jobs.length - 1]!
            job.files.push(x.f)
            if (set.warm) for (const k of x.units) job.units.add(k)
            jobBytes += x.size
            if (jobBytes >= JOB_BYTES || job.files.length >= JOB_FILES) {
              jobs.push({ files: [], units: new Set() })
              jobBytes = 0
            }
          }
          return jobs
        }
        /** Units being fetched into the remote store's cache (set.warm), or fetched. */
        const warming = new Map<string, Promise<boolean>>()
        const warmJob = (jobs: Job[], j: number): Promise<unknown> | null => {
          const job = jobs[j]
          if (!set.warm || !job || job.units.size === 0) return null
          const ps: Array<Promise<boolean>> = []
          for (const k of job.units) {
            let p = warming.get(k)
            if (!p) warming.set(k, (p = set.warm(k)))
            ps.push(p)
          }
          return Promise.all(ps)
        }
        const totalFiles = all.length
        let totalBytes = 0
        for (const x of all) totalBytes += x.size
        opts.reporter?.progress?.({ files: 0, bytes: 0, totalFiles, totalBytes, path: '' })
        await readers.start()
        let interrupted = false
        // On a signal no further job starts, but jobs under way finish: a worker stopped in
        // the middle of a file would leave it half written.
        // an interrupt ends the wait for a job's units (the job does not start)
        const aborted = new Promise<void>((r) => opts.signal?.addEventListener('abort', () => r(), { once: true }))
        const runJobs = async (jobs: Job[]): Promise<void> => {
          const lanes = new Lanes(jobs.length, pool.size)
          // two runners per worker keep its queue fed; each runs its worker's lane
          const runner = async (w: number): Promise<void> => {
            for (let j = lanes.take(w); j >= 0; j = lanes.take(w)) {
              if (opts.signal?.aborted) {
                interrupted = true
                return
              }
              const files = jobs[j]!.files
              if (!files.length) continue
              // a remote store's units: this job's (and the lane's next ones') fetched into its
              // cache while the workers decode, so that a worker never waits for a GET
              for (let a = 1; a <= WARM_AHEAD; a++) void warmJob(jobs, j + a)
              const warm = warmJob(jobs, j)
              if (warm) {
                await (opts.signal ? Promise.race([warm, aborted]) : warm)
                if (opts.signal?.aborted) {
                  interrupted = true
                  return
                }
              }
              const job: RestoreJob = { files, specId: readers.spec.id, baseFd, baseDisplay: base, overwrite, chown: asRoot, euid, egid }
              const reply = await pool.run({ op: 'restoreFiles', job }, [], w)
              const r = reply.result as RestoreJobResult
              bytes += r.bytes
              filesDone += files.length - r.failed.length
              setidDropped += r.setidDropped
              for (const i of r.failed) failedFiles.add(i)
              for (const m of r.errors) warn(m)
              const last = files[files.length - 1]!
              opts.reporter?.progress?.({ files: filesDone, bytes, totalFiles, totalBytes, path: last.dir ? `${last.dir}/${last.name}` : last.name })
            }
          }
          await Promise.all(Array.from({ length: pool.size * 2 }, (_, i) => runner(i % pool.size)))
          if (interrupted) throw new BfsError('INTERRUPTED', 'restore interrupted')
        }
        if (!tape || !set.planTape) await runJobs(makeJobs(all))
        else {
          // The whole set planned up front: the units not on disk in the tape's order, in
          // passes of half the buffer cache (the next pass is recalled while one is
          // restored); a file is restored once the pass holding its last unit is in, and a
          // unit stays pinned until every file that reads it is restored.
          const plan = set.planTape(tape.tiered, all.flatMap((x) => x.units), Math.max(1, Math.floor((tape.passBytes ?? tape.tiered.cold!.cache.limitBytes) / 2)))
          opts.reporter?.tapePlan?.(plan)
          const groups: Array<typeof all> = Array.from({ length: plan.passes.length + 1 }, () => [])
          const refs = new Map<string, number>()
          for (const x of all) {
            let p = -1
            for (const k of x.units) {
              const q = plan.passOf.get(k)
              if (q === undefined) continue
              p = Math.max(p, q)
              refs.set(k, (refs.get(k) ?? 0) + 1)
            }
            groups[p + 1]!.push(x)
          }
          const failedUnits = new Map<string, string>()
          const recall = (p: number): Promise<Map<string, string>> => {
            const r = bringIn(tape.tiered, plan.passes[p]!, tape.holder, opts.signal)
            r.catch(() => undefined) // awaited below; meanwhile an interruption must not be unhandled
            return r
          }
          try {
            let pending = plan.passes.length ? recall(0) : null
            await runJobs(makeJobs(groups[0]!))
            for (let p = 0; p < plan.passes.length; p++) {
              for (const [k, why] of await pending!) failedUnits.set(k, why)
              pending = p + 1 < plan.passes.length ? recall(p + 1) : null
              const ready: typeof all = []
              for (const x of groups[p + 1]!) {
                const bad = x.units.find((k) => failedUnits.has(k))
                if (bad === undefined) ready.push(x)
                else {
                  warn(`${show(x.f.index)}: not restored: ${failedUnits.get(bad)}`)
                  failedFiles.add(x.f.index)
                }
              }
              await runJobs(makeJobs(ready))
              const done: string[] = []
              for (const x of groups[p + 1]!) {
                for (const k of x.units) {
                  const n = refs.get(k)
                  if (n === undefined) continue
                  if (n <= 1) {
                    refs.delete(k)
                    done.push(k)
                  } else refs.set(k, n - 1)
                }
              }
              if (done.length) tape.tiered.unpin(done, tape.holder)
            }
          } finally {
            tape.tiered.unpin(null, tape.holder)
          }
        }
      } finally {
        await readers.close()
        await pool.close()
      }
    } catch (err) {
      // Interrupted (or worse): nothing more is restored; remove what is left empty.
      const removed = cleanUp(true).size + removedAbove
      if (err instanceof BfsError && err.code === 'INTERRUPTED') {
        throw new BfsError('INTERRUPTED', `restore interrupted; ${filesDone} files were restored into ${base}, without the modes and times of their directories` + (removed ? `; removed ${removed} empty directories it had created` : ''))
      }
      throw err
    }

    // Phase 3: hard links, then metadata of everything that is not a regular file, deepest first.
    for (const i of followers) {
      const e = entries[i]!
      const first = linkFirst.get(e.flags & ENTRY_FLAG_LINK_FOLLOWER ? e.linkLeader : i)!
      if (failedFiles.has(first)) {
        warn(`${show(i)}: not linked: ${show(first)}, which it is a hard link of, could not be restored`)
        continue
      }
      try {
        const fromFd = dirs.get(dirRel(first))
        const fromName = nameOf(first)
        const dirFd = dirs.get(dirRel(i))
        createOrReplace(dirFd, nameOf(i), overwrite, (n) => native.linkat(fromFd, fromName, dirFd, n, 0))
      } catch (err) {
        warn(`${show(i)}: cannot link (${why(err)})`)
      }
    }

    const removed = errors.length ? cleanUp(false) : new Set<number>()
    for (let x = order.length - 1; x >= 0; x--) {
      const i = order[x]!
      const e = entries[i]!
      if (e.type === EntryType.File || !made.has(i) || removed.has(i)) continue
      const problems: string[] = []
      try {
        setidDropped += applyMeta(i, e, problems)
      } catch (err) {
        problems.push(why(err))
      }
      if (problems.length) warn(`${show(i)}: cannot set metadata (${problems.join('; ')})`)
    }
    if (setidDropped) opts.reporter?.warn(`${setidDropped} file${setidDropped === 1 ? '' : 's'} restored without their setuid/setgid bits (their owner could not be restored)`)
    return { entries: order.length, files: dataFiles.length + followers.length, bytes, errors, setidDropped, removedDirs: removed.size + removedAbove }

    /**
     * Removes, deepest first, the directories this restore made that are empty now:
     * after an interruption all of them, else those the backup has entries in (an empty
     * directory of the backup is restored, not left over). Each is checked to be the
     * directory restore made (same inode) and removed with rmdir relative to its
     * parent's fd, so never through a symlink and never with anything in it. Then DEST
     * and the parents restore created for it, if they are empty now.
     */
    function cleanUp(interrupted: boolean): Set<number> {
      removedAbove = 0
      const gone = new Set<number>()
      for (let x = order.length - 1; x >= 0; x--) {
        const i = order[x]!
        const ino = created.get(i)
        if (ino === undefined || (!interrupted && entries[i]!.childCount === 0)) continue
        try {
          const dirFd = dirs.get(dirRel(i))
          const st = native.fstatatRecord(dirFd, nameOf(i), k.AT_SYMLINK_NOFOLLOW)
          if ((st[native.S_MODE]! & S_IFMT) !== S_IFDIR || st[native.S_INO_HI]! * 2 ** 32 + st[native.S_INO_LO]! !== ino) continue
          native.unlinkat(dirFd, nameOf(i), k.AT_REMOVEDIR)
          dirs.drop(rel.get(i)!)
          gone.add(i)
        } catch {
          // not empty (it holds restored entries), or gone: leave it
        }
      }
      // Then the directories restore made on the way to the base (DEST itself for a
      // directory, unless the backup's directory is empty and restored as such), deepest
      // first, as long as they are empty. These are the user's path: removed by name.
      if (!rootIsDir || interrupted || root.childCount > 0) {
        for (let a = createdAbove.length - 1; a >= 0; a--) {
          try {
            fs.rmdirSync(createdAbove[a]!)
          } catch {
            break
          }
          if (createdAbove[a] === dest) gone.add(opts.root)
          else removedAbove++
        }
      }
      return gone
    }
  }

  /**
   * Owner, mode, xattrs and times of a directory, symlink or special file, in that order
   * (chown clears setuid bits and security.capability), relative to its parent's fd with
   * AT_SYMLINK_NOFOLLOW (the root directory through DEST's own fd). A step that fails is
   * added to `problems` and the others are still made. Returns 1 if setuid or setgid
   * bits were dropped.
   */
  function applyMeta(i: number, e: Entry, problems: string[]): number {
    const step = (what: string, fn: () => void): boolean => {
      try {
        fn()
        return true
      } catch (err) {
        problems.push(`${what}: ${why(err)}`)
        return false
      }
    }
    const top = i === opts.root && rootIsDir
    const dirFd = top ? -1 : dirs.get(dirRel(i))
    const name = nameOf(i)
    const nofollow = k.AT_SYMLINK_NOFOLLOW
    let ownerOk = e.uid === euid
    let groupOk = e.gid === egid
    if (asRoot) {
      ownerOk = groupOk = step(`owner ${e.uid}:${e.gid}`, () => (top ? fs.fchownSync(baseFd, e.uid, e.gid) : native.fchownat(dirFd, name, e.uid, e.gid, nofollow)))
    }
    const mode = setidSafeMode(e.mode, false, ownerOk, groupOk)
    if (e.type !== EntryType.Symlink) step('mode', () => (top ? fs.fchmodSync(baseFd, mode) : native.fchmodat(dirFd, name, mode, nofollow)))
    if (e.xattrs) {
      for (const [n, v] of e.xattrs) step(`xattr ${n}`, () => (top ? native.fsetxattr(baseFd, n, v) : native.setxattrat(dirFd, name, n, v, nofollow)))
    }
    step('times', () => (top ? native.futimens(baseFd, e.atimeSec, e.atimeNsec, e.mtimeSec, e.mtimeNsec) : native.utimensat(dirFd, name, e.atimeSec, e.atimeNsec, e.mtimeSec, e.mtimeNsec, nofollow)))
    return e.type !== EntryType.Symlink && mode !== e.mode ? 1 : 0
  }
}
