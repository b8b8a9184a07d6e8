import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as native from '../native/index.js'
import { EntryType, ENTRY_FLAG_LINK_FOLLOWER, type Entry } from '../format/catalog.js'
import type { Manifest } from '../format/manifest.js'
import { Repository, keys } from './repository.js'
import { WorkerPool } from './pool.js'
import { ObjectResolver } from './resolve.js'
import { BfsError } from './errors.js'
import { subtree } from './tree.js'
import type { RestoreFile, RestoreJob, RestoreJobResult } from './restore-worker.js'

export interface RestoreOptions {
  /** Subtree root entry index (0 = the whole generation). */
  root: number
  dest: string
  overwrite?: boolean
  threads?: number
  signal?: AbortSignal
  reporter?: { warn(msg: string): void; progress?(p: { files: number; bytes: number }): void }
}

export interface RestoreResult {
  entries: number
  files: number
  bytes: number
  errors: string[]
}

/** Bytes of file data per job handed to a worker: large enough to amortize, small enough to balance. */
const JOB_BYTES = 16 << 20
const JOB_FILES = 2000

/**
 * Restores a generation (or a subtree) into `dest`: directories and special files first,
 * file data in parallel on worker threads (each decompressing its own frames), then hard
 * links, then metadata of everything else with directories last (bottom-up), so that
 * times and read-only modes stick.
 */
