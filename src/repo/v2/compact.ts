/**
 * `bfs compact` on a format 2 repository (native-notes/format.md §2.20.8): settled units are
 * recompressed at a high zstd level, frame by frame, at the same frame size and with the same
 * raw bytes (so every frame check, every extent and every block hash stays as it is), written
 * as v2 units (revision + 1, the level in the header) and atomically replaced (temporary
 * file, fsync, rename, directory fsync: §2.20.2). The header's level is the resume marker: a
 * unit already at the target level is skipped, so a compact killed anywhere resumes where it
 * stopped. Readers keep working: an open descriptor keeps the old inode, a unit opened later
 * is the new one, and their live blocks are byte-identical (§2.20.9).
 *
 * Under the maintenance lock, as a run of its own (kind `compact`), like prune; it touches only
 * units of runs committed at least `minAgeMs` ago (a running backup writes only its own run).
 */
import os from 'node:os'
import { BLOCK_BYTES, frameCheck, hashBlocks, HASH_BYTES, type HashAlg } from '../../codec/hash.js'
import { FrameCompressor, FrameDecompressor, decompressFrame, rethrowUnavailable } from '../../codec/zstd.js'
import { FormatError } from '../../format/errors.js'
import { keys2, RUN_RE, UNIT2_RE } from '../../format/v2/layout.js'
import { tapeKeys } from '../tapecat.js'
import type { RunRecord } from '../../format/v2/records.js'
import { type DeadRange, UNIT_V2_HEADER_BYTES, decodeAnyUnitHeader, decodeUnitHeaderV2, encodeUnitFileV2, parseUnitFile } from '../../format/v2/unit.js'
import type { SeekEntry } from '../../format/unit.js'
import { StoreError } from '../../store/store.js'
import type { Repo2 } from './repo2.js'
import { WorkerPool } from '../pool.js'
import type { WorkerReply, WorkerRequest } from '../workers/protocol.js'

/**
 * The default target level, chosen by measurement (format.md §2.20.8: CPU per MB and ratio of
 * levels 9 … 19 on the bench image and the Linux tree in 1 MiB frames).
 */
export const DEFAULT_COMPACT_LEVEL = 12
/** Units of runs committed less than this long ago are not settled yet. */
export const DEFAULT_MIN_AGE_MS = 7 * 86_400_000

export interface CompactUnit {
  stream: number
  unit: number
  key: string
  /** Stored bytes now. */
  bytes: number
  /** Raw bytes (rawBlocks × 4096). */
  rawBytes: number
  version: 1 | 2
  /** v2: the header's level; v1: null (written at the ingest level, not recorded). */
  level: number | null
}

export interface CompactSurvey {
  /** Settled units below the target level, in stream and unit order. */
  todo: CompactUnit[]
  /** Units already at (or above) the target level: done by an earlier compact. */
  done: { units: number; bytes: number; rawBytes: number }
  /** Units of runs committed less than --min-age ago. */
  young: { units: number; bytes: number }
  /** gens/N directories not looked at, with why (not committed, no run record). */
  leftAlone: Array<{ run: number; why: string }>
  /** Unit files whose header does not read: left for bfs verify. */
  unreadable: Array<{ key: string; why: string }>
}

const nameOf = (k: string): string => k.slice(k.lastIndexOf('/') + 1)

