/**
 * The timing model of a tape drive and its library (native-notes/tape.md §"Timing model").
 *
 * Pure functions of a {@link TapeModel}: where a block lies on the serpentine tape, what a
 * locate, rewind, read or write costs in seconds. Nothing here reads a clock; the simulated
 * time is kept by a {@link Clock} that the virtual tape library (vtl.ts) passes the costs to.
 *
 * Geometry and locate cost follow the CERN Tape Archive's RAO code (cern-cta/CTA,
 * tapeserver/castor/tape/tapeserver/RAO: InterpolationFilePositionEstimator and
 * CTACostHeuristic): a block's wrap and longitudinal position (LPOS) are interpolated from
 * its block number, and a locate costs a linear function of wrap/band/zone/direction changes
 * and the LPOS distance, fitted by CERN on LTO-7M media. On 280 wraps it gives an average
 * locate from the load point of 65 s (IBM's LTO-9 figure) with no refitting.
 */

/** Every operation the clock accounts, each with its own total. */
export const TAPE_OPS = ['load', 'unload', 'locate', 'space', 'read', 'write', 'filemark', 'rewind', 'robot', 'idle'] as const
export type TapeOp = (typeof TAPE_OPS)[number]

export interface TapeModel {
  /** Name as `bfs tier add --model` spells it. */
  readonly name: string
  readonly description: string
  /** Native (uncompressed) streaming rate, bytes/s. */
  readonly nativeRate: number
  /** Slowest speed-matched streaming rate, bytes/s; fed slower, the drive stops and repositions (shoe-shines). */
  readonly minStreamRate: number
  /** Native capacity, bytes. */
  readonly capacityBytes: number
  /** Largest record (tape block) the drive writes, bytes; the library's record size. */
  readonly recordBytes: number
  /** Blocks between the early-warning point and the physical end of the medium. */
  readonly earlyWarningBlocks: number
  readonly wraps: number
  /** Bands across the tape (LTO: 4 data bands); a band holds wraps/bands wraps. */
  readonly bands: number
  /** LPOS (longitudinal position) of the first and the last data position of a wrap. */
  readonly minLpos: number
  readonly maxLpos: number
  /** Seconds from insertion to ready at the beginning of tape. */
  readonly loadS: number
  /** Seconds from the beginning of tape to the cartridge ejected (a rewind first is extra). */
  readonly unloadS: number
  /** Seconds the robot takes to move one cartridge between a slot and a drive. */
  readonly robotMoveS: number
  /** Drive data buffer, bytes (it bridges a host that feeds slower than the tape streams). */
  readonly bufferBytes: number
  /** Seconds one backhitch takes: stop, rewind past the last written point, accelerate again. */
  readonly backhitchS: number
  /** The locate cost function's coefficients (seconds; perLpos per LPOS unit). */
  readonly locate: {
    readonly base: number
    readonly wrapChange: number
    readonly bandChange: number
    readonly zoneChange: number
    readonly directionChange: number
    readonly stepBack: number
    readonly perLpos: number
    /** No locate costs less than this (the CTA fit alone can go below zero across the middle of a wrap). */
    readonly min: number
  }
  /** Rewind = base + perLpos × (LPOS − minLpos): the tape runs back to the physical start whatever the wrap. */
  readonly rewind: { readonly base: number; readonly perLpos: number }
}

const MiB = 1 << 20

/**
 * LTO-9 full height. Sources (../shared/research/tape-tier/README.md §2): 400 MB/s native
 * (IBM), 18 TB, 280 wraps (8960 tracks / 32), load 16 s, unload 56 s, average locate from
 * load point 65 s and average rewind 62 s (IBM TS2290 manual), minimum streaming speed
 * 177 MB/s (IBM TS4300 speed matching), robot ~10 s per move (IBM TS4500). CTA's LTO-7M
 * LPOS range and locate coefficients. Assumed (no source): the LPOS range equals LTO-7M's,
 * a 1 GiB data buffer, a 3 s backhitch, 16 GiB between early warning and the end of medium.
 */
export const LTO9: TapeModel = {
  name: 'lto9',
  description: 'LTO-9 full height: 400 MB/s, 18 TB, 280 wraps',
  nativeRate: 400e6,
  minStreamRate: 177e6,
  capacityBytes: 18e12,
  recordBytes: MiB,
  earlyWarningBlocks: 16384,
  wraps: 280,
  bands: 4,
  minLpos: 2696,
  maxLpos: 171097,
  loadS: 16,
  unloadS: 56,
  robotMoveS: 10,
  bufferBytes: 1024 * MiB,
  backhitchS: 3,
  locate: { base: 4.29, wrapChange: 6.69, bandChange: 3.2, zoneChange: -6.04, directionChange: 5.22, stepBack: 11.32, perLpos: 0.0006192, min: 4.29 },
  // base: calibrated so that the average rewind from a uniformly random position is 62 s
  // (the LPOS part averages (maxLpos − minLpos) / 2 × perLpos = 52.14 s).
  rewind: { base: 9.86, perLpos: 0.0006192 },
}

