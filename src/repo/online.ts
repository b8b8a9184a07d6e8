/**
 * `bfs backup --online` (issue 14): the before-image capture around a backup's reads, for
 * file and volume backups alike — start (T0, `--t0-file`), the reads (live bytes with the
 * blocks changed since T0 as zeros), stop, and the ingestion of the capture file into the
 * generation's BI log (native-notes/format.md §"Before-image log", native-notes/bilog.md).
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import * as native from '../native/index.js'
import { decodeBiLogFrom, fileBiLogSource, BiKind, BiCause, type BiLogFile, type BiLogHeader, type BiRecord } from '../format/bilog.js'
import { FormatError } from '../format/errors.js'
import { encodeGenBiLog, GenBiKind, type GenBiRecord } from '../format/bilog-gen.js'
import type { Extent } from '../format/maps.js'
import type { ManifestOnline } from '../format/manifest.js'
import { BLOCK_BYTES, xxh64Seed0 } from '../codec/hash.js'
import { BfsError } from './errors.js'
import type { StreamWriter } from './commit/index.js'

/** What an `--online` run did (absent without `--online`); also the manifest's `online` record. */
export type OnlineReport = ManifestOnline

export const BI_REASON_TEXT: Record<number, string> = {
  [native.BI_REASON.fdAtT0]: 'open for writing at T0',
  [native.BI_REASON.mappingAtT0]: 'mapped shared and writable at T0',
  [native.BI_REASON.unclassified]: 'a write the capture could not classify',
  [native.BI_REASON.listener]: 'the capture listener stalled',
}

/** `--online-nice` by default: bfs's threads at nice +10 while the capture holds writers up. */
export const DEFAULT_ONLINE_NICE = 10

/**
 * Lowers the CPU priority (raises the nice value) of every thread of this process by `by`
 * (up to 19) and returns what puts them back. On Linux a nice value is per thread
 * (setpriority(PRIO_PROCESS, tid)); threads started meanwhile inherit the creating thread's,
 * and are set to the main thread's former value on the way back. The capture's own threads
 * (`bfs-bilog*`: listeners, flusher) are left as they are. Why: a writer the capture blocked is
 * woken when the listener answers, then waits for a CPU; with bfs's compression and read
 * threads at nice 0 on a busy machine that wait was the writer's p99 (bench online step:
 * 473 → 159 µs on the tree, 1,677 → 309 µs on the image with nice +10). Failures (EPERM, a
 * thread gone: ESRCH) are ignored: this is a courtesy, not a promise.
 */
export function lowerPriority(by: number): () => void {
  if (by <= 0) return () => {}
  const before = new Map<number, number>()
  const tasks = (): number[] => {
    try {
      return fs.readdirSync('/proc/self/task').map(Number)
    } catch {
      return []
    }
  }
  for (const tid of tasks()) {
    try {
      // not the capture's own threads: its listeners (SCHED_FIFO where allowed, else nice 0
      // must stay nice 0 to answer writers) and its flusher (a full ring makes the listener,
      // and so a writer, wait for it)
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').startsWith('bfs-bilog')) continue
      const p = os.getPriority(tid)
      before.set(tid, p)
      os.setPriority(tid, Math.min(19, p + by))
    } catch {
      // gone, or not allowed
    }
  }
  const base = before.get(process.pid) ?? 0
  return () => {
    for (const tid of tasks()) {
      try {
        if (!before.has(tid) && fs.readFileSync(`/proc/self/task/${tid}/comm`, 'latin1').startsWith('bfs-bilog')) continue
        os.setPriority(tid, before.get(tid) ?? base)
      } catch {
        // gone, or not allowed (raising a priority needs CAP_SYS_NICE; --online needs root)
      }
    }
  }
}

const identity = (dev: number | bigint, ino: number | bigint): string => `${dev}:${ino}`

/** A running (or, with --online=auto on an unsupported filesystem, absent) capture. */
export class OnlineCapture {
  private cap: native.BiCapture | null = null
  private dir: string | null = null
  private logPath = ''
  /** T0 in ns since the epoch (0 when not captured). */
  t0Ns = 0n
  /** T0's seconds and nanoseconds (0 when not captured). */
  t0Sec = 0
  t0Nsec = 0
  readonly report: OnlineReport
  /** The id worker threads read through the capture with (PlannedRead.bilog; 0 when not capturing). */
  sharedId = 0
  /** Puts bfs's threads back to their CPU priority from before the capture. */
  private restorePriority: () => void = () => {}
  /** Files stored with blocks read as zeros (their images go into the BI log): identity → object index. */
  private readonly stored = new Map<string, number>()