/** The units compact would rewrite, and what it leaves and why. Reads only unit headers. */
export function surveyCompact(repo: Repo2, o: { level: number; minAgeMs: number; now?: Date }): CompactSurvey {
  const now = (o.now ?? new Date()).getTime()
  const runs = new Map<number, RunRecord>(repo.runs().map((r) => [r.run, r]))
  const sv: CompactSurvey = { todo: [], done: { units: 0, bytes: 0, rawBytes: 0 }, young: { units: 0, bytes: 0 }, leftAlone: [], unreadable: [] }
  // units the tape catalog knows stay as the catalog describes them (format.md §2.18)
  const onTape = tapeKeys(repo.store)
  for (const name of repo.sync.listSync(keys2.gens).map(nameOf)) {
    if (!RUN_RE.test(name)) continue
    const run = Number(name)
    const rec = runs.get(run)
    if (!rec) {
      sv.leftAlone.push({ run, why: 'no run record' })
      continue
    }
    if (rec.state !== 'committed') {
      sv.leftAlone.push({ run, why: `its run is ${rec.state}` })
      continue
    }
    const young = now - Date.parse(rec.ended ?? rec.started) < o.minAgeMs
    const units = repo.sync
      .listSync(keys2.genDir(run))
      .map(nameOf)
      .flatMap((f) => {
        const m = UNIT2_RE.exec(f)
        return m ? [Number(m[1])] : []
      })
      .sort((a, b) => a - b)
    for (const u of units) {
      const key = keys2.unit(run, u)
      if (onTape.has(key)) continue
      let head: Buffer
      let bytes: number
      try {
        const blob = repo.sync.openSync(key)
        try {
          bytes = blob.sizeBytes
          head = blob.readSync({ offset: 0, length: Math.min(UNIT_V2_HEADER_BYTES, bytes) })
        } finally {
          blob.closeSync()
        }
      } catch (err) {
        if (err instanceof StoreError && err.code === 'ENOENT') continue
        if (err instanceof StoreError) {
          sv.unreadable.push({ key, why: err.message })
          continue
        }
        throw err
      }
      if (young) {
        sv.young.units++
        sv.young.bytes += bytes
        continue
      }
      let version: 1 | 2
      let level: number | null
      let rawBlocks: number
      try {
        const h = decodeAnyUnitHeader(head, repo.store.where(key))
        version = h.version
        rawBlocks = h.rawBlocks
        level = h.version === 2 ? decodeUnitHeaderV2(head, repo.store.where(key)).level : null
        if (h.stream !== run || h.unitIndex !== u) throw new FormatError('BAD_VALUE', `${repo.store.where(key)}: unit header names stream ${h.stream}, unit ${h.unitIndex}`)
      } catch (err) {
        if (!(err instanceof FormatError)) throw err
        sv.unreadable.push({ key, why: err.message })
        continue
      }
      const rawBytes = rawBlocks * BLOCK_BYTES
      if (level !== null && level >= o.level) {
        sv.done.units++
        sv.done.bytes += bytes
        sv.done.rawBytes += rawBytes
        continue
      }
      sv.todo.push({ stream: run, unit: u, key, bytes, rawBytes, version, level })
    }
  }
  return sv
}

/** A frame whose bytes do not check: the unit is left as it is (compact never rewrites damage). */
export class DamagedUnit extends Error {}

/** Compresses frames at one level; keeps its zstd contexts and buffers across units. */
export class Recompressor {
  private readonly c: FrameCompressor
  private readonly d = new FrameDecompressor()
  private out = Buffer.alloc(0)
  private back = Buffer.alloc(0)
  private hashes = Buffer.alloc(0)

  constructor(
    readonly level: number,
    private readonly hashAlg: HashAlg,
  ) {
    this.c = new FrameCompressor(level)
  }

