/**
 * The tape scenarios of the targets table (issue 13), driven through the virtual tape
 * library with clock scale 0: every second reported is what the library's clock accounted
 * for the drive's commands. Used by bench/tape-sim.mjs (`make bench-tape`) and the tests.
 */
import fs from 'node:fs'
import path from 'node:path'
import { exchangeSeconds, mountSeconds, type TapeModel } from './model.js'
import { dismount, drainQueue, runSteps } from './execute.js'
import { arrivalOrderSteps, lowerBoundSeconds, pbsLikeSteps, RecallQueue, sortedByBlockSteps, type RecallRequest, type ScheduleOptions, type Step } from './schedule.js'
import { VirtualTapeLibrary, type VirtualTapeDrive } from './vtl.js'

export { rng } from './rng.js'

/** Where the units of a filled cartridge are. */
export interface TapeLayout {
  cartridge: string
  /** First block (the header record) of each tape file. */
  fileStarts: number[]
  /** First block of each unit, in tape order. */
  units: number[]
  /** Index into fileStarts of each unit's tape file. */
  unitFile: number[]
  unitRecords: number
}

export interface FillOptions {
  /** Records per unit (20 = a 20 MiB unit in 1 MiB records). */
  unitRecords?: number
  /** Units per tape file: a file is a header record plus this many units (204 × 20 MiB ≈ 4 GiB). */
  unitsPerFile?: number
  /** Stop after this many files (default: until the early-warning point). */
  maxFiles?: number
}

/**
 * Fills the loaded cartridge in `drive` as migration lays out a tape: tape files of a
 * header record (real bytes) and `unitsPerFile` units of fill records, each file ended by
 * an immediate filemark, until the next file would pass early warning.
 */
export async function fillTape(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, o: FillOptions = {}): Promise<TapeLayout> {
  const unitRecords = o.unitRecords ?? 20
  const perFile = o.unitsPerFile ?? 204
  const st = await drive.status()
  if (!st.loaded || !st.cartridge) throw new Error('fillTape: no cartridge loaded')
  await drive.locate(0)
  const layout: TapeLayout = { cartridge: st.cartridge, fileStarts: [], units: [], unitFile: [], unitRecords }
  const fileRecords = 1 + perFile * unitRecords + 1
  const stopAt = lib.capacityBlocks - lib.earlyWarningBlocks
  for (let f = 0, start = 0; (o.maxFiles === undefined || f < o.maxFiles) && start + fileRecords <= stopAt; f++, start += fileRecords) {
    layout.fileStarts.push(start)
    const header = Buffer.from(JSON.stringify({ magic: 'bfs-sim-tape-file', file: f, units: perFile, unitRecords }))
    await drive.write([header])
    await drive.write({ fill: perFile * unitRecords })
    for (let u = 0; u < perFile; u++) {
      layout.units.push(start + 1 + u * unitRecords)
      layout.unitFile.push(f)
    }
    await drive.writeFilemarks(1, { immediate: true })
  }
  await drive.flush()
  return layout
}

/** `n` distinct units of `layout` picked at random (seeded), as recall requests in random (arrival) order, all arriving at `arrival`. */
export function pickRequests(layout: TapeLayout, n: number, random: () => number, arrival = 0, firstId = 0): RecallRequest[] {
  if (n > layout.units.length) throw new RangeError(`${n} units wanted, the tape holds ${layout.units.length}`)
  const chosen = new Set<number>()
  const out: RecallRequest[] = []
  while (out.length < n) {
    const u = Math.floor(random() * layout.units.length)
    if (chosen.has(u)) continue
    chosen.add(u)
    out.push({ id: firstId + out.length, cartridge: layout.cartridge, block: layout.units[u]!, records: layout.unitRecords, arrival })
  }
  return out
}

/** The first block of the tape file holding a request (for the PBS-like order). */
export function fileOfRequest(layouts: Map<string, TapeLayout>): (r: RecallRequest) => number {
  return (r) => {
    const l = layouts.get(r.cartridge)!
    // units are in tape order: binary search the unit, then its file
    let lo = 0
    let hi = l.units.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (l.units[mid]! <= r.block) lo = mid
      else hi = mid - 1
    }
    return l.fileStarts[l.unitFile[lo]!]!
  }
}

export type Strategy = 'arrival' | 'pbs' | 'sorted' | 'bfs'
export const STRATEGIES: Strategy[] = ['arrival', 'pbs', 'sorted', 'bfs']

/**
 * Runs one strategy from "every cartridge in its slot, the drive empty" until the last
 * request is read, and returns the simulated seconds the drive's clock advanced. The
 * cartridge is put back afterwards (not timed).
 */
