/**
 * The recall engine: carries out read requests on a library's drives as they arrive, in the
 * order schedule.ts decides (native-notes/tape.md §"Recall engine"). One per process that
 * reads tape (the recall service; a test or bench in one process).
 *
 * - Requests that arrive while the drives are idle are collected for `windowMs` before the
 *   first decision, so concurrent misses become one batch.
 * - Each drive serves the cartridge in it while that has requests (one mount per batch),
 *   shortest locate time first, reading through short gaps; the age cap of
 *   schedule.decide keeps any request from starving.
 * - Several drives work at once, each on its own cartridge: a request is a candidate only
 *   for the drive its cartridge is in, or, if it is in none, for any drive.
 * - Drives are taken from the library when there is work and given back after `lingerMs`
 *   without any, so other processes (a migration) can use them; a drive or cartridge held by
 *   another process is tried again after `retryMs`.
 * - `exclusive()` lends one drive to a writer (migration), whose cartridge then stays out of
 *   the engine's hands until it is done.
 */
import { TapeError } from './device.js'
import { dismount, mountCartridge, readRequest, readThrough } from './execute.js'
import { decide, type RecallRequest, type ScheduleOptions } from './schedule.js'

/**
 * The engine's scheduling defaults. Requests of a mount's readers arrive one after another,
 * so nearly every one is overtaken: with schedule.ts's 600 s age cap they become urgent in
 * droves and are served oldest first, which is arrival order (8 readers, 10-unit files:
 * 12.5 simulated hours instead of 4.6, and a longer worst wait, 73 min against 39). An
 * aging bonus (a second of locate forgiven per 100 s waited) keeps waits short while the
 * order stays by cost, and a one-hour cap is the backstop (native-notes/tape.md).
 */
export const ENGINE_SCHEDULE: Readonly<ScheduleOptions> = { ageCapS: 3600, agingPerS: 0.01 }
import type { VirtualTapeDrive, VirtualTapeLibrary } from './vtl.js'

export interface ReadJob {
  cartridge: string
  /** First block to read. */
  block: number
  records: number
  /** Serve it before this simulated time if at all possible (schedule.ts deadlines). */
  deadline?: number
  /** Asked for ahead of any reader (schedule.ts `ahead`): ordered by cost alone until promote(). */
  ahead?: boolean
  /** Receives the records read (the engine waits for it before the drive moves on). */
  sink: (records: Buffer[]) => void | Promise<void>
}

export interface EngineOptions {
  /** Drive indexes to use (default: every drive of the library). */
  drives?: number[]
  /** Real ms to collect requests once work arrives at idle drives (default 20). */
  windowMs?: number
  schedule?: ScheduleOptions
  /** Real ms an idle drive is kept before it is given back to the library (default 5000). */
  lingerMs?: number
  /** Real ms before trying again a drive or cartridge that another process holds (default 500). */
  retryMs?: number
}

/** A request was cancelled before its turn. */
export class RecallCancelled extends Error {
  override readonly name = 'RecallCancelled'
}

/** What the engine did, for status lines and benches. */
export interface EngineCounters {
  served: number
  bytes: number
  mounts: number
  locates: number
  readThroughs: number
  failed: number
  cancelled: number
}

export interface EngineDriveStatus {
  index: number
  /** Held by this process now. */
  held: boolean
  cartridge: string | null
  loaded: boolean
  block: number
  clock: number
  state: 'idle' | 'reading' | 'mounting' | 'writing' | 'waiting'
}

export interface EngineStatus {
  drives: EngineDriveStatus[]
  pending: number
  /** Of those, asked for ahead and not promoted (no reader waits for them yet). */
  pendingAhead: number
  pendingByCartridge: Record<string, number>
  counters: EngineCounters
}

interface Job extends RecallRequest {
  readonly sink: ReadJob['sink']
  resolve: () => void
  reject: (e: unknown) => void
}

