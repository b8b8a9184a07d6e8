import { TAPE_OPS, type TapeOp } from './model.js'

/** Count and simulated seconds of one kind of operation. */
export interface OpTotal {
  count: number
  seconds: number
}
export type OpTotals = Record<TapeOp, OpTotal>

/**
 * Simulated time. The tape model computes what an operation costs; the clock accounts it.
 * `scale` F decides whether real time passes too: 0 = account only (tests, benches),
 * 1 = sleep the real time, 0.01 = sleep a hundredth of it. The clock never reads the
 * wall clock: `now()` is simulated seconds on this clock's own timeline.
 */
export interface Clock {
  readonly scale: number
  /** Simulated seconds. */
  now(): number
  /** Accounts `seconds` of operation `op` and, when scale > 0, sleeps seconds × scale real seconds. */
  spend(seconds: number, op: TapeOp): Promise<void>
  /** Idles until simulated time `t` (no-op when already past it): waiting for another timeline, e.g. the robot, whose real time has passed already (no sleep). */
  waitUntil(t: number): Promise<void>
  /** Totals per operation so far. */
  totals(): OpTotals
}

export function emptyTotals(): OpTotals {
  return Object.fromEntries(TAPE_OPS.map((op) => [op, { count: 0, seconds: 0 }])) as OpTotals
}

/** Adds `b` into a copy of `a`. */
export function addTotals(a: OpTotals, b: OpTotals): OpTotals {
  const out = emptyTotals()
  for (const op of TAPE_OPS) out[op] = { count: a[op].count + b[op].count, seconds: a[op].seconds + b[op].seconds }
  return out
}

const realSleep = async (ms: number): Promise<void> => {
  // setTimeout takes at most 2^31−1 ms
  while (ms > 0) {
    const step = Math.min(ms, 2 ** 31 - 1)
    await new Promise((r) => setTimeout(r, step))
    ms -= step
  }
}

/** A clock held in memory; the library persists its `now` and totals in its state file. */
export class SimClock implements Clock {
  private t: number
  private readonly sums: OpTotals

  constructor(
    readonly scale = 0,
    start = 0,
    totals?: OpTotals,
    private readonly sleep: (ms: number) => Promise<void> = realSleep,
  ) {
    if (!(scale >= 0) || !Number.isFinite(scale)) throw new RangeError(`clock scale must be a finite number ≥ 0, got ${scale}`)
    this.t = start
    this.sums = emptyTotals()
    if (totals) for (const op of TAPE_OPS) if (totals[op]) this.sums[op] = { ...totals[op] }
  }

  now(): number {
    return this.t
  }

  async spend(seconds: number, op: TapeOp): Promise<void> {
    this.account(seconds, op)
    if (this.scale > 0 && seconds > 0) await this.sleep(seconds * this.scale * 1000)
  }

  /** Accounts without sleeping (the real time passed elsewhere, e.g. in the robot's process). */
  account(seconds: number, op: TapeOp): void {
    if (!(seconds >= 0) || !Number.isFinite(seconds)) throw new RangeError(`cannot account ${seconds} s`)
    if (seconds === 0 && op === 'idle') return
    this.t += seconds
    const s = this.sums[op]
    s.count++
    s.seconds += seconds
  }

  /** Another timeline's real time has passed already, so this only accounts the idle time. */
  async waitUntil(t: number): Promise<void> {
    if (t > this.t) this.account(t - this.t, 'idle')
  }

  totals(): OpTotals {
    const out = emptyTotals()
    for (const op of TAPE_OPS) out[op] = { ...this.sums[op] }
    return out
  }
}