  private constructor(report: OnlineReport) {
    this.report = report
  }

  /**
   * Sets the capture's mark on the filesystem holding `watch` (T0 is when this returns), then
   * creates `t0File`. On a filesystem or kernel without pre-content events, 'on' fails with
   * one line; 'auto' warns and returns a capture that captures nothing.
   */
  static start(watch: string, mode: 'on' | 'auto', t0File: string | undefined, warn: (m: string) => void, nice = DEFAULT_ONLINE_NICE): OnlineCapture {
    const base = process.env.TMPDIR || (fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir())
    let dir: string
    try {
      dir = fs.mkdtempSync(path.join(base, 'bfs-online-'))
    } catch (err) {
      throw new BfsError('IO', `cannot create the online capture's directory in ${base}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const empty = { uncovered: [], events: 0, images: 0, imageBytes: 0, truncates: 0, biRecords: 0, biBlocks: 0 }
    let cap: native.BiCapture
    try {
      cap = native.BiCapture.start(watch, path.join(dir, 'capture.bilog'))
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true })
      const e = err as native.NativeError
      const why = native.biUnsupportedMessage(err, watch) ?? (e.code === 'EPERM' ? `online capture needs root (CAP_SYS_ADMIN for fanotify pre-content events) on ${watch}` : undefined)
      if (!why) throw new BfsError('IO', `cannot start the online capture on ${watch}: ${e.syscall ? `${e.syscall}: ` : ''}${e.code ?? e.message}`)
      if (mode === 'on') throw new BfsError('BAD_INPUT', `${why} (--online=auto backs up without it)`)
      warn(`--online=auto: ${why}; backing up without it, so a file written during the backup may be stored torn`)
      const c = new OnlineCapture({ captured: false, unavailable: why, ...empty })
      writeT0File(t0File, new Date().toISOString())
      return c
    }
    const i = cap.info()
    const t0 = new Date(i.t0Sec * 1000).toISOString().replace(/\.\d+Z$/, `.${String(i.t0Nsec).padStart(9, '0')}Z`)
    const c = new OnlineCapture({ captured: true, t0, ...empty })
    c.cap = cap
    c.dir = dir
    c.logPath = path.join(dir, 'capture.bilog')
    c.t0Ns = BigInt(i.t0Sec) * 1_000_000_000n + BigInt(i.t0Nsec)
    c.t0Sec = i.t0Sec
    c.t0Nsec = i.t0Nsec
    c.restorePriority = lowerPriority(nice)
    try {
      c.sharedId = cap.share()
      writeT0File(t0File, t0)
    } catch (err) {
      c.abort()
      throw err
    }
    return c
  }

  /** The capture file's directory while the capture exists (never backed up). */
  get captureDir(): string | null {
    return this.dir
  }

  /** Whether reads go through the capture (false after stop, or when it never ran). */
  get active(): boolean {
    return this.cap !== null
  }

  /** A read-only fd of a file whose reads raise no events (BiCapture.openQuiet). */
  openQuiet(p: Buffer): number {
    return this.cap!.openQuiet(p)
  }

  /** T0 size and times of (st_dev, inode) if the capture has seen it (else null: as it is now), and whether it is not covered. */
  t0StatIno(dev: number, inoHi: number, inoLo: number): { t0: native.BiT0Stat | null; uncovered: number } {
    return this.cap!.t0StatIno(dev, inoHi, inoLo)
  }

  /** The file's size and times at T0, and whether writes to it are not covered (a reason, or 0). */
  t0Stat(fd: number): native.BiT0Stat {
    return this.cap!.t0Stat(fd)
  }

  /**
   * A storeObject read hook for `fd`: the live bytes, with each block logged since T0 read as
   * zeros (its image goes into the BI log); `onLogged(n)` hears how many such blocks a read had.
   */
  readHook(fd: number, onLogged: (blocks: number) => void): (buf: Buffer, off: number, len: number, pos: number) => number {
    const cap = this.cap!
    return (buf, off, len, pos) => {
      const [n, z] = cap.readLive(fd, buf, off, len, pos)
      if (z) onLogged(z)
      return n
    }
  }

  /** The file (st_dev, inode) was stored as object `index` of the generation with blocks read as zeros: its images go into the BI log. */
  noteStored(dev: number, inoHi: number, inoLo: number, index: number): void {
    this.stored.set(identity(dev, BigInt(inoHi) * 2n ** 32n + BigInt(inoLo)), index)
  }

  /** bfs keeps the file as an earlier generation stored it and will not read it: its writes need no images. */
  keep(dev: number, inoHi: number, inoLo: number): void {
    this.cap?.ignore(dev, inoHi, inoLo)
  }

  /** The file was listed as not covered. */
  uncovered(p: string, reason: string): void {
    this.report.uncovered.push({ path: p, reason })
  }

  /**
   * Ends the capture after the last read (writers stop paying now). A voided run (the
   * listener stalled, the capture file could not be written) fails: nothing is committed,
   * since the files read may not be as they were at T0.
   */
  stop(): void {
    const cap = this.cap
    if (!cap) return
    this.cap = null
    this.sharedId = 0
    let st: native.BiStats
    try {
      st = cap.stop()
    } catch (err) {
      this.dispose()
      throw err
    } finally {
      this.unlower()
    }
    if (process.env.BFS_DEBUG) process.stderr.write(`bfs: online capture: ${JSON.stringify(st)}\n`)
    const o = this.report
    o.events = st.events - st.ownEvents
    o.images = st.images
    o.imageBytes = st.imageBytes
    o.truncates = st.truncates
    if (st.preReads) {
      o.preReads = st.preReads
      o.preReadBytes = st.preReadBytes
    }
    if (st.voidReason) {
      this.dispose()
      const errno = st.logErrno ? Object.entries(os.constants.errno).find(([, v]) => v === st.logErrno)?.[0] ?? `errno ${st.logErrno}` : ''
      const why = errno ? `writing the capture file failed (${errno})` : (BI_REASON_TEXT[st.voidReason] ?? `reason ${st.voidReason}`)
      throw new BfsError('IO', `the online capture was voided: ${why}, so the files read may not be as they were at T0; nothing was committed`)
    }
  }

  /**
   * After stop, before the stream is finished: appends the images of the files stored with
   * blocks read as zeros to `stream` (generation `gen`) and returns the BI log's payload
   * (null when there is nothing to log). Removes the capture file.
   */
  async ingest(stream: StreamWriter, gen: number): Promise<Buffer | null> {
    return this.ingestRecords(async (kept, header) => {
      const records: GenBiRecord[] = []
      const images: Array<{ rec: GenBiRecord; data: Buffer }> = []
      let blocks = 0
      for (const { r, object } of kept) {
        const ino = r.ino
        const rec: GenBiRecord = {
          seq: Number(r.seq),
          kind: r.kind === BiKind.image ? GenBiKind.image : r.kind === BiKind.truncate ? GenBiKind.truncate : GenBiKind.uncovered,
          cause: r.cause,
          object,
          srcDev: Number(r.dev),
          srcInoHi: Number(ino >> 32n),
          srcInoLo: Number(ino & 0xffffffffn),
          igen: r.igen,
          offset: Number(r.offset),
          length: r.kind === BiKind.image ? r.data.length : 0,
          t0Size: Number(r.t0Size),
          mtimeSec: Number(r.mtimeSec),
          mtimeNsec: r.mtimeNsec,
          ctimeSec: Number(r.ctimeSec),
          ctimeNsec: r.ctimeNsec,
          check: Buffer.alloc(8),
          extents: [],
        }
        // seed 0: format 1's gens/N/bilog (format 1 is never encrypted, format.md §2.22)
        rec.check.writeBigUInt64LE(xxh64Seed0(r.kind === BiKind.image ? r.data : Buffer.alloc(0)))
        if (r.kind === BiKind.image) {
          images.push({ rec, data: r.data })
          blocks += Math.ceil(r.data.length / BLOCK_BYTES)
        }
        records.push(rec)
      }
      // The images go into the stream in file order (object, offset), not in the order they
      // were intercepted: a reader of a file then finds its images together, in the order it
      // reads them (a dd of an image, a cat of a file), instead of one frame per image.
      images.sort((a, b) => a.rec.object - b.rec.object || a.rec.offset - b.rec.offset)
      for (const { rec, data } of images) rec.extents = await putImage(stream, gen, data, rec.offset / BLOCK_BYTES)
      this.report.biRecords = records.length
      this.report.biBlocks = blocks
      if (records.length === 0) return null
      return encodeGenBiLog({ t0Sec: Number(header.t0Sec), t0Nsec: header.t0Nsec, records })
    })
  }

  /**
   * After stop: hands `use` the capture file's records (image, truncate, not covered) of the
   * files noted stored (noteStored), in interception order, each with the object noted, and
   * the file's header; returns what `use` returns, or null when no file was noted. The
   * capture file is removed in every case. Format 1 (ingest) and format 2 (repo/v2/online2.ts)
   * shape the records into their own BI logs.
   */
  async ingestRecords<T>(use: (kept: Array<{ r: BiRecord; object: number }>, header: BiLogHeader) => Promise<T>): Promise<T | null> {
    if (!this.logPath) return null
    try {
      if (this.stored.size === 0) return null
      // a small file read whole by the listener: every read laid these images over (its
      // content as stored), so no reader of the generation needs them (format.md §2.16.1,
      // cause 7); nor the images of files not stored with blocks read as zeros. Only the
      // images kept are held (all are checked): the file is mostly the former (27 MB of the
      // bench's 29), read through one 1 MiB window
      const wanted = (kind: number, cause: number, dev: bigint, ino: bigint): boolean => kind === BiKind.image && cause !== BiCause.preRead && this.stored.has(identity(dev, ino))
      let log: BiLogFile
      let fd = -1
      try {
        fd = fs.openSync(this.logPath, 'r')
        // the local capture file's checks are seed 0 in every repository (format.md §2.16.1, §2.22):
        // it is never stored and holds the images in plaintext anyway
        log = decodeBiLogFrom(fileBiLogSource(fd, fs.fstatSync(fd).size, fs.readSync), xxh64Seed0, wanted)
      } catch (err) {
        if (err instanceof FormatError) throw err
        throw new BfsError('IO', `cannot read the online capture file ${this.logPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      } finally {
        if (fd >= 0) fs.closeSync(fd)
      }
      if (!log.ended) throw new BfsError('IO', `the online capture file ${this.logPath} has no end record (${log.tornBytes} bytes torn); nothing was committed`)
      const kept: Array<{ r: BiRecord; object: number }> = []
      for (const r of log.records) {
        if (r.kind !== BiKind.image && r.kind !== BiKind.truncate && r.kind !== BiKind.uncovered) continue
        if (r.kind === BiKind.image && !wanted(r.kind, r.cause, r.dev, r.ino)) continue
        const object = this.stored.get(identity(r.dev, r.ino))
        if (object !== undefined) kept.push({ r, object })
      }
      return await use(kept, log.header)
    } finally {
      this.dispose()
    }
  }

  /** The capture after a failure: stopped (writers released), its file removed. */
  abort(): void {
    const cap = this.cap
    this.cap = null
    this.sharedId = 0
    try {
      cap?.stop()
    } catch {
      // the run fails anyway
    }
    this.unlower()
    this.dispose()
  }

  private unlower(): void {
    const restore = this.restorePriority
    this.restorePriority = () => {}
    restore()
  }

  private dispose(): void {
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true })
    this.dir = null
    this.logPath = ''
  }
}