export async function runStrategy(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, strategy: Strategy, requests: RecallRequest[], layouts: Map<string, TapeLayout>, opts: ScheduleOptions = {}): Promise<{ seconds: number; decisions?: number }> {
  await dismount(lib, drive)
  const t0 = drive.clock.now()
  const head = { cartridge: null, block: 0 }
  let steps: Step[] | null = null
  if (strategy === 'arrival') steps = arrivalOrderSteps(head, requests)
  else if (strategy === 'sorted') steps = sortedByBlockSteps(head, requests)
  else if (strategy === 'pbs') steps = pbsLikeSteps(head, requests, fileOfRequest(layouts))
  let decisions: number | undefined
  if (steps) await runSteps(lib, drive, steps)
  else {
    const q = new RecallQueue(lib.model, opts)
    q.add(...requests.map((r) => ({ ...r, arrival: t0 + r.arrival })))
    decisions = (await drainQueue(lib, drive, q)).length
  }
  const seconds = drive.clock.now() - t0
  await dismount(lib, drive)
  return { seconds, decisions }
}

/** The lower bound for requests over several cartridges on one drive: one mount, then an exchange (less its rewind) per further cartridge, plus each cartridge's {@link lowerBoundSeconds}. */
export function lowerBound(m: TapeModel, requests: RecallRequest[]): number {
  const carts = new Map<string, RecallRequest[]>()
  for (const r of requests) carts.set(r.cartridge, [...(carts.get(r.cartridge) ?? []), r])
  let t = 0
  let first = true
  for (const rs of carts.values()) {
    t += first ? mountSeconds(m) : exchangeSeconds(m, 0)
    first = false
    t += lowerBoundSeconds(m, rs)
  }
  return t
}

/** A scratch library for a scenario, removed by `cleanup`. */
export async function scratchLibrary(base: string, name: string, model: TapeModel, cartridges: number): Promise<{ lib: VirtualTapeLibrary; drive: VirtualTapeDrive; dir: string; cleanup: () => Promise<void> }> {
  const dir = path.join(base, name)
  fs.rmSync(dir, { recursive: true, force: true })
  VirtualTapeLibrary.create(dir, { model, cartridges, drives: 1, clockScale: 0 })
  const lib = VirtualTapeLibrary.open(dir)
  const drive = await lib.drive(0)
  return {
    lib,
    drive,
    dir,
    cleanup: async () => {
      await lib.close()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Fills every cartridge of a library (one after another through its drive) and returns their layouts. */
export async function fillAll(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, o: FillOptions = {}): Promise<Map<string, TapeLayout>> {
  const layouts = new Map<string, TapeLayout>()
  for (const label of lib.state().cartridges) {
    await dismount(lib, drive)
    await lib.move({ slot: lib.slotOf(label) }, { drive: drive.index })
    await drive.load()
    layouts.set(label, await fillTape(lib, drive, o))
  }
  await dismount(lib, drive)
  return layouts
}

export interface WriteRow {
  label: string
  hostRate: number
  syncFilemarks: boolean
  bytes: number
  seconds: number
  /** Of native rate. */
  fraction: number
  backhitches: number
}

/**
 * Migration's write pattern: `gib` GiB in tape files of ~4 GiB (a header record, then the
 * data fed at `hostRate` bytes/s), each ended by a filemark (immediate, or synchronous
 * when `syncFilemarks`), then a flush. Timed from the first write to the flush.
 */
export async function migrationWrite(lib: VirtualTapeLibrary, drive: VirtualTapeDrive, gib: number, hostRate: number, syncFilemarks: boolean, label: string): Promise<WriteRow> {
  const st = await drive.status()
  if (!st.loaded) throw new Error('migrationWrite: no cartridge loaded')
  await drive.locate(0)
  const t0 = drive.clock.now()
  const hb = drive.record().backhitches
  const recordBytes = lib.model.recordBytes
  let left = Math.round((gib * 2 ** 30) / recordBytes)
  let bytes = 0
  for (let f = 0; left > 0; f++) {
    // the header comes down the same feed as the data
    await drive.write([Buffer.from(JSON.stringify({ magic: 'bfs-sim-tape-file', file: f }))], { hostRate })
    const n = Math.min(left, 4080)
    await drive.write({ fill: n }, { hostRate })
    bytes += n * recordBytes
    left -= n
    await drive.writeFilemarks(1, { immediate: !syncFilemarks })
  }
  await drive.flush()
  const seconds = drive.clock.now() - t0
  return { label, hostRate, syncFilemarks, bytes, seconds, fraction: bytes / seconds / lib.model.nativeRate, backhitches: drive.record().backhitches - hb }
}
