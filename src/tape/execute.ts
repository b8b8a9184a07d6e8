/**
 * Carrying out recall steps on a real (virtual) drive: the timing of every step comes from
 * the drive's own commands, so a plan's measured time is what the library's clock says.
 */
import { TapeError, type ReadResult, type TapeDrive } from './device.js'
import type { Decision, RecallQueue, RecallRequest, Step } from './schedule.js'
import type { VirtualTapeDrive, VirtualTapeLibrary } from './vtl.js'

export interface ExecOptions {
  /** Return the records' bytes (false: read them for the timing only). */
  data?: boolean
  /** Called with each request's records as they are read. */
  onRead?: (r: RecallRequest, res: ReadResult) => void
}

/** Reads `blocks` blocks forward without keeping them (filemarks included), as a drive reads through a gap. */
export async function readThrough(drive: TapeDrive, blocks: number): Promise<void> {
  let left = blocks
  while (left > 0) {
    const r = await drive.read(left, { data: false })
    left -= r.count + (r.filemark ? 1 : 0)
    if (r.eod) throw new TapeError('EOD', `end of data while reading through a gap (${left} blocks short)`)
  }
}

/** Reads request `r` at the drive's position (the caller positioned it). */
export async function readRequest(drive: TapeDrive, r: RecallRequest, o: ExecOptions = {}): Promise<ReadResult> {
  const res = await drive.read(r.records, { data: o.data ?? false })
  if (res.count !== r.records) throw new TapeError('MEDIUM_ERROR', `request ${r.id}: read ${res.count} of ${r.records} records at block ${r.block}${res.filemark ? ' (a filemark inside)' : res.eod ? ' (end of data)' : ''}`)
  o.onRead?.(r, res)
  return res
}

/**
 * Puts cartridge `label` into `drive` and loads it: unloads and returns the cartridge in
 * it (to its home slot, the slot it started in, else the first empty one), then the robot
 * brings `label` from its slot.
 */
export async function mountCartridge(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, label: string): Promise<void> {
  const st = await drive.status()
  if (st.cartridge === label) {
    if (!st.loaded) await drive.load()
    return
  }
  const slot = lib.slotOf(label)
  if (slot < 0) throw new TapeError('ILLEGAL_REQUEST', `cartridge ${label} is not in a slot`)
  const to = { drive: drive.index }
  if (st.cartridge) {
    if (st.loaded) await drive.unload()
    // one robot trip: the cartridge back to its slot, the next one into the drive
    await lib.moves([[to, { slot: homeSlot(lib, st.cartridge) }], [{ slot }, to]])
  } else await lib.move({ slot }, to)
  await drive.load()
}

/** The slot a cartridge goes back to: the one it started in if empty, else the first empty one. */
function homeSlot(lib: VirtualTapeLibrary, label: string): number {
  const s = lib.state()
  const empty = (i: number): boolean => s.slots[i] === null
  const home = s.cartridges.indexOf(label)
  if (home >= 0 && home < s.slots.length && empty(home)) return home
  for (let i = 0; i < s.slots.length; i++) if (empty(i)) return i
  throw new TapeError('ILLEGAL_REQUEST', 'no empty slot for the cartridge')
}

/** Unloads the drive's cartridge and puts it back in a slot. */
export async function dismount(lib: VirtualTapeLibrary, drive: VirtualTapeDrive): Promise<void> {
  const st = await drive.status()
  if (!st.cartridge) return
  if (st.loaded) await drive.unload()
  await lib.move({ drive: drive.index }, { slot: homeSlot(lib, st.cartridge) })
}

/** Executes one step. */
export async function runStep(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, step: Step, o: ExecOptions = {}): Promise<void> {
  switch (step.kind) {
    case 'switch':
      return mountCartridge(lib, drive, step.cartridge)
    case 'locate':
      return drive.locate(step.block)
    case 'readThrough':
      return readThrough(drive, step.blocks)
    case 'read':
      await readRequest(drive, step.request, o)
  }
}

export async function runSteps(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, steps: Step[], o: ExecOptions = {}): Promise<void> {
  for (const s of steps) await runStep(lib, drive, s, o)
}

/**
 * Serves a queue on one drive until it is empty: asks the queue, carries out the decision,
 * reports the request served. `arrivals(now)` may add requests as simulated time passes
 * (it is called before every decision). Returns the decisions taken, in order.
 */
export async function drainQueue(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, q: RecallQueue, o: ExecOptions & { arrivals?: (now: number) => void } = {}): Promise<Decision[]> {
  const log: Decision[] = []
  for (;;) {
    o.arrivals?.(drive.clock.now())
    const st = await drive.status()
    const head = { cartridge: st.loaded ? st.cartridge : null, block: st.position?.block ?? 0 }
    const d = q.next(head, drive.clock.now())
    if (!d) return log
    log.push(d)
    if (d.kind === 'switch') {
      await mountCartridge(lib, drive, d.cartridge)
      continue
    }
    if (d.move.how === 'locate') await drive.locate(d.move.to)
    else if (d.move.how === 'readThrough') await readThrough(drive, d.move.blocks)
    await readRequest(drive, d.request, o)
    q.served(d.request)
  }
}
