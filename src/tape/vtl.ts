/**
 * The virtual tape library (native-notes/tape.md §"Virtual tape library"): a directory
 * standing in for a tape library with slots, drives and a robot, timed by the tape model.
 *
 *   DIR/state.json            the library's state: configuration, which cartridge is in
 *                             which slot or drive, each drive's position and clock, the
 *                             robot's clock; replaced atomically (tmp → fsync → rename)
 *   DIR/lock                  flock: held while state.json is read, changed and replaced
 *   DIR/drive-N.lock          flock: held by the one process using drive N, for as long as
 *                             it uses it (and for the robot's moves in and out of it)
 *   DIR/cartridges/LABEL.tape one file per cartridge, its records (cartridge.ts)
 *
 * A drive is used by one process at a time (like a SCSI reservation); the robot and the
 * state file are shared. A drive's position and clock live in its process's memory while
 * it holds the drive and are saved to state.json on LOAD, UNLOAD, robot moves, release,
 * process exit and at most a second apart otherwise; the records themselves are in the
 * cartridge file, which is its own index, so a crash loses at most the last second of a
 * drive's clock and position (the position is clamped to the recovered end of data), never
 * records that a flush made durable.
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { flock } from '../native/index.js'
import { addTotals, emptyTotals, SimClock, type OpTotals } from './clock.js'
import { CartridgeFile } from './cartridge.js'
import {
  TapeError,
  type DriveStatus,
  type ElementAddress,
  type FillRecords,
  type Inventory,
  type ReadResult,
  type SpaceResult,
  type TapeChanger,
  type TapeDrive,
  type TapePosition,
  type WriteResult,
} from './device.js'
import { capacityBlocks, hostStreamCost, locateSeconds, modelByName, rewindSeconds, syncSeconds, type TapeModel } from './model.js'

export const VTL_FORMAT = 'bfs-vtl'
export const VTL_VERSION = 1
const STATE = 'state.json'
const LIB_LOCK = 'lock'
const CARTS = 'cartridges'
const driveLockName = (n: number): string => `drive-${n}.lock`
/** Real milliseconds between saves of a busy drive's position and clock. */
const CHECKPOINT_MS = 1000

export interface DriveRecord {
  cartridge: string | null
  loaded: boolean
  block: number
  clock: number
  totals: OpTotals
  /** Bytes streamed since the last backhitch while fed below the minimum streaming rate. */
  carry: number
  backhitches: number
}

export interface LibraryState {
  format: typeof VTL_FORMAT
  version: number
  model: string
  clockScale: number
  created: string
  recordBytes: number
  capacityBlocks: number
  earlyWarningBlocks: number
  cartridges: string[]
  slots: Array<string | null>
  drives: DriveRecord[]
  robot: { clock: number; totals: OpTotals }
}

export interface CreateOptions {
  model: TapeModel
  cartridges: number
  drives: number
  clockScale: number
  /** Overrides the model's capacity (tests of the end of medium). */
  capacityBlocks?: number
  earlyWarningBlocks?: number
}

/** `BFS001L9`: a barcode label as libraries print them, the media type last (L9 = LTO-9). */
export function cartridgeLabel(i: number, model: TapeModel): string {
  const media = model.name === 'lto9' ? 'L9' : 'LX'
  return `BFS${String(i + 1).padStart(3, '0')}${media}`
}

const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** An flock held on a file of the library; polls (never blocks the event loop) while waiting. */
class FileLock {
  private constructor(private fd: number) {}

  static tryAcquire(file: string): FileLock | null {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644)
    if (flock(fd, 'exclusive')) return new FileLock(fd)
    fs.closeSync(fd)
    return null
  }

  static async acquire(file: string, waitMs: number, what: string): Promise<FileLock> {
    const deadline = performance.now() + waitMs
    for (let delay = 2; ; delay = Math.min(50, delay * 2)) {
      const l = FileLock.tryAcquire(file)
      if (l) return l
      if (performance.now() >= deadline) throw new TapeError('BUSY', `${what} is in use by another process`)
      await sleepMs(delay)
    }
  }

  release(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd) // the close drops the flock
      this.fd = -1
    }
  }
}

function writeFileDurably(file: string, data: string): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  const fd = fs.openSync(tmp, 'wx', 0o644)
  try {
    fs.writeFileSync(fd, data)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(tmp, file)
  const dfd = fs.openSync(path.dirname(file), 'r')
  try {
    fs.fsyncSync(dfd)
  } finally {
    fs.closeSync(dfd)
  }
}

