import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pidAlive } from '../../os/process.js'
import { BfsError } from '../errors.js'

/** What a lock file holds (JSON text, one line). */
export interface LockInfo {
  pid: number
  host: string
  time: string
  command: string
}

/**
 * The writer lock: REPO/lock, created atomically with link(2) from a private temp file.
 * A lock of a dead process on this host is stale and is broken. Readers never lock.
 */
export class WriterLock {
  private constructor(private readonly file: string) {}

  /**
   * `onWait` is told once when the lock is held and acquire starts waiting for it (and
   * once more when it got it), so that a run nobody watches says why it is not progressing.
   */
  static async acquire(repoDir: string, command: string, waitMs: number, sleep = (ms: number) => new Promise((r) => setTimeout(r, ms)), onWait?: (message: string) => void): Promise<WriterLock> {
    const file = path.join(repoDir, 'lock')
    const info: LockInfo = { pid: process.pid, host: os.hostname(), time: new Date().toISOString(), command }
    // named after its writer (host, pid), so that even a file a kill cut short can be judged
    const tmp = path.join(repoDir, 'tmp', `lock-${os.hostname()}-${process.pid}-${Date.now()}`)
    fs.mkdirSync(path.dirname(tmp), { recursive: true })
    fs.writeFileSync(tmp, JSON.stringify(info) + '\n')
    const start = Date.now()
    const deadline = start + waitMs
    let waiting = false
    try {
      for (;;) {
        try {
          fs.linkSync(tmp, file)
          if (waiting) onWait?.(`got the repository lock after ${Math.round((Date.now() - start) / 1000)} s`)
          return new WriterLock(file)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new BfsError('IO', `cannot create lock ${file}: ${(err as Error).message}`)
        }
        const held = WriterLock.read(file)
        if (held && held.host === os.hostname() && !pidAlive(held.pid)) {
          // Stale: its writer died. Remove it only if it is still the same file.
          const again = WriterLock.read(file)
          if (again && again.pid === held.pid && again.time === held.time) fs.rmSync(file, { force: true })
          continue
        }
        if (!held) {
          // Unreadable or half-written lock: give its writer a moment, then treat it as stale.
          const st = fs.statSync(file, { throwIfNoEntry: false })
          if (st && Date.now() - st.mtimeMs > 10_000) fs.rmSync(file, { force: true })
        }
        if (Date.now() >= deadline) {
          const who = held ? `pid ${held.pid} on ${held.host} (${held.command}, since ${held.time})` : 'another process'
          throw new BfsError('LOCKED', waiting ? `repository ${repoDir} is still locked by ${who} after ${Math.round(waitMs / 1000)} s (--wait)` : `repository ${repoDir} is locked by ${who}; use --wait to wait for it`)
        }
        if (!waiting) {
          waiting = true
          const who = held ? `pid ${held.pid} on ${held.host} (${held.command}, since ${held.time})` : 'another process'
          onWait?.(`repository ${repoDir} is locked by ${who}; waiting for it ${waitMs >= Number.MAX_SAFE_INTEGER / 2 ? 'as long as it takes' : `up to ${Math.round(waitMs / 1000)} s`} (--wait)`)
        }
        await sleep(200)
      }
    } finally {
      fs.rmSync(tmp, { force: true })
    }
  }

  /**
   * Whether tmp/lock-* file `file` is litter: its writer (host and pid in its name, or in
   * it) is dead on this host, or it is unreadable and older than a few seconds. A live writer
   * waiting for the lock keeps its own, so those stay.
   */
  static isStaleTemp(file: string): boolean {
    const m = /^lock-(.+)-(\d+)-\d+$/.exec(path.basename(file))
    if (m && m[1] === os.hostname()) return !pidAlive(Number(m[2]))
    const info = WriterLock.read(file)
    if (info) return info.host === os.hostname() && !pidAlive(info.pid)
    const st = fs.statSync(file, { throwIfNoEntry: false })
    return !!st && Date.now() - st.mtimeMs > 10_000
  }

  static read(file: string): LockInfo | null {
    try {
      const info = JSON.parse(fs.readFileSync(file, 'utf8')) as LockInfo
      return typeof info.pid === 'number' && typeof info.host === 'string' ? info : null
    } catch {
      return null
    }
  }

  release(): void {
    const held = WriterLock.read(this.file)
    if (held && held.pid === process.pid && held.host === os.hostname()) fs.rmSync(this.file, { force: true })
  }
}
