import os from 'node:os'
import { pidAlive } from '../../os/process.js'
import { keys } from '../../format/layout.js'
import { StoreError, syncOf, type Store, type SyncStore } from '../../store/store.js'
import { BfsError } from '../errors.js'

/** What a lock file holds (JSON text, one line). */
export interface LockInfo {
  pid: number
  host: string
  time: string
  command: string
}

/** An unreadable lock (or lock candidate) older than this is litter: its writer writes it whole before linking it. */
export const STALE_UNREADABLE_MS = 10_000

/** A lock's bytes as LockInfo, or null when they are not one (half-written, damaged). */
export function parseLock(bytes: Buffer): LockInfo | null {
  try {
    const info = JSON.parse(bytes.toString('utf8')) as LockInfo
    return typeof info.pid === 'number' && typeof info.host === 'string' ? info : null
  } catch {
    return null
  }
}

/**
 * The writer lock: the blob `lock`, created with the store's exclusive put (atomic against
 * a concurrent creator: link(2) of a fsynced temp file on disk, a check-and-set in memory).
 * A lock of a dead process on this host is stale and is broken. Readers never lock.
 * native-notes/format.md "Write order", step 1.
 */
export class WriterLock {
  private constructor(
    private readonly store: SyncStore,
    private readonly where: string,
  ) {}

  /**
   * Takes the lock of `store` for `command`, waiting up to `waitMs` for a live holder;
   * BfsError LOCKED when it gives up. `onWait` is told once when the lock is held and
   * acquire starts waiting for it (and once more when it got it), so that a run nobody
   * watches says why it is not progressing.
   */
  static async acquire(
    store: Store,
    command: string,
    waitMs: number,
    opts: { sleep?: (ms: number) => Promise<unknown>; onWait?: (message: string) => void } = {},
  ): Promise<WriterLock> {
    const s = syncOf(store, keys.lock)
    const sleep = opts.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)))
    const info: LockInfo = { pid: process.pid, host: os.hostname(), time: new Date().toISOString(), command }
    const bytes = Buffer.from(JSON.stringify(info) + '\n')
    const start = Date.now()
    const deadline = start + waitMs
    let waiting = false
    for (;;) {
      try {
        s.putSync(keys.lock, bytes, { mode: 'exclusive' })
        if (waiting) opts.onWait?.(`got the repository lock after ${Math.round((Date.now() - start) / 1000)} s`)
        return new WriterLock(s, store.where(keys.lock))
      } catch (err) {
        if (!(err instanceof StoreError) || err.code !== 'EEXIST') throw new BfsError('IO', `cannot create lock ${store.where(keys.lock)}: ${(err as Error).message}`)
      }
      const held = read(s)
      if (held.info && held.info.host === os.hostname() && !pidAlive(held.info.pid)) {
        // Stale: its writer died. Remove it only if it is still the same lock.
        const again = read(s)
        if (again.bytes && held.bytes && again.bytes.equals(held.bytes)) s.removeSync(keys.lock)
        continue
      }
      if (held.bytes && !held.info) {
        // Unreadable or damaged lock: its writer wrote it whole before linking it, so once
        // it is old it is litter (a power cut under an older bfs, which did not fsync it).
        const st = stat(s)
        if (st && st.mtimeMs !== undefined && Date.now() - st.mtimeMs > STALE_UNREADABLE_MS) {
          s.removeSync(keys.lock)
          continue
        }
      }
      if (!held.bytes) continue // released between our put and our read: try again
      const who = held.info ? `pid ${held.info.pid} on ${held.info.host} (${held.info.command}, since ${held.info.time})` : 'another process'
      const repo = store.where('')
      if (Date.now() >= deadline) {
        throw new BfsError('LOCKED', waiting ? `repository ${repo} is still locked by ${who} after ${Math.round(waitMs / 1000)} s (--wait)` : `repository ${repo} is locked by ${who}; use --wait to wait for it`)
      }
      if (!waiting) {
        waiting = true
        opts.onWait?.(`repository ${repo} is locked by ${who}; waiting for it ${waitMs >= Number.MAX_SAFE_INTEGER / 2 ? 'as long as it takes' : `up to ${Math.round(waitMs / 1000)} s`} (--wait)`)
      }
      await sleep(200)
    }
  }

  /** The lock as it is now: its bytes (null if there is none) and what they say (null if unreadable). */
  static read(store: Store): LockInfo | null {
    return read(syncOf(store, keys.lock)).info
  }

  release(): void {
    const held = read(this.store).info
    if (held && held.pid === process.pid && held.host === os.hostname()) {
      try {
        this.store.removeSync(keys.lock)
      } catch (err) {
        throw new BfsError('IO', `cannot remove lock ${this.where}: ${(err as Error).message}`)
      }
    }
  }
}

function read(s: SyncStore): { bytes: Buffer | null; info: LockInfo | null } {
  let bytes: Buffer
  try {
    bytes = s.getSync(keys.lock)
  } catch (err) {
    if (err instanceof StoreError && err.code === 'ENOENT') return { bytes: null, info: null }
    // unreadable (EIO): treat as a lock we cannot judge
    return { bytes: Buffer.alloc(0), info: null }
  }
  return { bytes, info: parseLock(bytes) }
}

function stat(s: SyncStore): { mtimeMs?: number } | null {
  try {
    return s.statSync(keys.lock)
  } catch {
    return null
  }
}