export const MODELS: Readonly<Record<string, TapeModel>> = { lto9: LTO9 }

export function modelByName(name: string): TapeModel | undefined {
  return Object.hasOwn(MODELS, name) ? MODELS[name] : undefined
}

/** Blocks (records) the medium holds. */
export function capacityBlocks(m: TapeModel): number {
  return Math.floor(m.capacityBytes / m.recordBytes)
}

/** A block's place on the tape: wrap, LPOS, band and landing zone (half of the tape's length). */
export interface PhysicalPosition {
  wrap: number
  lpos: number
  band: number
  zone: number
}

/**
 * Where block `block` lies. Blocks fill wrap 0 from the beginning of tape (minLpos) to its
 * end (maxLpos), wrap 1 back again, and so on (serpentine). Every block counts as a full
 * record of tape, filemarks too, as CTA's estimator interpolates block ids.
 */
export function physical(m: TapeModel, block: number): PhysicalPosition {
  const perWrap = capacityBlocks(m) / m.wraps
  const wrap = Math.min(m.wraps - 1, Math.max(0, Math.floor(block / perWrap)))
  const frac = Math.min(1, Math.max(0, (block - wrap * perWrap) / perWrap))
  const range = m.maxLpos - m.minLpos
  const lpos = wrap % 2 === 0 ? m.minLpos + frac * range : m.maxLpos - frac * range
  return { wrap, lpos, band: Math.floor(wrap / (m.wraps / m.bands)), zone: lpos < (m.minLpos + m.maxLpos) / 2 ? 0 : 1 }
}

/**
 * Seconds to locate from `from` (the block the head is at: the next one it would read) to
 * `to`. 0 when they are equal; otherwise CTA's cost function, never below `locate.min`.
 */
export function locateSeconds(m: TapeModel, from: number, to: number): number {
  if (from === to) return 0
  const a = physical(m, from)
  const b = physical(m, to)
  const c = m.locate
  const wrapChange = a.wrap !== b.wrap ? 1 : 0
  const directionChange = a.wrap % 2 !== b.wrap % 2 ? 1 : 0
  // the target lies behind the head on the same wrap: the drive must stop and reverse
  // (blocks grow along the wrap's direction, so on any wrap that is a smaller block number)
  const stepBack = a.wrap === b.wrap && to < from ? 1 : 0
  const cost =
    c.base +
    c.wrapChange * wrapChange +
    c.bandChange * (a.band !== b.band ? 1 : 0) +
    c.zoneChange * (a.zone !== b.zone ? 1 : 0) +
    c.directionChange * directionChange +
    c.stepBack * stepBack +
    c.perLpos * Math.abs(a.lpos - b.lpos)
  return Math.max(c.min, cost)
}

/** Seconds to rewind from `from` to the beginning of tape (0 when already there). */
export function rewindSeconds(m: TapeModel, from: number): number {
  if (from === 0) return 0
  return m.rewind.base + m.rewind.perLpos * (physical(m, from).lpos - m.minLpos)
}

/** Seconds to stream `bytes` past the head at native rate (reading, or writing from memory). */
export function streamSeconds(m: TapeModel, bytes: number): number {
  return bytes / m.nativeRate
}

/** Seconds to read `blocks` whole records (a gap read through instead of located over). */
export function readThroughSeconds(m: TapeModel, blocks: number): number {
  return (blocks * m.recordBytes) / m.nativeRate
}

/**
 * The largest gap that is always cheaper to read through than to locate over: the minimum
 * locate at native rate (LTO-9: 4.29 s × 400 MB/s = 1.72 GB). A particular gap is read
 * through when {@link readThroughSeconds} is below its own {@link locateSeconds}, which
 * can be much more than the minimum (a wrap or direction change).
 */
export function readThroughBreakEvenBytes(m: TapeModel): number {
  return m.locate.min * m.nativeRate
}

/** The cost of streaming data between the host and the tape at a given host rate. */
export interface StreamCost {
  seconds: number
  /** Buffer underruns (writing) or overruns (reading), each a backhitch: tape wear, and time when the buffer cannot hide it. */
  backhitches: number
}