  /**
   * The unit file `file` (either version) recompressed as a v2 unit at this level: each
   * frame decoded (zstd's checksum), its blocks hashed against its frame check, compressed
   * again and the result decoded back and compared; a frame the level does not make smaller
   * keeps its bytes. Revision + 1; dead ranges carried over. DamagedUnit when a frame does
   * not check.
   *
   * With `dead` (prune's step 7, format.md §2.20.7): the unit's new dead ranges (a superset of
   * its old ones, unit-relative). Then only the frames holding newly dead blocks change: a
   * frame with no live block left becomes a frame of zeros; one with live blocks is decoded,
   * checked as above, its dead blocks zeroed, its frame check recomputed and it is compressed
   * at this level (decoded back and compared). Every other frame is copied byte for byte.
   */
  rewrite(file: Buffer, where: string, expected: { stream: number; unitIndex: number }, dead?: readonly DeadRange[]): { parts: Buffer[]; bytes: number } {
    const p = parseUnitFile(file, BLOCK_BYTES, where, expected)
    const frames: Buffer[] = []
    const seek: SeekEntry[] = []
    const oldDead = blockSet(p.dead)
    const newDead = dead ? blockSet(dead) : null
    if (newDead) for (const b of oldDead) if (!newDead.has(b)) throw new RangeError(`${where}: block ${b} is dead and the new dead ranges leave it out`)
    for (let i = 0; i < p.frameCount; i++) {
      const e = p.seek[i]!
      const old = file.subarray(p.offsets[i]!, p.offsets[i + 1]!)
      const blocks = e.rawBytes / BLOCK_BYTES
      const first = i * p.frameBlocks
      const zero: number[] = []
      if (newDead) {
        for (let b = first; b < first + blocks; b++) if (newDead.has(b) && !oldDead.has(b)) zero.push(b - first)
        if (zero.length === 0) {
          // no block of it died since it was written: its bytes as they are
          frames.push(old)
          seek.push(e)
          continue
        }
        let live = 0
        for (let b = first; b < first + blocks; b++) if (!newDead.has(b)) live++
        if (live === 0) {
          // nothing of it is read any more: a frame of zeros, without decoding the old bytes
          const raw = this.zeros(e.rawBytes)
          const frame = this.compress(raw, where, i)
          frames.push(frame)
          seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: this.check(raw, blocks) })
          continue
        }
      }
      let raw: Buffer
      try {
        raw = decompressFrame(old, e.rawBytes, this.d)
      } catch (err) {
        rethrowUnavailable(err)
        throw new DamagedUnit(`${where}: frame ${i}: ${(err as Error).message}`)
      }
      if (raw.length !== e.rawBytes) throw new DamagedUnit(`${where}: frame ${i} holds ${raw.length} bytes, its seek entry says ${e.rawBytes}`)
      if (!this.check(raw, blocks).equals(e.check)) throw new DamagedUnit(`${where}: frame ${i} does not match its frame check`)
      if (newDead) {
        for (const b of zero) raw.fill(0, b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES)
        const frame = this.compress(raw, where, i)
        frames.push(frame)
        seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: this.check(raw, blocks) })
        continue
      }
      const n = this.c.compressInto(this.buf(e.rawBytes), raw)
      let frame = old
      if (n < old.length) {
        frame = Buffer.from(this.out.subarray(0, n))
        this.decodesTo(frame, raw, where, i)
      }
      frames.push(frame)
      seek.push({ compBytes: frame.length, rawBytes: e.rawBytes, check: e.check })
    }
    const parts = encodeUnitFileV2(
      { stream: p.stream, unitIndex: p.unitIndex, rawBlocks: p.rawBlocks, frameBlocks: p.frameBlocks, revision: p.revision + 1, level: this.level, hashAlg: this.hashAlg },
      frames,
      seek,
      dead ?? p.dead,
    )
    return { parts, bytes: parts.reduce((s, b) => s + b.length, 0) }
  }

  /** The frame check of `blocks` blocks of raw data. */
  private check(raw: Buffer, blocks: number): Buffer {
    if (this.hashes.length < blocks * HASH_BYTES) this.hashes = Buffer.alloc(blocks * HASH_BYTES)
    hashBlocks(this.hashAlg, raw, 0, blocks, this.hashes, 0)
    return frameCheck(this.hashAlg, this.hashes.subarray(0, blocks * HASH_BYTES))
  }

  private buf(rawBytes: number): Buffer {
    const bound = FrameCompressor.bound(rawBytes)
    if (this.out.length < bound) this.out = Buffer.alloc(bound)
    return this.out
  }

  private zeroBuf = Buffer.alloc(0)
  private zeros(n: number): Buffer {
    if (this.zeroBuf.length < n) this.zeroBuf = Buffer.alloc(n)
    return this.zeroBuf.subarray(0, n)
  }

  /** `raw` compressed at this level, decoded back and compared before it is used. */
  private compress(raw: Buffer, where: string, i: number): Buffer {
    const n = this.c.compressInto(this.buf(raw.length), raw)
    const frame = Buffer.from(this.out.subarray(0, n))
    this.decodesTo(frame, raw, where, i)
    return frame
  }

  /** A compressor or memory fault must not become data loss: the new frame is decoded back first. */
  private decodesTo(frame: Buffer, raw: Buffer, where: string, i: number): void {
    if (this.back.length < raw.length) this.back = Buffer.alloc(raw.length)
    const m = this.d.decompressInto(this.back, frame)
    if (m !== raw.length || !this.back.subarray(0, m).equals(raw)) throw new Error(`${where}: frame ${i} recompressed at level ${this.level} does not decode to its bytes (not replaced)`)
  }
}

/** The blocks of a list of dead ranges. */
function blockSet(dead: readonly DeadRange[]): Set<number> {
  const s = new Set<number>()
  for (const d of dead) for (let b = d.start; b < d.start + d.blocks; b++) s.add(b)
  return s
}

export interface CompactResult {
  units: number
  rawBytes: number
  bytesBefore: number
  bytesAfter: number
  /** Units left as they were because a frame does not check (bfs verify names them). */
  damaged: Array<{ key: string; why: string }>
}

/** The threads that recompress (2 cores on the reference machine: both, at nice 19). */
export function compactThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()))
}

/** One unit recompressed on a worker thread: the new file's bytes, or why the unit is left as it is. */
export interface RecompressReply extends WorkerReply {
  data?: ArrayBuffer
  damaged?: string
}

const recompressors = new Map<string, Recompressor>()

