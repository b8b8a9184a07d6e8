import fs from 'node:fs'
import os from 'node:os'
import * as native from '../native/index.js'
import { DirFds, K, renameOver, safeResolve, setidSafeMode, tmpName, why } from './restore-fs.js'
import type { Extent } from '../format/maps.js'
import { specReader } from '../blocks/spec.js'
import type { BlockReader } from '../blocks/reader.js'
import type { WorkerReply, WorkerRequest } from './workers/protocol.js'

/** One regular file for a restore worker to create, fill and finish. */
export interface RestoreFile {
  /** Catalog entry index (reported back when the file could not be restored). */
  index: number
  /**
   * Its directory relative to the job's base directory ('' = the base itself) and its
   * name, as latin1 strings (one char per byte; names need not be UTF-8): they cross to
   * the worker as compact strings, where a Buffer view into the catalog would drag the
   * whole catalog along.
   */
  dir: string
  name: string
  sizeBytes: number
  mode: number
  uid: number
  gid: number
  times: [number, number, number, number]
  xattrs: Array<[Uint8Array, Uint8Array]> | null
  /** Flattened resolved extents: fileBlock, count, gen, streamBlock, … */
  extents: number[]
}

export interface RestoreJob {
  files: RestoreFile[]
  /** The ReaderSpec (sent to every worker before the jobs) whose reader reads the data. */
  specId: string
  /**
   * An fd of the directory every `dir` is relative to, opened by the main thread: worker
   * threads share the process's fd table. Never closed here.
   */
  baseFd: number
  /** The base directory's path, for messages only. */
  baseDisplay: string
  overwrite: boolean
  /** Restore owners (the restore runs as root). */
  chown: boolean
  /** Without chown: the ids new files get, to tell whether an owner is restored anyway. */
  euid: number
  egid: number
}

export interface RestoreJobResult {
  bytes: number
  errors: string[]
  /** Entry indexes of the files that were not restored. */
  failed: number[]
  /** Files restored without their setuid/setgid bits (owner or group not restored). */
  setidDropped: number
}

/** A file's flattened extents as the block reader takes them. */
function extentsOf(flat: number[]): Extent[] {
  const out: Extent[] = new Array(flat.length / 4)
  for (let i = 0, k = 0; i < flat.length; i += 4, k++) out[k] = { fileBlock: flat[i]!, count: flat[i + 1]!, gen: flat[i + 2]!, streamBlock: flat[i + 3]! }
  return out
}

const EEXIST = os.constants.errno.EEXIST

/** Where a message names a file: base/dir/name. */
function display(job: RestoreJob, f: RestoreFile): string {
  const parts = [Buffer.from(job.baseDisplay)]
  if (f.dir.length) parts.push(Buffer.from('/'), Buffer.from(f.dir, 'latin1'))
  parts.push(Buffer.from('/'), Buffer.from(f.name, 'latin1'))
  return Buffer.concat(parts).toString()
}

/**
 * Creates one file in its directory (an fd from `dirs`, never reached through a symlink)
 * with O_CREAT | O_EXCL | O_NOFOLLOW, writes its data and sets everything through its fd.
 * With --overwrite an existing entry is replaced: the file is written under a temporary
 * name beside it and renamed over it at the end (never written through a symlink, hard
 * link or fifo that was there). Metadata errors are reported and keep the file; a data
 * error removes what was written (and leaves an entry that was replaced as it was).
 */
function restoreOne(job: RestoreJob, reader: BlockReader, f: RestoreFile, dirs: DirFds, result: RestoreJobResult): number {
  const k = K()
  const name = Buffer.from(f.name, 'latin1')
  const dirFd = dirs.get(f.dir)
  const flags = k.O_WRONLY | k.O_CREAT | k.O_EXCL | k.O_NOFOLLOW
  let made: Buffer | string = name
  let fd = native.openat2(dirFd, name, flags, 0o600, safeResolve(), EEXIST)
  if (fd === -EEXIST) {
    if (!job.overwrite) throw new Error('exists (use --overwrite to replace it)')
    for (let attempt = 0; fd === -EEXIST; attempt++) {
      if (attempt >= 100) throw new Error('cannot find a free temporary name')
      made = tmpName()
      fd = native.openat2(dirFd, made, flags, 0o600, safeResolve(), EEXIST)
    }
  }
  let written = 0
  let placed = false
  const meta: string[] = []
  try {
    let end = 0
    if (f.extents.length) {
      // frame views straight to the file (no copy); holes are skipped and stay holes
      reader.visitSync(reader.file(extentsOf(f.extents), f.sizeBytes), 0, f.sizeBytes, (p) => {
        if (!p.data) return
        let off = 0
        while (off < p.bytes) off += fs.writeSync(fd, p.data, p.offset + off, p.bytes - off, p.filePos + off)
        written += p.bytes
        end = p.filePos + p.bytes
      })
    }
    if (end < f.sizeBytes) fs.ftruncateSync(fd, f.sizeBytes)
    // Owner before mode (chown clears setuid bits), xattrs after both (chown also clears
    // security.capability), times last.
    let ownerOk = f.uid === job.euid
    let groupOk = f.gid === job.egid
    if (job.chown) {
      try {
        fs.fchownSync(fd, f.uid, f.gid)
        ownerOk = groupOk = true
      } catch (err) {
        ownerOk = groupOk = false
        meta.push(`cannot set owner ${f.uid}:${f.gid} (${why(err)})`)
      }
    }
    const mode = setidSafeMode(f.mode, true, ownerOk, groupOk)
    if (mode !== f.mode) result.setidDropped++
    fs.fchmodSync(fd, mode)
    if (f.xattrs) {
      for (const [n, v] of f.xattrs) {
        try {
          native.fsetxattr(fd, Buffer.from(n), Buffer.from(v))
        } catch (err) {
          meta.push(`cannot set xattr ${Buffer.from(n).toString()} (${why(err)})`)
        }
      }
    }
    native.futimens(fd, f.times[0], f.times[1], f.times[2], f.times[3])
    if (made !== name) renameOver(dirFd, made, name)
    placed = true
  } finally {
    native.close(fd)
    // Never leave damaged data behind looking like a restored file.
    if (!placed) {
      try {
        native.unlinkat(dirFd, made, 0)
      } catch {
        // already gone
      }
    }
  }
  if (meta.length) result.errors.push(`${display(job, f)}: ${meta.join('; ')}`)
  return written
}

export function restoreFiles(req: WorkerRequest): WorkerReply {
  const job = req.job as RestoreJob
  const result: RestoreJobResult = { bytes: 0, errors: [], failed: [], setidDropped: 0 }
  const reader = specReader(job.specId)
  // files come in the order of their data (restore.ts dataOrder), which moves between a few
  // directories at a time where the backup's writers interleaved them
  const dirs = new DirFds(job.baseFd, 16)
  try {
    for (const f of job.files) {
      try {
        result.bytes += restoreOne(job, reader, f, dirs, result)
      } catch (err) {
        result.failed.push(f.index)
        result.errors.push(`${display(job, f)}: ${why(err)}`)
      }
    }
  } finally {
    dirs.close()
  }
  return { id: req.id, result }
}