function writeT0File(t0File: string | undefined, t0: string): void {
  if (!t0File) return
  try {
    fs.writeFileSync(t0File, t0 + '\n')
  } catch (err) {
    throw new BfsError('BAD_INPUT', `cannot create --t0-file ${t0File}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

/** Appends an image's non-zero blocks to the stream; its extents from file block `fb` (gen 0 for all-zero blocks). */
export async function putImage(stream: StreamWriter, gen: number, data: Buffer, fb: number): Promise<Extent[]> {
  const out: Extent[] = []
  const add = (fileBlock: number, count: number, g: number, sb: number): void => {
    const last = out[out.length - 1]
    if (last && last.gen === g && last.fileBlock + last.count === fileBlock && (g === 0 || last.streamBlock + last.count === sb)) last.count += count
    else out.push({ fileBlock, count, gen: g, streamBlock: g === 0 ? 0 : sb })
  }
  const n = Math.ceil(data.length / BLOCK_BYTES)
  for (let i = 0; i < n; i++) {
    const block = data.subarray(i * BLOCK_BYTES, Math.min(data.length, (i + 1) * BLOCK_BYTES))
    if (isZero(block)) {
      add(fb + i, 1, 0, 0)
      continue
    }
    const space = await stream.reserve()
    block.copy(space.buf, space.offsetBytes)
    if (block.length < BLOCK_BYTES) space.buf.fill(0, space.offsetBytes + block.length, space.offsetBytes + BLOCK_BYTES)
    add(fb + i, 1, gen, stream.commit(1))
  }
  return out
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false
  return true
}
