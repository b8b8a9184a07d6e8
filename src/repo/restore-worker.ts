import fs from 'node:fs'
import os from 'node:os'
import * as native from '../native/index.js'
import { DirFds, K, renameOver, safeResolve, setidSafeMode, tmpName, why } from './restore-fs.js'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import { FormatError } from '../format/errors.js'
import { UnitFile } from './unitfile.js'
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
  /** gen id → { unit file path prefix info } */
  gens: Record<number, { dir: string; unitBlocks: number; frameBlocks: number; units: Array<{ rawBlocks: number }> }>
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

const dec = new FrameDecompressor()
const units = new Map<string, UnitFile>()
let frameKey = ''
let frameBuf = Buffer.allocUnsafe(0)
let frameData: Buffer = Buffer.allocUnsafe(0)

function unitFile(job: RestoreJob, gen: number, unit: number): UnitFile {
  const key = `${gen}:${unit}`
  let u = units.get(key)
  if (!u) {
    const g = job.gens[gen]
    if (!g || !g.units[unit]) throw new FormatError('BAD_VALUE', `gen${gen} has no unit ${unit}`)
    if (units.size > 64) {
      for (const v of units.values()) v.close()
      units.clear()
    }
    u = UnitFile.open(`${g.dir}/unit-${String(unit).padStart(8, '0')}`, { genId: gen, unitIndex: unit, rawBlocks: g.units[unit]!.rawBlocks, frameBlocks: g.frameBlocks })
    units.set(key, u)
  }
  return u
}

/** Returns the decompressed frame holding stream block `sb` of `gen` and the block's offset in it. */
function frameFor(job: RestoreJob, gen: number, sb: number): { data: Buffer; offset: number; blocksLeft: number } {
  const g = job.gens[gen]!
  const unit = Math.floor(sb / g.unitBlocks)
  const inUnit = sb - unit * g.unitBlocks
  const frame = Math.floor(inUnit / g.frameBlocks)
  const key = `${gen}:${unit}:${frame}`
  const u = unitFile(job, gen, unit)
  if (key !== frameKey) {
    const raw = u.table.entries[frame]?.rawBytes
    if (raw === undefined) throw new FormatError('BAD_VALUE', `gen${gen}: stream block ${sb} is past the end of unit ${unit}`)
    if (frameBuf.length < raw) frameBuf = Buffer.allocUnsafe(Math.max(raw, g.frameBlocks * BLOCK_BYTES))
    frameKey = ''
    frameData = u.readFrame(frame, frameBuf, dec)
    frameKey = key
  }
  const blockInFrame = inUnit - frame * g.frameBlocks
  return { data: frameData, offset: blockInFrame * BLOCK_BYTES, blocksLeft: frameData.length / BLOCK_BYTES - blockInFrame }
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
function restoreOne(job: RestoreJob, f: RestoreFile, dirs: DirFds, result: RestoreJobResult): number {
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
    const ex = f.extents
    for (let i = 0; i < ex.length; i += 4) {
      let fb = ex[i]!
      let left = ex[i + 1]!
      const gen = ex[i + 2]!
      let sb = ex[i + 3]!
      while (left > 0) {
        const fr = frameFor(job, gen, sb)
        const n = Math.min(left, fr.blocksLeft)
        const pos = fb * BLOCK_BYTES
        const len = Math.min(n * BLOCK_BYTES, f.sizeBytes - pos)
        if (len <= 0) break
        let off = 0
        while (off < len) off += fs.writeSync(fd, fr.data, fr.offset + off, len - off, pos + off)
        written += len
        end = pos + len
        fb += n
        sb += n
        left -= n
      }
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
  const dirs = new DirFds(job.baseFd, 4)
  try {
    for (const f of job.files) {
      try {
        result.bytes += restoreOne(job, f, dirs, result)
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
