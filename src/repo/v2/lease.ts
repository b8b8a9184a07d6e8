/**
 * Leases and the maintenance lock of a format 2 repository (native-notes/format.md §2.8.5,
 * §2.20.4): `leases/<rand16>` says "process P on host H has been using the repository since
 * T", renewed by a heartbeat; `locks/maintenance` is a lease of kind `maintenance`, taken by
 * an exclusive create, held by forget (and later merge, prune, compact, upgrade).
 *
 * Liveness (§2.8.5): on the holder's own host, the pid with its start time (/proc/PID/stat
 * field 22: immune to pid reuse) judges at once; on another host, `renewed + expiresAfterMs`
 * plus the clock skew allowance.
 *
 * The heartbeat is an unref'd timer whose write is asynchronous (the store's async put): it
 * never keeps a process alive, and never blocks the event loop of a mount.
 */
import fs from 'node:fs'
import os from 'node:os'
import { randomBytes } from 'node:crypto'
import { keys2, LEASE_RE } from '../../format/v2/layout.js'
import {
  type LeaseKind, type LeaseRecord, decodeLease, encodeLease, leaseLive, LEASE_EXPIRES_MS, LEASE_HEARTBEAT_MS, MAX_CLOCK_SKEW_MS,
} from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { pidAlive } from '../../os/process.js'
import { StoreError } from '../../store/store.js'
import { BfsError } from '../errors.js'
import { type Repo2, envelope2, payloadOf } from './repo2.js'

/** An unreadable lock older than this is litter: its writer writes it whole before linking it (as format 1's lock). */
export const STALE_UNREADABLE_MS = 10_000

/** The start time of `pid` in clock ticks since boot (/proc/PID/stat field 22), or null when it cannot be read (no such process). */
export function pidStartOf(pid: number): number | null {
  let stat: string
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1')
  } catch {
    return null
  }
  // field 2 (comm) is in parentheses and may hold spaces and ')': count from the last ')'
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // rest[0] is field 3 (state): field 22 is rest[19]
  const v = Number(rest[19])
  return Number.isSafeInteger(v) ? v : null
}

/**
 * Whether a lease's holder may still be using the repository (§2.8.5): on this host, its pid
 * runs and started when the lease says (a reused pid is another process); elsewhere, it was
 * renewed within its expiry plus the skew allowance.
 */
export function holderAlive(l: LeaseRecord, nowMs = Date.now(), host = os.hostname()): boolean {
  if (l.host === host) {
    if (!pidAlive(l.pid)) return false
    const start = pidStartOf(l.pid)
    return start === null || start === l.pidStart
  }
  return leaseLive(l, nowMs, MAX_CLOCK_SKEW_MS)
}

export interface LeaseOptions {
  pins?: string[]
  /** The command, named in the record for messages (the maintenance lock: `forget`, …). */
  command?: string
  expiresAfterMs?: number
  heartbeatMs?: number
}

/** The record of this process holding a lease named `name`. */
function ownRecord(name: string, kind: LeaseKind, o: LeaseOptions): LeaseRecord {
  const now = new Date().toISOString()
  return {
    lease: name, kind, host: os.hostname(), pid: process.pid, pidStart: pidStartOf(process.pid) ?? 0,
    started: now, renewed: now, expiresAfterMs: o.expiresAfterMs ?? LEASE_EXPIRES_MS,
    ...(o.pins ? { pins: o.pins } : {}), ...(o.command !== undefined ? { command: o.command } : {}),
  }
}

/** Reads and decodes a lease or lock; null when absent; `{bytes, record: null}` when it does not decode. */
export function readLease(repo: Repo2, key: string): { bytes: Buffer; record: LeaseRecord | null } | null {
  let bytes: Buffer
  try {
    bytes = repo.sync.getSync(key)
  } catch (err) {
    if (err instanceof StoreError && err.code === 'ENOENT') return null
    if (err instanceof StoreError) return { bytes: Buffer.alloc(0), record: null }
    throw err
  }
  try {
    return { bytes, record: decodeLease(repo.unseal('lease', key, bytes), repo.store.where(key)) }
  } catch (err) {
    if (err instanceof FormatError) return { bytes, record: null }
    throw err
  }
}

/** Every lease in `leases/` that decodes (for prune and tests); unreadable ones are skipped. */
export function listLeases(repo: Repo2): LeaseRecord[] {
  const out: LeaseRecord[] = []
  for (const k of repo.sync.listSync(keys2.leases)) {
    if (!LEASE_RE.test(k.slice(k.lastIndexOf('/') + 1))) continue
    const r = readLease(repo, k)
    if (r?.record) out.push(r.record)
  }
  return out
}

/**
 * A held lease (or the maintenance lock): renewed every `heartbeatMs` by an unref'd timer,
 * removed by release() and, failing that, at process exit.
 */
