import fs from 'node:fs'
import * as native from '../native/index.js'
import { FrameDecompressor } from '../codec/zstd.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import { FormatError } from '../format/errors.js'
import { UnitFile } from './unitfile.js'
import type { WorkerReply, WorkerRequest } from './worker.js'

/** One regular file for a restore worker to create, fill and finish. */
export interface RestoreFile {
  path: Uint8Array
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
  overwrite: boolean
  chown: boolean
}

export interface RestoreJobResult {
  bytes: number
  errors: string[]
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

function restoreOne(job: RestoreJob, f: RestoreFile): number {
  const p = Buffer.from(f.path.buffer, f.path.byteOffset, f.path.byteLength)
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | (job.overwrite ? fs.constants.O_TRUNC : fs.constants.O_EXCL)
  const fd = fs.openSync(p, flags, 0o600)
  let written = 0
  let ok = false
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
    if (f.xattrs) for (const [n, v] of f.xattrs) native.setXattr(p, Buffer.from(n), Buffer.from(v))
    if (job.chown) fs.fchownSync(fd, f.uid, f.gid)
    fs.fchmodSync(fd, f.mode)
    ok = true
  } finally {
    fs.closeSync(fd)
    // Never leave damaged data behind looking like a restored file.
    if (!ok) fs.rmSync(p, { force: true })
  }
  native.setTimes(p, f.times[0], f.times[1], f.times[2], f.times[3], false)
  return written
}

export function restoreFiles(req: WorkerRequest): WorkerReply {
  const job = req.job as RestoreJob
  const result: RestoreJobResult = { bytes: 0, errors: [] }
  for (const f of job.files) {
    try {
      result.bytes += restoreOne(job, f)
    } catch (err) {
      const p = Buffer.from(f.path).toString()
      result.errors.push(`${p}: ${(err as Error).message}`)
    }
  }
  return { id: req.id, result }
}