function newDriveRecord(): DriveRecord {
  return { cartridge: null, loaded: false, block: 0, clock: 0, totals: emptyTotals(), carry: 0, backhitches: 0 }
}

/** Library-wide figures for `bfs tier status`. */
export interface LibraryStatus {
  dir: string
  model: string
  clockScale: number
  /** The library's simulated time: the latest of its drives' and robot's clocks. */
  now: number
  slots: Array<string | null>
  drives: Array<DriveRecord & { index: number }>
  robot: { clock: number; totals: OpTotals }
  totals: OpTotals
  cartridges: Array<{ label: string; where: string; fileBytes: number }>
}

const live = new Set<VirtualTapeLibrary>()
let exitHook = false

export class VirtualTapeLibrary implements TapeChanger {
  private readonly held = new Map<number, VirtualTapeDrive>()
  private mutex: Promise<unknown> = Promise.resolve()

  private constructor(
    readonly dir: string,
    readonly model: TapeModel,
    /** The clock scale this process uses (the library's, unless overridden at open). */
    readonly clockScale: number,
    readonly capacityBlocks: number,
    readonly earlyWarningBlocks: number,
  ) {}

  /** Creates a library in `dir` (which must not exist): its cartridges in the first slots, drives empty. */
  static create(dir: string, o: CreateOptions): void {
    const abs = path.resolve(dir)
    if (fs.existsSync(abs)) throw new TapeError('ILLEGAL_REQUEST', `${abs} already exists`)
    if (!Number.isInteger(o.cartridges) || o.cartridges < 1 || o.cartridges > 999) throw new TapeError('ILLEGAL_REQUEST', 'cartridges must be 1 to 999')
    if (!Number.isInteger(o.drives) || o.drives < 1 || o.drives > 64) throw new TapeError('ILLEGAL_REQUEST', 'drives must be 1 to 64')
    if (!(o.clockScale >= 0) || !Number.isFinite(o.clockScale)) throw new TapeError('ILLEGAL_REQUEST', 'the clock scale must be a number ≥ 0')
    const cap = o.capacityBlocks ?? capacityBlocks(o.model)
    const ew = o.earlyWarningBlocks ?? Math.min(o.model.earlyWarningBlocks, Math.floor(cap / 10))
    // built under a temporary name, then renamed into place: a crash leaves no half library
    const tmp = `${abs}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
    fs.mkdirSync(path.join(tmp, CARTS), { recursive: true })
    try {
      const labels = Array.from({ length: o.cartridges }, (_, i) => cartridgeLabel(i, o.model))
      for (const label of labels) {
        CartridgeFile.create(path.join(tmp, CARTS, `${label}.tape`), { label, maxRecordBytes: o.model.recordBytes, capacityBlocks: cap, earlyWarningBlocks: ew, nonce: randomBytes(8) })
      }
      const state: LibraryState = {
        format: VTL_FORMAT,
        version: VTL_VERSION,
        model: o.model.name,
        clockScale: o.clockScale,
        created: new Date().toISOString(),
        recordBytes: o.model.recordBytes,
        capacityBlocks: cap,
        earlyWarningBlocks: ew,
        cartridges: labels,
        slots: labels.slice(),
        drives: Array.from({ length: o.drives }, newDriveRecord),
        robot: { clock: 0, totals: emptyTotals() },
      }
      writeFileDurably(path.join(tmp, STATE), JSON.stringify(state, null, 1) + '\n')
      for (const d of [path.join(tmp, CARTS), tmp]) {
        const fd = fs.openSync(d, 'r')
        fs.fsyncSync(fd)
        fs.closeSync(fd)
      }
      fs.renameSync(tmp, abs)
      const pfd = fs.openSync(path.dirname(abs), 'r')
      fs.fsyncSync(pfd)
      fs.closeSync(pfd)
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true })
      throw err
    }
  }

  /** Reads a library's state file (no lock: it is only ever replaced whole). */
  static readState(dir: string): LibraryState {
    const file = path.join(path.resolve(dir), STATE)
    let text: string
    try {
      text = fs.readFileSync(file, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new TapeError('NOT_A_LIBRARY', `${path.resolve(dir)} is not a virtual tape library (no ${STATE})`)
      throw err
    }
    let s: LibraryState
    try {
      s = JSON.parse(text) as LibraryState
    } catch {
      throw new TapeError('NOT_A_LIBRARY', `${file}: not valid JSON`)
    }
    if (s?.format !== VTL_FORMAT || s.version !== VTL_VERSION || !Array.isArray(s.drives) || !Array.isArray(s.slots)) throw new TapeError('NOT_A_LIBRARY', `${file}: not a bfs virtual tape library state (version ${VTL_VERSION})`)
    for (const d of s.drives) d.totals = addTotals(emptyTotals(), { ...emptyTotals(), ...d.totals })
    s.robot.totals = addTotals(emptyTotals(), { ...emptyTotals(), ...s.robot.totals })
    return s
  }

  static open(dir: string, opts: { clockScale?: number } = {}): VirtualTapeLibrary {
    const abs = path.resolve(dir)
    const s = VirtualTapeLibrary.readState(abs)
    const model = modelByName(s.model)
    if (!model) throw new TapeError('NOT_A_LIBRARY', `${abs}: unknown tape model '${s.model}'`)
    const scale = opts.clockScale ?? s.clockScale
    if (!(scale >= 0) || !Number.isFinite(scale)) throw new TapeError('ILLEGAL_REQUEST', 'the clock scale must be a number ≥ 0')
    const lib = new VirtualTapeLibrary(abs, model, scale, s.capacityBlocks, s.earlyWarningBlocks)
    live.add(lib)
    if (!exitHook) {
      exitHook = true
      process.on('exit', () => {
        for (const l of live) l.saveOnExit()
      })
    }
    return lib
  }

  cartridgePath(label: string): string {
    return path.join(this.dir, CARTS, `${label}.tape`)
  }

  state(): LibraryState {
    return VirtualTapeLibrary.readState(this.dir)
  }

  /** Runs `fn` on the state under the library lock and saves what it changed. */
  async update<T>(fn: (s: LibraryState) => T): Promise<T> {
    const run = async (): Promise<T> => {
      const lock = await FileLock.acquire(path.join(this.dir, LIB_LOCK), 60_000, `tape library ${this.dir}`)
      try {
        const s = this.state()
        const out = fn(s)
        writeFileDurably(path.join(this.dir, STATE), JSON.stringify(s, null, 1) + '\n')
        return out
      } finally {
        lock.release()
      }
    }
    // one state update at a time in this process; the flock orders processes
    const p = this.mutex.then(run, run)
    this.mutex = p.catch(() => undefined)
    return p
  }

  /** Best effort at process exit: save held drives' positions and clocks if the library lock is free. */
  private saveOnExit(): void {
    if (this.held.size === 0) return
    const lock = FileLock.tryAcquire(path.join(this.dir, LIB_LOCK))
    if (!lock) return
    try {
      const s = this.state()
      for (const [n, d] of this.held) s.drives[n] = d.record()
      writeFileDurably(path.join(this.dir, STATE), JSON.stringify(s, null, 1) + '\n')
    } catch {
      // exiting anyway
    } finally {
      lock.release()
    }
  }

  /**
   * Takes drive `n` for this process until {@link VirtualTapeDrive.release}. Waits up to
   * `waitMs` for another process to give it up, then fails with BUSY.
   */
  async drive(n: number, opts: { waitMs?: number } = {}): Promise<VirtualTapeDrive> {
    const s = this.state()
    if (!Number.isInteger(n) || n < 0 || n >= s.drives.length) throw new TapeError('ILLEGAL_REQUEST', `no drive ${n} (the library has ${s.drives.length})`)
    if (this.held.has(n)) throw new TapeError('BUSY', `drive ${n} is already open in this process`)
    const lock = await FileLock.acquire(path.join(this.dir, driveLockName(n)), opts.waitMs ?? 0, `drive ${n} of ${this.dir}`)
    try {
      // read under the drive lock: the state is now this drive's own
      const rec = this.state().drives[n]!
      const d = new VirtualTapeDrive(this, n, rec, lock)
      this.held.set(n, d)
      return d
    } catch (err) {
      lock.release()
      throw err
    }
  }

  /** @internal by VirtualTapeDrive.release */
  forget(n: number): void {
    this.held.delete(n)
  }

  async inventory(): Promise<Inventory> {
    const s = this.state()
    return {
      slots: s.slots.slice(),
      drives: s.drives.map((d, i) => {
        const h = this.held.get(i)?.record() ?? d
        return { cartridge: h.cartridge, loaded: h.loaded }
      }),
    }
  }

  /**
   * MOVE MEDIUM. A drive involved must be free or held by this process, and a cartridge
   * leaves a drive only once unloaded. The robot's move takes model.robotMoveS on the
   * robot's timeline, starting when both the robot and the drive are free.
   */
  move(from: ElementAddress, to: ElementAddress): Promise<void> {
    return this.moves([[from, to]])
  }

  /**
   * Several robot moves one after another, as one change of the library's state (all or
   * none): e.g. returning a cartridge to its slot and fetching the next (an exchange).
   */
  async moves(list: Array<[from: ElementAddress, to: ElementAddress]>): Promise<void> {
    const temp: FileLock[] = []
    let seconds = 0
    try {
      await this.update((s) => {
        // working copies of the drives involved; sessions of this process are updated at the end
        const work = new Map<number, DriveRecord>()
        const drive = (n: number, what: string): DriveRecord => {
          if (!Number.isInteger(n) || n < 0 || n >= s.drives.length) throw new TapeError('ILLEGAL_REQUEST', `no drive ${n} (the library has ${s.drives.length})`)
          let rec = work.get(n)
          if (rec) return rec
          const session = this.held.get(n)
          if (!session) {
            const l = FileLock.tryAcquire(path.join(this.dir, driveLockName(n)))
            if (!l) throw new TapeError('BUSY', `drive ${n} of ${this.dir} is in use by another process (${what})`)
            temp.push(l)
          }
          // a drive held here: its record in this process's memory is the current one
          rec = session ? session.record() : { ...s.drives[n]!, totals: addTotals(emptyTotals(), s.drives[n]!.totals) }
          work.set(n, rec)
          return rec
        }
        const slots = s.slots.slice()
        const robot = new SimClock(0, s.robot.clock, s.robot.totals)
        for (const [from, to] of list) {
          const el = (a: ElementAddress, what: string): { get(): string | null; set(v: string | null): void; rec?: DriveRecord } => {
            if ('slot' in a) {
              if (!Number.isInteger(a.slot) || a.slot < 0 || a.slot >= slots.length) throw new TapeError('ILLEGAL_REQUEST', `no slot ${a.slot} (the library has ${slots.length})`)
              return { get: () => slots[a.slot]!, set: (v) => void (slots[a.slot] = v) }
            }
            const rec = drive(a.drive, what)
            return { get: () => rec.cartridge, set: (v) => void (rec.cartridge = v), rec }
          }
          const src = el(from, 'source')
          const dst = el(to, 'destination')
          const label = src.get()
          if (label === null) throw new TapeError('ILLEGAL_REQUEST', `${describe(from)} is empty`)
          if (src.rec?.loaded) throw new TapeError('ILLEGAL_REQUEST', `${describe(from)}: cartridge ${label} is loaded; unload it first`)
          if (dst.get() !== null) throw new TapeError('ILLEGAL_REQUEST', `${describe(to)} is full (${dst.get()})`)
          // timelines: the robot starts when it and the drives involved are free
          const recs = [src.rec, dst.rec].filter((r): r is DriveRecord => !!r)
          robot.account(Math.max(0, ...recs.map((r) => r.clock - robot.now())), 'idle')
          robot.account(this.model.robotMoveS, 'robot')
          seconds += this.model.robotMoveS
          src.set(null)
          dst.set(label)
          for (const r of recs) {
            const c = new SimClock(0, r.clock, r.totals)
            c.account(Math.max(0, robot.now() - r.clock), 'idle') // waited for the robot
            r.clock = c.now()
            r.totals = c.totals()
            r.block = 0
          }
        }
        s.slots = slots
        s.robot = { clock: robot.now(), totals: robot.totals() }
        for (const [n, rec] of work) {
          const session = this.held.get(n)
          if (session) session.robotDone(rec)
          s.drives[n] = rec
        }
      })
    } finally {
      for (const l of temp) l.release()
    }
    // the robot's real time passes outside the lock, so other drives' updates go on
    if (this.clockScale > 0 && seconds > 0) await sleepMs(seconds * this.clockScale * 1000)
  }

  /** The slot a cartridge is in, or -1. */
  slotOf(label: string): number {
    return this.state().slots.indexOf(label)
  }

  status(): LibraryStatus {
    const s = this.state()
    const drives = s.drives.map((d, i) => ({ ...(this.held.get(i)?.record() ?? d), index: i }))
    let totals = addTotals(emptyTotals(), s.robot.totals)
    for (const d of drives) totals = addTotals(totals, d.totals)
    const where = (label: string): string => {
      const slot = s.slots.indexOf(label)
      if (slot >= 0) return `slot ${slot}`
      const d = drives.findIndex((x) => x.cartridge === label)
      return d >= 0 ? `drive ${d}${drives[d]!.loaded ? ' (loaded)' : ''}` : 'missing'
    }
    return {
      dir: this.dir,
      model: s.model,
      clockScale: s.clockScale,
      now: Math.max(s.robot.clock, ...drives.map((d) => d.clock)),
      slots: s.slots,
      drives,
      robot: s.robot,
      totals,
      cartridges: s.cartridges.map((label) => ({ label, where: where(label), fileBytes: fs.statSync(this.cartridgePath(label), { throwIfNoEntry: false })?.size ?? 0 })),
    }
  }

  /** Releases every drive this process holds. */
  async close(): Promise<void> {
    try {
      for (const d of [...this.held.values()]) await d.release()
    } finally {
      live.delete(this)
    }
  }
}

function describe(a: ElementAddress): string {
  return 'slot' in a ? `slot ${a.slot}` : `drive ${a.drive}`
}

/** A drive of the virtual library, held by this process. */
export class VirtualTapeDrive implements TapeDrive {
  readonly clock: SimClock
  readonly model: TapeModel
  private rec: DriveRecord
  private cart: CartridgeFile | null = null
  private queue: Promise<unknown> = Promise.resolve()
  private lastSave = performance.now()
  private released = false

  /** @internal use {@link VirtualTapeLibrary.drive} */
  constructor(
    private readonly lib: VirtualTapeLibrary,
    readonly index: number,
    rec: DriveRecord,
    private readonly lock: FileLock,
  ) {
    this.model = lib.model
    this.rec = { ...rec, totals: addTotals(emptyTotals(), rec.totals) }
    this.clock = new SimClock(lib.clockScale, rec.clock, rec.totals)
    if (rec.loaded && rec.cartridge) {
      // a cartridge left loaded: find its end of data again (and cut a torn tail)
      this.cart = CartridgeFile.open(lib.cartridgePath(rec.cartridge))
      this.rec.block = Math.min(this.rec.block, this.cart.eod())
    }
  }

  /** The drive's state as saved in state.json. */
  record(): DriveRecord {
    return { ...this.rec, clock: this.clock.now(), totals: this.clock.totals() }
  }

  /** What the cartridge walk found when this process opened the loaded cartridge (tests, status). */
  get recovery(): { cutBytes: number } | null {
    return this.cart?.recovery ?? null
  }

  /** @internal the robot moved a cartridge into or out of this drive: `rec` is the drive's record after it. */
  robotDone(rec: DriveRecord): void {
    this.rec.cartridge = rec.cartridge
    this.rec.block = rec.block
    this.clock.account(Math.max(0, rec.clock - this.clock.now()), 'idle')
  }

  /** Runs drive commands one at a time, as a drive does. */
  private op<T>(fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.released) throw new TapeError('ILLEGAL_REQUEST', `drive ${this.index} was released`)
      return fn()
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  private async checkpoint(force = false): Promise<void> {
    if (!force && performance.now() - this.lastSave < CHECKPOINT_MS) return
    this.lastSave = performance.now()
    const rec = this.record()
    await this.lib.update((s) => {
      s.drives[this.index] = rec
    })
  }

  private ready(): CartridgeFile {
    if (!this.rec.cartridge) throw new TapeError('NOT_READY', `drive ${this.index}: no cartridge`)
    if (!this.cart || !this.rec.loaded) throw new TapeError('NOT_READY', `drive ${this.index}: cartridge ${this.rec.cartridge} is not loaded`)
    return this.cart
  }

  private position(cart: CartridgeFile): TapePosition {
    const block = this.rec.block
    const eod = cart.eod()
    return { block, file: cart.filemarksBefore(block), bop: block === 0, eod: block === eod, earlyWarning: block >= this.lib.capacityBlocks - this.lib.earlyWarningBlocks, eodBlock: eod }
  }

  status(): Promise<DriveStatus> {
    return this.op(async () => ({ index: this.index, cartridge: this.rec.cartridge, loaded: this.rec.loaded, position: this.cart && this.rec.loaded ? this.position(this.cart) : null }))
  }

  load(): Promise<void> {
    return this.op(async () => {
      if (!this.rec.cartridge) throw new TapeError('NOT_READY', `drive ${this.index}: no cartridge to load`)
      if (this.rec.loaded) {
        await this.doRewind()
        return
      }
      this.cart = CartridgeFile.open(this.lib.cartridgePath(this.rec.cartridge))
      this.rec.loaded = true
      this.rec.block = 0
      this.rec.carry = 0
      await this.clock.spend(this.model.loadS, 'load')
      // saved at once: after a crash the cartridge is still threaded, and its end of data
      // is recovered from the cartridge file by whoever takes the drive next
      await this.checkpoint(true)
    })
  }

  unload(): Promise<void> {
    return this.op(async () => {
      if (!this.rec.cartridge) throw new TapeError('NOT_READY', `drive ${this.index}: no cartridge`)
      if (!this.rec.loaded) return
      await this.doRewind()
      this.cart?.close()
      this.cart = null
      this.rec.loaded = false
      await this.clock.spend(this.model.unloadS, 'unload')
      await this.checkpoint(true)
    })
  }

  private async doRewind(): Promise<void> {
    this.ready()
    const s = rewindSeconds(this.model, this.rec.block)
    this.rec.block = 0
    this.rec.carry = 0
    await this.clock.spend(s, 'rewind')
  }

  rewind(): Promise<void> {
    return this.op(async () => {
      await this.doRewind()
      await this.checkpoint()
    })
  }

  readPosition(): Promise<TapePosition> {
    return this.op(async () => this.position(this.ready()))
  }

  locate(block: number): Promise<void> {
    return this.op(async () => {
      const cart = this.ready()
      if (!Number.isSafeInteger(block) || block < 0) throw new TapeError('ILLEGAL_REQUEST', `bad block address ${block}`)
      const eod = cart.eod()
      const target = Math.min(block, eod)
      const s = locateSeconds(this.model, this.rec.block, target)
      this.rec.block = target
      this.rec.carry = 0
      await this.clock.spend(s, 'locate')
      await this.checkpoint()
      if (block > eod) throw new TapeError('EOD', `block ${block} is past end of data (${eod}); the drive is at end of data`)
    })
  }

  space(count: number, unit: 'filemarks' | 'blocks'): Promise<SpaceResult> {
    return this.op(async () => {
      const cart = this.ready()
      if (!Number.isSafeInteger(count)) throw new TapeError('ILLEGAL_REQUEST', `bad count ${count}`)
      if (unit !== 'filemarks' && unit !== 'blocks') throw new TapeError('ILLEGAL_REQUEST', `bad unit ${String(unit)}`)
      const from = this.rec.block
      const eod = cart.eod()
      let to = from
      let stoppedBy: SpaceResult['stoppedBy'] = null
      if (unit === 'filemarks') {
        for (let k = 0; k < Math.abs(count); k++) {
          if (count > 0) {
            const fm = cart.nextFilemark(to)
            if (fm === null) {
              to = eod
              stoppedBy = 'eod'
              break
            }
            to = fm + 1 // past it
          } else {
            const fm = cart.prevFilemark(to)
            if (fm === null) {
              to = 0
              stoppedBy = 'bot'
              break
            }
            to = fm // on its BOT side
          }
        }
      } else if (count > 0) {
        const fm = cart.nextFilemark(from)
        const want = from + count
        if (fm !== null && fm < Math.min(want, eod)) {
          to = fm + 1
          stoppedBy = 'filemark'
        } else if (want > eod) {
          to = eod
          stoppedBy = 'eod'
        } else to = want
      } else if (count < 0) {
        const fm = cart.prevFilemark(from)
        const want = from + count
        if (fm !== null && fm >= Math.max(want, 0)) {
          to = fm
          stoppedBy = 'filemark'
        } else if (want < 0) {
          to = 0
          stoppedBy = 'bot'
        } else to = want
      }
      this.rec.block = to
      this.rec.carry = 0
      await this.clock.spend(locateSeconds(this.model, from, to), 'space')
      await this.checkpoint()
      return { block: to, stoppedBy }
    })
  }

  read(maxRecords: number, opts: { data?: boolean; hostRate?: number } = {}): Promise<ReadResult> {
    return this.op(async () => {
      const cart = this.ready()
      if (!Number.isSafeInteger(maxRecords) || maxRecords < 0) throw new TapeError('ILLEGAL_REQUEST', `bad record count ${maxRecords}`)
      const r = cart.read(this.rec.block, maxRecords, opts.data ?? true)
      this.rec.block = r.next
      this.rec.carry = 0
      const cost = hostStreamCost(this.model, r.bytes, opts.hostRate ?? Infinity)
      this.rec.backhitches += cost.backhitches
      await this.clock.spend(cost.seconds, 'read')
      await this.checkpoint()
      return { records: r.records, count: r.count, bytes: r.bytes, filemark: r.filemark, eod: r.eod }
    })
  }

  /** Room left before the physical end; cuts the tape at the position when it is before EOD. */
  private prepareWrite(cart: CartridgeFile): number {
    if (this.rec.block < cart.eod()) cart.truncate(this.rec.block)
    return this.lib.capacityBlocks - this.rec.block
  }

  write(records: Buffer[] | FillRecords, opts: { hostRate?: number } = {}): Promise<WriteResult> {
    return this.op(async () => {
      const cart = this.ready()
      const fill = !Array.isArray(records)
      const n = fill ? records.fill : records.length
      const size = fill ? (records.bytes ?? this.model.recordBytes) : 0
      if (!Number.isSafeInteger(n) || n < 0) throw new TapeError('ILLEGAL_REQUEST', `bad record count ${n}`)
      if (fill && (!Number.isInteger(size) || size < 1 || size > this.model.recordBytes)) throw new TapeError('ILLEGAL_REQUEST', `record of ${size} bytes (1 to ${this.model.recordBytes})`)
      if (!fill) for (const r of records) if (r.length < 1 || r.length > this.model.recordBytes) throw new TapeError('ILLEGAL_REQUEST', `record of ${r.length} bytes (1 to ${this.model.recordBytes})`)
      if (opts.hostRate !== undefined && !(opts.hostRate > 0)) throw new TapeError('ILLEGAL_REQUEST', `bad host rate ${opts.hostRate}`)
      const room = this.prepareWrite(cart)
      const k = Math.max(0, Math.min(n, room))
      let bytes: number
      if (fill) {
        cart.appendFill(k, size)
        bytes = k * size
      } else {
        const part = k === n ? records : records.slice(0, k)
        cart.appendRecords(part)
        bytes = part.reduce((a, r) => a + r.length, 0)
      }
      this.rec.block += k
      const cost = hostStreamCost(this.model, bytes, opts.hostRate ?? Infinity, this.rec.carry)
      this.rec.carry = cost.carry
      this.rec.backhitches += cost.backhitches
      await this.clock.spend(cost.seconds, 'write')
      await this.checkpoint()
      if (k < n) throw new TapeError('VOLUME_OVERFLOW', `end of medium on ${this.rec.cartridge}: ${k} of ${n} records written`, k)
      return { count: k, bytes, earlyWarning: this.rec.block >= this.lib.capacityBlocks - this.lib.earlyWarningBlocks }
    })
  }

  writeFilemarks(count: number, opts: { immediate?: boolean } = {}): Promise<void> {
    return this.op(async () => {
      const cart = this.ready()
      if (!Number.isSafeInteger(count) || count < 0) throw new TapeError('ILLEGAL_REQUEST', `bad filemark count ${count}`)
      if (count > 0) {
        const room = this.prepareWrite(cart)
        if (room < count) {
          cart.appendFilemarks(Math.max(0, room))
          this.rec.block += Math.max(0, room)
          throw new TapeError('VOLUME_OVERFLOW', `end of medium on ${this.rec.cartridge}`, Math.max(0, room))
        }
        cart.appendFilemarks(count)
        this.rec.block += count
      }
      let s = 0
      if (!opts.immediate && cart.dirty) {
        // IMMED=0: the buffer goes to tape, the tape stops and backhitches
        cart.sync()
        s = syncSeconds(this.model)
        this.rec.carry = 0
      }
      await this.clock.spend(s, 'filemark')
      await this.checkpoint()
    })
  }

  flush(): Promise<void> {
    return this.writeFilemarks(0, { immediate: false })
  }

  release(): Promise<void> {
    return this.op(async () => {
      try {
        this.cart?.close()
        this.cart = null
        await this.checkpoint(true)
      } finally {
        // the drive is given up even if the state could not be saved (it falls back a second)
        this.released = true
        this.lock.release()
        this.lib.forget(this.index)
      }
    })
  }
}