export class Lease {
  private timer: NodeJS.Timeout | null = null
  private renewing: Promise<void> | null = null
  private queued: Promise<void> | null = null
  /** process.hrtime of the last write that landed (monotonic: §2.20.3 step 7). */
  private lastRenewal: bigint
  /** Date.now() of the same: the monotonic clock stops while the machine sleeps, this one does not. */
  private lastRenewalWall: number
  private released = false
  /** Once expired, always expired (lapsed()): set when a renewal landed too late, or lapsed() saw the age past the expiry. */
  private lapsedOnce = false
  private readonly onExit = (): void => this.removeSync()

  private constructor(
    private readonly repo: Repo2,
    readonly key: string,
    private record: LeaseRecord,
    private readonly heartbeatMs: number,
  ) {
    this.lastRenewal = process.hrtime.bigint()
    this.lastRenewalWall = Date.now()
    this.timer = setInterval(() => void this.renew(), heartbeatMs)
    this.timer.unref()
    process.on('exit', this.onExit)
  }

  get name(): string {
    return this.record.lease
  }

  get info(): LeaseRecord {
    return { ...this.record }
  }

  /** Creates `leases/<rand16>` (exclusive create, another name on the rare collision) and starts its heartbeat. */
  static take(repo: Repo2, kind: Exclude<LeaseKind, 'maintenance'>, o: LeaseOptions = {}): Lease {
    const fresh = newPrefix(repo, keys2.leases)
    for (;;) {
      const name = randomBytes(8).toString('hex')
      const rec = ownRecord(name, kind, o)
      try {
        repo.sync.putSync(keys2.lease(name), repo.seal('lease', keys2.lease(name), encodeLease(rec)), { mode: 'exclusive', durable: false })
        if (fresh) repo.sync.flushSync('') // leases/ was just made: its entry in the top directory too (§2.20.2)
        return new Lease(repo, keys2.lease(name), rec, o.heartbeatMs ?? LEASE_HEARTBEAT_MS)
      } catch (err) {
        if (err instanceof StoreError && err.code === 'EEXIST') continue
        throw err
      }
    }
  }