/**
 * Seconds to stream `bytes` when the host feeds (writes) or drains (reads) at `hostRate`
 * bytes/s, and how many backhitches that causes. `carry` is the bytes already streamed
 * since the last backhitch (the drive keeps it between commands); the new value is returned.
 *
 * - hostRate ≥ native: the tape is the limit, bytes / native.
 * - minStream ≤ hostRate < native: speed matching, the drive slows down, bytes / hostRate.
 * - hostRate < minStream (shoe-shining): the drive streams at minStream from a full buffer
 *   B until it runs dry (B / (minStream − hostRate) s, B·minStream/(minStream − hostRate)
 *   bytes), backhitches, and restarts once the host has refilled the buffer. The host is
 *   the limit (bytes / hostRate) and only waits when a backhitch outlasts the refill:
 *   max(0, backhitchS − B / hostRate) per backhitch. With LTO-9's 1 GiB buffer the refill
 *   takes ≥ 6 s at any rate below 177 MB/s, longer than the 3 s backhitch, so the wait is
 *   0: the harm of a slow feed is its own rate (below 44 % of native) and a backhitch
 *   (wear) every few GiB, which is what the bench shows.
 */
export function hostStreamCost(m: TapeModel, bytes: number, hostRate: number, carry = 0): StreamCost & { carry: number } {
  if (bytes <= 0) return { seconds: 0, backhitches: 0, carry }
  if (!(hostRate > 0)) throw new RangeError(`host rate must be positive, got ${hostRate}`)
  if (hostRate >= m.nativeRate) return { seconds: bytes / m.nativeRate, backhitches: 0, carry: 0 }
  if (hostRate >= m.minStreamRate) return { seconds: bytes / hostRate, backhitches: 0, carry: 0 }
  const s = m.minStreamRate
  const cycleBytes = (m.bufferBytes * s) / (s - hostRate)
  const total = carry + bytes
  const backhitches = Math.floor(total / cycleBytes)
  const wait = Math.max(0, m.backhitchS - m.bufferBytes / hostRate)
  return { seconds: bytes / hostRate + backhitches * wait, backhitches, carry: total - backhitches * cycleBytes }
}

/** Seconds a synchronous filemark (or flush) costs after streaming: the buffer is written out, the tape stops and backhitches to be ready for the next write. */
export function syncSeconds(m: TapeModel): number {
  return m.backhitchS
}

/**
 * Seconds to exchange cartridges in a drive whose head is at `from`: rewind, unload, the
 * robot takes it back and brings the next, load. Used by planners as an estimate.
 */
export function exchangeSeconds(m: TapeModel, from: number): number {
  return rewindSeconds(m, from) + m.unloadS + 2 * m.robotMoveS + m.loadS
}

/** Seconds to mount a cartridge from a slot into an empty drive: robot move and load. */
export function mountSeconds(m: TapeModel): number {
  return m.robotMoveS + m.loadS
}

/** Averages of the model over random positions (the calibration checks of native-notes/tape.md). */
export interface Calibration {
  samples: number
  avgLocateFromBot: number
  avgLocateRandom: number
  minLocate: number
  maxLocate: number
  avgRewind: number
  fullLengthS: number
  breakEvenBytes: number
  fullTapeReadS: number
}

/** Samples `samples` uniformly random blocks with `rng` (values in [0, 1)). */
export function calibrate(m: TapeModel, samples: number, rng: () => number): Calibration {
  const cap = capacityBlocks(m)
  const xs = Array.from({ length: samples }, () => Math.floor(rng() * cap))
  let bot = 0
  let rnd = 0
  let rew = 0
  let min = Infinity
  let max = 0
  for (let i = 0; i < xs.length; i++) {
    bot += locateSeconds(m, 0, xs[i]!)
    rew += rewindSeconds(m, xs[i]!)
    if (i > 0) {
      const c = locateSeconds(m, xs[i - 1]!, xs[i]!)
      rnd += c
      min = Math.min(min, c)
      max = Math.max(max, c)
    }
  }
  return {
    samples,
    avgLocateFromBot: bot / samples,
    avgLocateRandom: rnd / (samples - 1),
    minLocate: min,
    maxLocate: max,
    avgRewind: rew / samples,
    fullLengthS: (m.maxLpos - m.minLpos) * m.locate.perLpos,
    breakEvenBytes: readThroughBreakEvenBytes(m),
    fullTapeReadS: (cap * m.recordBytes) / m.nativeRate,
  }
}
