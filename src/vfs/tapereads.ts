/**
 * What a mount does with units on tape, for either format's tree (format 1's Vfs in tree.ts,
 * format 2's Vfs2/Repo2Vfs in gen2.ts): `user.bfs.residency`, the prefetch at open, and the
 * reads that a close (FUSE flush) or the kernel's interrupt gives up while they wait for a
 * recall (native-notes/tape.md, "Interrupting a read"). The trees only say which units a
 * file reads (its unit keys) and which handles are open.
 */
import type { AsyncBlockReader, OpenFile } from '../blocks/reader.js'
import { VfsError } from './errors.js'

/** What the vfs uses of the repository's tiered store (store/tiered.ts TieredStore) when units are on tape. */
export interface TapeTier {
  readonly policy: { offline?: 'wait' | 'eio' }
  /** Where a unit is now: disk, cache (recalled) or tape; undefined if nowhere. */
  residencySync(key: string): 'disk' | 'cache' | 'tape' | undefined
  /** A unit's catalog entry, when it was migrated. */
  coldEntry(key: string): { sizeBytes: number } | undefined
  /** Asks for units on tape (not pinned); `ahead`: no reader waits for them yet. */
  prefetch(keys: string[], o?: { ahead?: boolean }): unknown
  /** Whether a recall of `key` asked for by this process is outstanding. */
  recalling?(key: string): boolean
  /** Gives up this process's outstanding recalls of `keys` (its waiters fail); returns how many. */
  cancel?(keys: string[]): number
  readonly cacheLimitBytes: number
}

/** The extended attribute that tells where a file's data is (mount of a repository with a tape tier). */
export const RESIDENCY_XATTR = 'user.bfs.residency'

/**
 * user.bfs.residency of a regular file whose units are `keys`: `disk`, `cache` or `tape` when
 * all its units are there (a file without data: `disk`); a mix names the slowest tier with
 * its share, `tape 3/5 units` (the rest in the cache or on disk), `cache 2/5 units` (the rest
 * on disk). A unit nowhere (damaged) counts as disk: its reads say what is wrong.
 */
export function residencyOf(t: TapeTier, keys: readonly string[]): string {
  const r = keys.map((k) => t.residencySync(k) ?? 'disk')
  for (const tier of ['tape', 'cache'] as const) {
    const n = r.filter((x) => x === tier).length
    if (n) return n === r.length ? tier : `${tier} ${n}/${r.length} units`
  }
  return 'disk'
}

/**
 * The units of `keys` that are on tape (not in the cache, not on disk), with their sizes.
 * Where a unit is first: a unit on disk costs one stat, while a catalog miss reads the
 * catalog's directory again (a unit may have just been migrated).
 */
export function unitsOnTape(t: TapeTier, keys: readonly string[]): Array<{ key: string; bytes: number }> {
  const out: Array<{ key: string; bytes: number }> = []
  for (const key of keys) if (t.residencySync(key) === 'tape') out.push({ key, bytes: t.coldEntry(key)?.sizeBytes ?? 0 })
  return out
}

/**
 * Asks for the units of a file being opened (`keys`) that are on tape (not pinned: the cache
 * evicts them as usual), so that concurrent readers give the scheduler many requests to
 * order (native-notes/tape.md bench (f)); at most `budget` bytes (default a quarter of the
 * buffer cache). Returns the bytes asked for. Only a hint: never throws.
 */
export function prefetchAtOpen(t: TapeTier, keys: () => readonly string[], budget = t.cacheLimitBytes / 4): number {
  let bytes = 0
  try {
    const want: string[] = []
    for (const u of unitsOnTape(t, keys())) {
      if (bytes + u.bytes > budget && (want.length || budget <= 0)) break
      bytes += u.bytes
      want.push(u.key)
    }
    if (want.length) t.prefetch(want)
  } catch {
    // a prefetch is only a hint: the reads say what is wrong
  }
  return bytes
}

/** A handle's reads in JavaScript on a mount with a tape tier, and whether it was closed (see TapeReads.flush). */
export interface TapeWaits {
  /** Reads in progress. */
  reads: number
  /** Aborted when a flush interrupts them (then replaced: later reads are not). */
  ctl: AbortController
  /** A descriptor of it was closed (FUSE flush) and it has not been read since: it wants nothing. */
  closed: boolean
  /**
   * A read of it waiting for tape was interrupted by the kernel (its reader got a signal) and
   * answered EINTR: its next flush gives up what its file is still waiting for, as for a
   * stranded read (then cleared).
   */
  interrupted?: boolean
}

/** An open file of a mount with a tape tier, as TapeReads sees it. */
export interface TapeHandle {
  file: OpenFile
  /** Its reads in JavaScript (made on its first read or flush). */
  waits?: TapeWaits
}

/**
 * What fuse-native passes with a read (the patched binding, FUSE_NATIVE_BFS_PATCH 5):
 * `oninterrupt` is called once if the kernel interrupts the request while it waits for its
 * answer (its reader got a signal in a synchronous read). The read must still be answered.
 */
export interface InterruptibleRead {
  interrupted: boolean
  oninterrupt: (() => void) | null
}

/**
 * The reads of a mount with a tape tier, and what a close (FUSE flush) or the kernel's
 * interrupt gives up of them. `keysOf(h)`: the unit keys of an open handle's file;
 * `open()`: the open handles.
 */
export class TapeReads<H extends TapeHandle> {
  /** Closed handles with reads in progress (see flush). */
  private readonly stranded = new Set<H>()