  /**
   * Takes the maintenance lock (§2.20.4): an exclusive create of `locks/maintenance`. A stale
   * holder (its pid dead or reused on this host; expired elsewhere; an unreadable lock older
   * than 10 s) is broken: the lock is deleted if it is still the bytes judged stale, then
   * created again. A live holder: waits up to `waitMs` (polling), then BfsError LOCKED
   * (exit 5) naming it. `onWait` is told once when waiting starts and once when it got it.
   */
  static async maintenance(
    repo: Repo2,
    command: string,
    opts: LeaseOptions & { waitMs?: number; onWait?: (m: string) => void; pollMs?: number } = {},
  ): Promise<Lease> {
    const key = keys2.maintenanceLock
    const fresh = newPrefix(repo, keys2.locks)
    const waitMs = opts.waitMs ?? 0
    const start = Date.now()
    let waiting = false
    for (;;) {
      const rec = ownRecord('maintenance', 'maintenance', { ...opts, command: opts.command ?? command })
      try {
        repo.sync.putSync(key, repo.seal('lease', key, encodeLease(rec)), { mode: 'exclusive', durable: false })
        if (fresh) repo.sync.flushSync('')
        if (waiting) opts.onWait?.(`got the maintenance lock after ${Math.round((Date.now() - start) / 1000)} s`)
        return new Lease(repo, key, rec, opts.heartbeatMs ?? LEASE_HEARTBEAT_MS)
      } catch (err) {
        if (!(err instanceof StoreError) || err.code !== 'EEXIST') throw new BfsError('IO', `cannot take the maintenance lock: ${(err as Error).message}`)
      }
      const held = readLease(repo, key)
      if (!held) continue // released between our create and our read
      let stale: boolean
      if (held.record) stale = !holderAlive(held.record)
      else {
        let mtimeMs: number | undefined
        try {
          mtimeMs = repo.sync.statSync(key).mtimeMs
        } catch {
          mtimeMs = undefined
        }
        stale = mtimeMs !== undefined && Date.now() - mtimeMs > STALE_UNREADABLE_MS
      }
      if (stale) {
        // remove it only if it is still the lock judged stale (not a new holder's)
        const again = readLease(repo, key)
        if (again && again.bytes.equals(held.bytes)) {
          opts.onWait?.(`broke a stale maintenance lock (${held.record ? who(held.record) : 'unreadable'})`)
          repo.sync.removeSync(key)
        }
        continue
      }
      const holder = held.record ? who(held.record) : 'another process (the lock is being written)'
      if (Date.now() - start >= waitMs) {
        throw new BfsError('LOCKED', waiting
          ? `${repo.dir}: the maintenance lock is still held by ${holder} after ${Math.round(waitMs / 1000)} s (--wait); '${command}' did nothing`
          : `${repo.dir}: the maintenance lock is held by ${holder}; '${command}' did nothing (use --wait to wait for it)`)
      }
      if (!waiting) {
        waiting = true
        opts.onWait?.(`the maintenance lock of ${repo.dir} is held by ${holder}; waiting for it ${waitMs >= Number.MAX_SAFE_INTEGER / 2 ? 'as long as it takes' : `up to ${Math.round(waitMs / 1000)} s`} (--wait)`)
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 200))
    }
  }

  /**
   * Rewrites the record with `renewed` = now (atomic replace; asynchronous, one write at a
   * time: a call while one is under way queues one more, which writes the record as it is then).
   */
  renew(): Promise<void> {
    if (this.released) return Promise.resolve()
    if (this.renewing) {
      this.queued ??= this.renewing.then(() => {
        this.queued = null
        return this.renew()
      })
      return this.queued
    }
    const rec: LeaseRecord = { ...this.record, renewed: new Date().toISOString() }
    const t = process.hrtime.bigint()
    const wall = Date.now()
    this.renewing = this.repo.store
      .put(this.key, this.repo.seal('lease', this.key, encodeLease(rec)), { mode: 'replace', durable: false })
      .then(() => {
        if (this.released) return void this.removeSync() // released while the write was under way
        this.record = { ...this.record, renewed: rec.renewed } // pins set meanwhile stay (the queued write has them)
        // a renewal that lands after the lease had expired does not bring it back: prune or
        // another host may have judged it dead meanwhile (and deleted or rewritten what it
        // protected), so lapsed() stays true from now on
        if (this.ageAt(t, wall) >= this.record.expiresAfterMs - MAX_CLOCK_SKEW_MS) this.lapsedOnce = true
        this.lastRenewal = t
        this.lastRenewalWall = wall
      })
      .catch(() => undefined) // a missed heartbeat: lapsed() tells the owner before it commits
      .finally(() => {
        this.renewing = null
      })
    return this.renewing
  }

  /** Replaces the pins (`gen@rev`) and writes the record (resolves once a write holding them landed or failed). */
  setPins(pins: string[]): Promise<void> {
    this.record = { ...this.record, pins: [...pins] }
    return this.renew()
  }

  /**
   * True when the lease was, at any moment, older than expiry − skew (§2.20.3 step 7: prune
   * or another host's recovery may have treated us as dead then, even if a renewal has landed
   * since), measured from the last renewal that landed, by the monotonic clock or by the wall
   * clock, whichever says older: CLOCK_MONOTONIC stops while the machine is suspended, and a
   * machine that slept past the expiry must not commit.
   */
  lapsed(): boolean {
    if (this.lapsedOnce) return true
    if (this.ageAt(process.hrtime.bigint(), Date.now()) >= this.record.expiresAfterMs - MAX_CLOCK_SKEW_MS) this.lapsedOnce = true
    return this.lapsedOnce
  }

  /** Milliseconds from the last renewal that landed to (mono, wall), by whichever clock says longer. */
  private ageAt(mono: bigint, wall: number): number {
    return Math.max(Number(mono - this.lastRenewal) / 1e6, wall - this.lastRenewalWall)
  }

  /** Stops the heartbeat and removes the lease (only if it is still ours). */
  release(): void {
    if (this.released) return
    this.released = true
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    process.off('exit', this.onExit)
    this.removeSync()
  }

  private removeSync(): void {
    try {
      const cur = readLease(this.repo, this.key)
      if (cur?.record && cur.record.pid === process.pid && cur.record.host === this.record.host && cur.record.started === this.record.started) this.repo.sync.removeSync(this.key)
    } catch {
      // the lease lapses on its own (its pid is dead once we exit)
    }
  }
}

/**
 * A reader's lease (§2.20.4: mount, restore, verify, cat, ls, diff, find, log), best effort:
 * where the repository cannot be written (permissions, a read-only filesystem, a full disk) the
 * reader goes on without one, as format 1's readers always did — it is then unprotected from a
 * prune. `command` names the command in the record where the kind does not (find: kind `ls`).
 */
export function readerLease(repo: Repo2, kind: Exclude<LeaseKind, 'maintenance'>, pins?: string[], command?: string): Lease | null {
  try {
    return Lease.take(repo, kind, { ...(pins ? { pins } : {}), ...(command !== undefined ? { command } : {}) })
  } catch (err) {
    if (err instanceof StoreError) return null
    throw err
  }
}

/** Whether `prefix` is not yet a directory of the repository's top (a repository made before leases). */
function newPrefix(repo: Repo2, prefix: string): boolean {
  return !repo.sync.listSync('').includes(prefix)
}

function who(l: LeaseRecord): string {
  return `pid ${l.pid} on ${l.host} (${l.command ?? l.kind}, since ${l.started})`
}