export async function restoreTree(repo: Repository, man: Manifest, opts: RestoreOptions): Promise<RestoreResult> {
  const entries = repo.catalog(man.id)
  const resolver = new ObjectResolver(repo)
  const chown = process.getuid?.() === 0
  const dest = path.resolve(opts.dest)
  const root = entries[opts.root]!
  const order = subtree(entries, opts.root)
  const target = new Map<number, Buffer>()
  const destBuf = Buffer.from(dest)
  target.set(opts.root, destBuf)
  for (const i of order) if (i !== opts.root) target.set(i, Buffer.concat([target.get(entries[i]!.parent)!, Buffer.from('/'), entries[i]!.name]))

  // Refuse to overwrite unless asked: find conflicts before writing anything.
  const destExists = fs.existsSync(dest)
  // Like restic, create the destination's missing parent directories.
  fs.mkdirSync(path.dirname(dest), { recursive: true })
  if (destExists) {
    const st = fs.lstatSync(dest)
    if (root.type === EntryType.Dir && !st.isDirectory()) throw new BfsError('EXISTS', `${dest} exists and is not a directory`)
    if (root.type !== EntryType.Dir && !opts.overwrite) throw new BfsError('EXISTS', `${dest} exists; use --overwrite to replace it`)
    if (root.type === EntryType.Dir && !opts.overwrite && fs.readdirSync(dest).length > 0) {
      const conflicts: string[] = []
      for (const i of order) {
        if (i === opts.root) continue
        const t = target.get(i)!
        try {
          const s = fs.lstatSync(t)
          if (!(s.isDirectory() && entries[i]!.type === EntryType.Dir)) conflicts.push(t.toString())
        } catch {
          // absent: fine
        }
        if (conflicts.length >= 5) break
      }
      if (conflicts.length) throw new BfsError('EXISTS', `restore would overwrite ${conflicts[0]}${conflicts.length > 1 ? ` and others` : ''}; use --overwrite or restore elsewhere`)
    }
  }

  const errors: string[] = []
  const warn = (msg: string): void => {
    errors.push(msg)
    opts.reporter?.warn(msg)
  }
  // Phase 1: directories (writable while we fill them), symlinks, special files.
  const linkFirst = new Map<number, number>() // leader entry → first restored member in this subtree
  const dataFiles: number[] = []
  const followers: number[] = []
  for (const i of order) {
    const e = entries[i]!
    const t = target.get(i)!
    try {
      switch (e.type) {
        case EntryType.Dir:
          if (i === opts.root && destExists) break
          try {
            fs.mkdirSync(t, { mode: 0o700 })
          } catch (err) {
            if (!(opts.overwrite && (err as NodeJS.ErrnoException).code === 'EEXIST' && fs.lstatSync(t).isDirectory())) throw err
          }
          break
        case EntryType.Symlink:
          if (opts.overwrite) fs.rmSync(t, { force: true })
          fs.symlinkSync(e.target!, t)
          break
        case EntryType.File: {
          const leader = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? e.linkLeader : i
          if (linkFirst.has(leader)) followers.push(i)
          else {
            linkFirst.set(leader, i)
            dataFiles.push(i)
          }
          break
        }
        default: {
          if (opts.overwrite) fs.rmSync(t, { force: true })
          const fmt = { [EntryType.CharDev]: 0o020000, [EntryType.BlockDev]: 0o060000, [EntryType.Fifo]: 0o010000, [EntryType.Socket]: 0o140000 }[e.type]
          native.mknod(t, fmt | 0o600, e.rdevMajor, e.rdevMinor)
        }
      }
    } catch (err) {
      warn(`${t}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }

  // Phase 2: file data on the workers, in catalog (= stream) order, in jobs of ~16 MiB.
  const gens: RestoreJob['gens'] = {}
  const genInfo = (g: number): void => {
    if (gens[g]) return
    const m = repo.manifest(g)
    gens[g] = { dir: repo.store.path(keys.genDir(g)), unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, units: m.units.map((u) => ({ rawBlocks: u.rawBlocks })) }
  }
  const pool = new WorkerPool(opts.threads ?? os.availableParallelism())
  let bytes = 0
  let filesDone = 0
  try {
    const jobs: RestoreFile[][] = [[]]
    let jobBytes = 0
    for (const i of dataFiles) {
      const e = entries[i]!
      const d = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? entries[e.linkLeader]! : e
      const flat: number[] = []
      if (d.objGen) {
        for (const x of resolver.resolve(d.objGen, d.objIndex)) {
          genInfo(x.gen)
          flat.push(x.fileBlock, x.count, x.gen, x.streamBlock)
        }
      }
      jobs[jobs.length - 1]!.push({
        path: target.get(i)!, sizeBytes: d.size, mode: e.mode, uid: e.uid, gid: e.gid,
        times: [e.atimeSec, e.atimeNsec, e.mtimeSec, e.mtimeNsec], xattrs: e.xattrs, extents: flat,
      })
      jobBytes += d.size
      if (jobBytes >= JOB_BYTES || jobs[jobs.length - 1]!.length >= JOB_FILES) {
        jobs.push([])
        jobBytes = 0
      }
    }
    let next = 0
    const runner = async (): Promise<void> => {
      while (next < jobs.length) {
        if (opts.signal?.aborted) throw new BfsError('INTERRUPTED', 'restore interrupted')
        const files = jobs[next++]!
        if (!files.length) continue
        const job: RestoreJob = { files, gens, overwrite: !!opts.overwrite, chown }
        const reply = await pool.run({ op: 'restoreFiles', job })
        const r = reply.result as RestoreJobResult
        bytes += r.bytes
        filesDone += files.length
        for (const m of r.errors) warn(m)
        opts.reporter?.progress?.({ files: filesDone, bytes })
      }
    }
    await Promise.all(Array.from({ length: pool.size * 2 }, runner))
  } finally {
    await pool.close()
  }

  // Phase 3: hard links, then metadata of everything that is not a regular file, deepest first.
  for (const i of followers) {
    const e = entries[i]!
    const leader = e.flags & ENTRY_FLAG_LINK_FOLLOWER ? e.linkLeader : i
    try {
      if (opts.overwrite) fs.rmSync(target.get(i)!, { force: true })
      fs.linkSync(target.get(linkFirst.get(leader)!)!, target.get(i)!)
    } catch (err) {
      warn(`${target.get(i)}: cannot link (${(err as NodeJS.ErrnoException).code})`)
    }
  }
  for (let k = order.length - 1; k >= 0; k--) {
    const i = order[k]!
    const e = entries[i]!
    if (e.type === EntryType.File) continue
    const t = target.get(i)!
    try {
      applyMeta(t, e, chown)
    } catch (err) {
      warn(`${t}: cannot set metadata (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
  }
  return { entries: order.length, files: dataFiles.length + followers.length, bytes, errors }
}

function applyMeta(t: Buffer, e: Entry, chown: boolean): void {
  if (e.xattrs) for (const [n, v] of e.xattrs) native.setXattr(t, n, v)
  if (e.type === EntryType.Symlink) {
    if (chown) fs.lchownSync(t, e.uid, e.gid)
  } else {
    if (chown) fs.chownSync(t, e.uid, e.gid)
    fs.chmodSync(t, e.mode)
  }
  native.setTimes(t, e.atimeSec, e.atimeNsec, e.mtimeSec, e.mtimeNsec, true)
}