  constructor(
    private readonly t: TapeTier,
    private readonly keysOf: (h: H) => string[],
    private readonly open: () => Iterable<H>,
  ) {}

  /** Handle `h` was released. */
  released(h: H): void {
    this.stranded.delete(h)
  }

  /**
   * A close(2) of a descriptor of `h` (FUSE_FLUSH; the release comes only once the kernel's
   * background reads of it are answered). The handle wants nothing from now on (until it is
   * read again: a process sharing the descriptor, fork or dup). Reads of closed handles still
   * in progress in JavaScript while units of their files are being recalled are *stranded*:
   * their readers went away (killed, interrupted) while they waited for tape. Each flush while
   * some are stranded (rare: any other flush returns at once) gives up the recalls they wait
   * for that no open, not closed handle's file needs (the recall service cancels each unless
   * another process wants it) and answers the stranded reads of those units EINTR at once.
   * Stranded reads of a unit another handle still needs are left to complete: another reader
   * of the same file may be waiting for the very pages they bring (the kernel's readahead is
   * shared by the file's readers), and that wait is killable, while a synchronous read of its
   * own would not be once it reached us. A process sharing a closed descriptor that is still
   * reading is not failed for good: the kernel retries a page read that came back with an
   * error, which asks again. Returns what it did, or null when it did nothing.
   */
  flush(h: H | undefined): { reads: number; cancelled: number } | null {
    const t = this.t
    if (!h || !t.recalling) return null
    const w = (h.waits ??= { reads: 0, ctl: new AbortController(), closed: false })
    w.closed = true
    if (w.reads > 0) this.stranded.add(h)
    // a read of it was interrupted while it waited for tape (answered EINTR then, see read):
    // its reader is gone now, and what it waited for is given up like a stranded read's
    const gone = w.interrupted === true
    w.interrupted = false
    if (this.stranded.size === 0 && !gone) return null
    // the units stranded (and interrupted) reads may be waiting for
    const waited = new Set<string>()
    for (const s of gone ? [...this.stranded, h] : this.stranded) for (const k of this.keysOf(s)) if (t.recalling(k)) waited.add(k)
    if (waited.size === 0) return null // reads from disk or the cache: they end by themselves
    for (const o of this.open()) {
      if (o.waits?.closed) continue
      for (const k of this.keysOf(o)) waited.delete(k)
      if (waited.size === 0) return null
    }
    let reads = 0
    for (const s of [...this.stranded]) {
      if (!this.keysOf(s).some((k) => waited.has(k))) continue
      reads += s.waits!.reads
      s.waits!.ctl.abort()
      s.waits!.ctl = new AbortController()
      this.stranded.delete(s)
    }
    return { reads, cancelled: t.cancel ? t.cancel([...waited]) : 0 }
  }

  /**
   * A read with a tape tier: counted for flush(), which may interrupt it (EINTR at once).
   * It reads into its own buffer, copied into `dst` only when it is answered with data: an
   * interrupted read's load goes on, and libfuse's buffer must not be written after the answer.
   * When the kernel interrupts it (`req`: its reader got a signal in a synchronous read)
   * while units of its file are being recalled, it answers EINTR at once and marks the
   * handle, whose next flush (the killed reader's close) gives up what it waited for. Not
   * at once: a reader that survives the signal (it handles it) reads again and keeps
   * its recall's place in the queue.
   */
  async read(reader: AsyncBlockReader, h: H, dst: Buffer, len: number, pos: number, req?: InterruptibleRead): Promise<number> {
    const w = (h.waits ??= { reads: 0, ctl: new AbortController(), closed: false })
    if (w.closed) {
      // read after a close: another process shares the descriptor, it wants the file again
      w.closed = false
      this.stranded.delete(h)
    }
    const signal = w.ctl.signal
    const own = Buffer.allocUnsafe(Math.min(len, Math.max(0, h.file.sizeBytes - pos)))
    const stop = req ? new AbortController() : null
    if (req) {
      req.oninterrupt = () => {
        const t = this.t
        // a read from disk or the cache ends by itself: answered as usual
        if (!t.recalling || !this.keysOf(h).some((k) => t.recalling!(k))) return
        w.interrupted = true
        stop!.abort()
      }
    }
    w.reads++
    try {
      const n = await untilAborted(reader.read(h.file, own, own.length, pos), signal, stop?.signal)
      own.copy(dst, 0, 0, n)
      return n
    } catch (err) {
      if (signal.aborted) throw new VfsError('EINTR')
      if (stop?.signal.aborted) throw Object.assign(new VfsError('EINTR'), { interrupted: true })
      throw Object.assign(new VfsError('EIO'), { cause: err })
    } finally {
      if (req) req.oninterrupt = null
      if (--w.reads === 0) this.stranded.delete(h)
    }
  }
}

/** `p`, or a rejection as soon as `signal` (or `also`) aborts (p goes on; its outcome is then dropped). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal, also?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => reject(signal.reason)
    const abortAlso = (): void => reject(also!.reason)
    signal.addEventListener('abort', abort, { once: true })
    also?.addEventListener('abort', abortAlso, { once: true })
    const done = (): void => {
      signal.removeEventListener('abort', abort)
      also?.removeEventListener('abort', abortAlso)
    }
    p.then(
      (v) => {
        done()
        resolve(v)
      },
      (e: unknown) => {
        done()
        reject(e)
      },
    )
  })
}