interface Slot {
  index: number
  session: VirtualTapeDrive | null
  /** The cartridge physically in the drive (loaded or not), as last seen. */
  claim: string | null
  busy: boolean
  reserved: boolean
  state: EngineDriveStatus['state']
  retryAt: number
  linger: NodeJS.Timeout | null
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export class RecallEngine {
  readonly counters: EngineCounters = { served: 0, bytes: 0, mounts: 0, locates: 0, readThroughs: 0, failed: 0, cancelled: 0 }
  private readonly slots: Slot[]
  private readonly pending = new Map<number, Job>()
  private readonly overtaken = new Set<number>()
  /** Cartridges another process has in a drive: not tried again before the time given. */
  private readonly unavailable = new Map<string, number>()
  private nextId = 1
  private lastNow = 0
  private windowTimer: NodeJS.Timeout | null = null
  private retryTimer: NodeJS.Timeout | null = null
  private closed = false
  private readonly waiters: Array<() => void> = []
  private writersWaiting = 0
  private readonly windowMs: number
  private readonly lingerMs: number
  private readonly retryMs: number
  private readonly sched: ScheduleOptions

  constructor(
    readonly lib: VirtualTapeLibrary,
    o: EngineOptions = {},
  ) {
    const all = lib.state().drives.map((_, i) => i)
    const use = o.drives ?? all
    for (const d of use) if (!all.includes(d)) throw new TapeError('ILLEGAL_REQUEST', `no drive ${d} in ${lib.dir}`)
    this.slots = use.map((index) => ({ index, session: null, claim: null, busy: false, reserved: false, state: 'idle', retryAt: 0, linger: null }))
    this.windowMs = o.windowMs ?? 20
    this.lingerMs = o.lingerMs ?? 5000
    this.retryMs = o.retryMs ?? 500
    this.sched = { ...ENGINE_SCHEDULE, ...o.schedule }
    this.refreshClaims()
  }

  /**
   * The library's simulated time as this engine last saw it (the latest clock of its
   * drives). With no drive held, from the library's state: a fresh engine (a service just
   * started) on a library whose clock is hours along must not stamp its first requests
   * with time 0, which would make them hours old to the scheduler's aging and age cap.
   */
  now(): number {
    let held = false
    for (const s of this.slots) {
      if (!s.session) continue
      held = true
      this.lastNow = Math.max(this.lastNow, s.session.clock.now())
    }
    if (!held) {
      const drives = this.lib.state().drives
      for (const s of this.slots) this.lastNow = Math.max(this.lastNow, drives[s.index]?.clock ?? 0)
    }
    return this.lastNow
  }

  /** Queues a read; resolves once its records were read and its sink returned. */
  submit(j: ReadJob): { id: number; done: Promise<void> } {
    if (this.closed) throw new TapeError('ILLEGAL_REQUEST', 'the recall engine is closed')
    if (!Number.isSafeInteger(j.block) || j.block < 0 || !Number.isSafeInteger(j.records) || j.records < 1) throw new RangeError(`bad read of ${j.records} records at block ${j.block}`)
    const id = this.nextId++
    let resolve!: () => void
    let reject!: (e: unknown) => void
    const done = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    const idle = this.pending.size === 0 && this.slots.every((s) => !s.busy)
    // arrival breaks ties by order, so that requests submitted together never overtake each other's arrival
    this.pending.set(id, { id, cartridge: j.cartridge, block: j.block, records: j.records, arrival: this.now(), deadline: j.deadline, ahead: !!j.ahead, sink: j.sink, resolve, reject })
    if (idle && this.windowMs > 0 && !this.windowTimer) {
      this.windowTimer = setTimeout(() => {
        this.windowTimer = null
        this.pump()
      }, this.windowMs)
    } else this.pump()
    return { id, done }
  }

  /**
   * A reader now waits for request `id`, asked for ahead: from here it is an ordinary
   * request arriving now (it ages, and can become urgent). False if it is not pending.
   */
  promote(id: number): boolean {
    const j = this.pending.get(id)
    if (!j) return false
    if (j.ahead) {
      j.ahead = false
      j.arrival = this.now()
      this.overtaken.delete(id)
    }
    return true
  }

  /** Cancels a request that has not been started; false if it is being read or done. */
  cancel(id: number): boolean {
    const j = this.pending.get(id)
    if (!j) return false
    this.pending.delete(id)
    this.overtaken.delete(id)
    this.counters.cancelled++
    j.reject(new RecallCancelled(`recall ${id} cancelled`))
    return true
  }

  get pendingCount(): number {
    return this.pending.size
  }

  status(): EngineStatus {
    this.refreshClaims()
    const inv = this.lib.state().drives
    const byCart: Record<string, number> = {}
    for (const j of this.pending.values()) byCart[j.cartridge] = (byCart[j.cartridge] ?? 0) + 1
    return {
      drives: this.slots.map((s) => {
        const r = s.session ? s.session.record() : inv[s.index]!
        return { index: s.index, held: !!s.session, cartridge: r.cartridge, loaded: r.loaded, block: r.block, clock: r.clock, state: s.state }
      }),
      pending: this.pending.size,
      pendingAhead: [...this.pending.values()].filter((j) => j.ahead).length,
      pendingByCartridge: byCart,
      counters: { ...this.counters },
    }
  }

  /**
   * Lends a drive to `fn` (a writer) for as long as it runs: an idle one of this engine,
   * taken from the library if needed, waiting up to `waitMs` for one (BUSY after that).
   */
  async exclusive<T>(fn: (drive: VirtualTapeDrive) => Promise<T>, o: { waitMs?: number } = {}): Promise<T> {
    const deadline = performance.now() + (o.waitMs ?? 0)
    // a writer waiting goes first: no new reads start until it has its drive
    this.writersWaiting++
    let waiting = true
    const stopWaiting = (): void => {
      if (waiting) this.writersWaiting--
      waiting = false
    }
    try {
      for (;;) {
        if (this.closed) throw new TapeError('ILLEGAL_REQUEST', 'the recall engine is closed')
        // an idle slot, preferring one this process holds already
        const free = this.slots.filter((s) => !s.busy && !s.reserved).sort((a, b) => Number(!!b.session) - Number(!!a.session))
        for (const s of free) {
          s.reserved = true
          s.state = 'writing'
          this.clearLinger(s)
          try {
            const d = await this.acquire(s)
            stopWaiting()
            try {
              return await fn(d)
            } finally {
              s.claim = d.record().cartridge
            }
          } catch (err) {
            if (!(err instanceof TapeError && err.code === 'BUSY' && !s.session)) throw err
            // held by another process: try the next drive
          } finally {
            s.reserved = false
            s.state = 'idle'
            this.pump()
          }
        }
        if (performance.now() >= deadline) throw new TapeError('BUSY', `every drive of ${this.lib.dir} is in use (by this process's recalls or by another process)`)
        await new Promise<void>((r) => {
          this.waiters.push(r)
          setTimeout(r, Math.min(this.retryMs, 200))
        })
      }
    } finally {
      stopWaiting()
      this.pump()
    }
  }

  /**
   * Mounts `label` in `drive` (lent by exclusive()): from its slot, or out of another drive
   * of this engine that is idle; a cartridge in another process's drive is waited for up
   * to `waitMs`, then BUSY.
   */
  async bringCartridge(drive: VirtualTapeDrive, label: string, waitMs = 0): Promise<void> {
    const deadline = performance.now() + waitMs
    for (;;) {
      const st = this.lib.state()
      if (!st.cartridges.includes(label)) throw new TapeError('ILLEGAL_REQUEST', `no cartridge ${label} in ${this.lib.dir}`)
      if (st.drives[drive.index]?.cartridge === label || drive.record().cartridge === label || st.slots.includes(label)) return mountCartridge(this.lib, drive, label)
      const k = st.drives.findIndex((d) => d.cartridge === label)
      const other = this.slots.find((s) => s.index === k)
      if (other && !other.busy && !other.reserved) {
        other.reserved = true
        this.clearLinger(other)
        try {
          await dismount(this.lib, await this.acquire(other))
          continue
        } catch (err) {
          if (!(err instanceof TapeError && err.code === 'BUSY')) throw err
        } finally {
          other.reserved = false
          other.claim = other.session?.record().cartridge ?? null
        }
      }
      if (performance.now() >= deadline) throw new TapeError('BUSY', `cartridge ${label} is in drive ${k} of ${this.lib.dir}, in use by another process`)
      await sleep(Math.min(this.retryMs, 200))
    }
  }

  /** Rejects pending requests, waits for reads in progress, gives the drives back. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.windowTimer) clearTimeout(this.windowTimer)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    for (const j of this.pending.values()) j.reject(new RecallCancelled('the recall engine closed'))
    this.pending.clear()
    while (this.slots.some((s) => s.busy || s.reserved)) await sleep(5)
    for (const s of this.slots) {
      this.clearLinger(s)
      if (s.session) await s.session.release().catch(() => undefined)
      s.session = null
    }
  }

  /** Which cartridge each drive that this process does not hold has in it (state.json). */
  private refreshClaims(): void {
    let drives: ReturnType<VirtualTapeLibrary['state']>['drives'] | null = null
    for (const s of this.slots) {
      if (s.session) s.claim = s.session.record().cartridge
      else {
        drives ??= this.lib.state().drives
        s.claim = drives[s.index]?.cartridge ?? null
      }
    }
  }

  /** Requests slot `s` may serve: on its cartridge, or on one no other drive has and no other process holds. */
  private candidates(s: Slot, now: number): Job[] {
    const out: Job[] = []
    for (const j of this.pending.values()) {
      if (j.cartridge === s.claim) out.push(j)
      else if (!this.slots.some((o) => o !== s && o.claim === j.cartridge) && (this.unavailable.get(j.cartridge) ?? 0) <= now) out.push(j)
    }
    return out
  }

  private pump(): void {
    if (this.closed || this.windowTimer) return
    for (const w of this.waiters.splice(0)) w()
    if (this.writersWaiting > 0) return
    if (this.pending.size === 0) {
      for (const s of this.slots) if (!s.busy && !s.reserved) this.scheduleLinger(s)
      return
    }
    this.refreshClaims()
    const now = Date.now()
    let retry = Infinity
    for (const s of this.slots) {
      if (s.busy || s.reserved) continue
      if (s.retryAt > now) {
        retry = Math.min(retry, s.retryAt)
        continue
      }
      if (this.candidates(s, now).length === 0) {
        for (const t of this.unavailable.values()) if (t > now) retry = Math.min(retry, t)
        this.scheduleLinger(s)
        continue
      }
      this.clearLinger(s)
      s.busy = true
      void this.step(s)
        .catch(() => undefined)
        .finally(() => {
          s.busy = false
          s.state = 'idle'
          this.pump()
        })
    }
    if (retry < Infinity && !this.retryTimer) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null
        this.pump()
      }, Math.max(1, retry - now))
    }
  }

  private async acquire(s: Slot): Promise<VirtualTapeDrive> {
    if (s.session) return s.session
    s.session = await this.lib.drive(s.index, { waitMs: 0 })
    s.claim = s.session.record().cartridge
    return s.session
  }

  private scheduleLinger(s: Slot): void {
    if (!s.session || s.linger || s.busy || s.reserved) return
    s.linger = setTimeout(() => {
      s.linger = null
      if (s.busy || s.reserved || !s.session) return
      const d = s.session
      s.session = null
      void d.release().catch(() => undefined)
    }, this.lingerMs)
    s.linger.unref()
  }

  private clearLinger(s: Slot): void {
    if (s.linger) clearTimeout(s.linger)
    s.linger = null
  }

  /** One decision on slot `s` and what it takes: a mount, or one read (with its move). */
  private async step(s: Slot): Promise<void> {
    let drive: VirtualTapeDrive
    try {
      drive = await this.acquire(s)
    } catch (err) {
      if (err instanceof TapeError && err.code === 'BUSY') {
        s.retryAt = Date.now() + this.retryMs
        return
      }
      throw err
    }
    const rec = drive.record()
    s.claim = rec.cartridge
    const head = { cartridge: rec.loaded ? rec.cartridge : null, block: rec.loaded ? rec.block : 0 }
    if (rec.cartridge && !rec.loaded) head.cartridge = null
    const cands = this.candidates(s, Date.now())
    const d = decide(drive.model, head, cands, drive.clock.now(), (r) => this.overtaken.has(r.id), this.sched)
    if (!d) return
    if (d.kind === 'switch') {
      s.state = 'mounting'
      s.claim = d.cartridge
      try {
        await mountCartridge(this.lib, drive, d.cartridge)
        this.counters.mounts++
      } catch (err) {
        s.claim = drive.record().cartridge
        const known = this.lib.state().cartridges.includes(d.cartridge)
        if (known && err instanceof TapeError && (err.code === 'ILLEGAL_REQUEST' || err.code === 'BUSY')) {
          // in another process's drive (say, a migration writing to it): later
          this.unavailable.set(d.cartridge, Date.now() + this.retryMs)
          return
        }
        // the cartridge cannot be read at all: its requests fail
        for (const j of [...this.pending.values()]) {
          if (j.cartridge !== d.cartridge) continue
          this.pending.delete(j.id)
          this.counters.failed++
          j.reject(err)
        }
      }
      return
    }
    const job = d.request as Job
    this.pending.delete(job.id)
    this.overtaken.delete(job.id)
    for (const p of this.pending.values()) if (p.arrival < job.arrival) this.overtaken.add(p.id)
    s.state = 'reading'
    try {
      if (d.move.how === 'locate') {
        this.counters.locates++
        await drive.locate(d.move.to)
      } else if (d.move.how === 'readThrough') {
        this.counters.readThroughs++
        await readThrough(drive, d.move.blocks)
      }
      const res = await readRequest(drive, job, { data: true })
      this.counters.bytes += res.bytes
      await job.sink(res.records)
      this.counters.served++
      job.resolve()
    } catch (err) {
      this.counters.failed++
      job.reject(err)
    } finally {
      this.lastNow = Math.max(this.lastNow, drive.clock.now())
    }
  }
}