/** The worker thread's side (repo/worker.ts `recompressUnit`): Recompressor.rewrite of the unit's bytes. */
export function recompressUnit(r: WorkerRequest): RecompressReply {
  const req = r as WorkerRequest & { file: ArrayBuffer; where: string; stream: number; unit: number; level: number; hashAlg: HashAlg; dead?: DeadRange[] }
  const k = `${req.level}:${req.hashAlg}`
  let rc = recompressors.get(k)
  if (!rc) recompressors.set(k, (rc = new Recompressor(req.level, req.hashAlg)))
  try {
    const out = rc.rewrite(Buffer.from(req.file), req.where, { stream: req.stream, unitIndex: req.unit }, req.dead)
    const data = new ArrayBuffer(out.bytes)
    let at = 0
    for (const p of out.parts) {
      new Uint8Array(data, at, p.length).set(p)
      at += p.length
    }
    return { id: req.id, data }
  } catch (err) {
    if (err instanceof DamagedUnit || err instanceof FormatError) return { id: req.id, damaged: err.message }
    throw err
  }
}

/**
 * A unit to rewrite: compact's (recompressed at the call's level), or prune's step 7 (`dead`:
 * its new dead ranges, the frames that hold newly dead blocks rewritten at `targetLevel`).
 */
export interface UnitRewrite extends CompactUnit {
  dead?: DeadRange[]
  /** The level of the rewritten frames and of the header (prune: the unit's own). */
  targetLevel?: number
}

/**
 * Rewrites the survey's units (compact's, or prune step 7's with their new dead ranges), `threads` at a time on worker threads (they inherit the
 * caller's priority); the main thread reads each unit and, when its new bytes come back,
 * replaces it atomically (durable before the unit counts as done). Units finish in any order:
 * each is whole on its own, and the level in its header is what a later compact looks at.
 * `onUnit` after each (progress, interruption: it may throw, which stops the launching of
 * units; those in flight finish or are dropped, whole either way).
 */
export async function compactUnits(repo: Repo2, todo: readonly UnitRewrite[], level: number, onUnit: (done: CompactResult, u: UnitRewrite) => void = () => {}, threads = compactThreads()): Promise<CompactResult> {
  const res: CompactResult = { units: 0, rawBytes: 0, bytesBefore: 0, bytesAfter: 0, damaged: [] }
  if (todo.length === 0) return res
  const swept = new Set<number>()
  const pool = new WorkerPool(Math.min(threads, todo.length))
  let failed: unknown = null
  const tasks = new Set<Promise<void>>()
  try {
    for (const u of todo) {
      if (failed) break
      if (!swept.has(u.stream)) {
        // temporary files a killed compact left in this directory (a dead pid's: store sweep)
        swept.add(u.stream)
        await repo.store.sweep(keys2.genDir(u.stream), { shallow: true }).catch(() => 0)
      }
      let file: Buffer
      try {
        file = repo.sync.getSync(u.key)
      } catch (err) {
        if (err instanceof StoreError && err.code === 'ENOENT') continue // deleted meanwhile (cannot be: prune takes the lock)
        throw err
      }
      const before = file.length
      const ab = file.buffer.slice(file.byteOffset, file.byteOffset + file.length) as ArrayBuffer
      const task: Promise<void> = pool
        .run<RecompressReply>({ op: 'recompressUnit', file: ab, where: repo.store.where(u.key), stream: u.stream, unit: u.unit, level: u.targetLevel ?? level, hashAlg: repo.config.hashAlg, ...(u.dead ? { dead: u.dead } : {}) }, [ab])
        .then((x) => {
          if (failed) return
          if (x.damaged !== undefined) res.damaged.push({ key: u.key, why: x.damaged })
          else {
            repo.sync.putSync(u.key, new Uint8Array(x.data!), { mode: 'replace' })
            res.units++
            res.rawBytes += u.rawBytes
            res.bytesBefore += before
            res.bytesAfter += x.data!.byteLength
          }
          onUnit(res, u)
        })
        .catch((err: unknown) => {
          failed ??= err
        })
        .finally(() => tasks.delete(task))
      tasks.add(task)
      if (tasks.size >= pool.size) await Promise.race(tasks)
    }
    await Promise.all(tasks)
  } finally {
    await pool.close()
  }
  if (failed) throw failed
  return res
}

/** Claims run C for this compact (runs/C exclusive). */
export function claimCompactRun(repo: Repo2, lease: string): RunRecord {
  return repo.claimRun((n) => ({ run: n, kind: 'compact', state: 'running', host: os.hostname(), pid: process.pid, lease, started: new Date().toISOString() }))
}
