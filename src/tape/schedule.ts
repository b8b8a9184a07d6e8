/**
 * Recall ordering (native-notes/tape.md §"Recall ordering"): which request a drive serves
 * next, and how it gets there. Pure functions of the tape model and the requests, plus a
 * small queue object that keeps what must survive between decisions (pending requests and
 * which of them later arrivals have overtaken).
 *
 * - Group by cartridge: a drive stays on its cartridge while it has requests there, so a
 *   batch mounts each cartridge once; then it moves on to the cartridge whose oldest
 *   request is oldest.
 * - On a cartridge, shortest locate time first (SLTF) from where the head is, by the
 *   model's locate cost (CTA's RAO does the same).
 * - Read through a gap instead of locating when reading it is cheaper than that locate.
 * - Never starve: a request that a later arrival has overtaken becomes urgent once it is
 *   `ageCapS` old (or when its deadline is near), and urgent requests go first, oldest
 *   first, even on another cartridge. Requests that arrive together (a restore's plan) do
 *   not overtake each other, so a batch is ordered purely by cost.
 * - New requests can be added at any time: they join the current plan.
 * - Requests asked for ahead of any reader (`ahead`) are ordered by cost alone: they never
 *   age or become urgent, so a waiting reader's request is never held behind them for
 *   longer than by any other cheaper request.
 */
import { exchangeSeconds, locateSeconds, mountSeconds, readThroughSeconds, type TapeModel } from './model.js'

export interface RecallRequest {
  /** The caller's id (unique among pending requests). */
  id: number
  cartridge: string
  /** First block of the data (logical block address). */
  block: number
  /** Records to read from there. */
  records: number
  /** When it arrived, simulated seconds. */
  arrival: number
  /** Serve it before this time if at all possible (simulated seconds). */
  deadline?: number
  /**
   * Asked for ahead of any reader (a mount's readahead over the tree, not a read waiting
   * for it): ordered by cost alone — no aging bonus, never urgent — so that it deepens the
   * queue the scheduler orders without taking a turn from a waiting reader. A reader that
   * comes to wait for it promotes it (the engine's `promote`): from then it is an ordinary
   * request that arrived at that moment.
   */
  ahead?: boolean
}

export interface ScheduleOptions {
  /** Read through gaps when that is cheaper than locating (default true). */
  readThrough?: boolean
  /** Seconds after which an overtaken request is served next (default 600). */
  ageCapS?: number
  /** A request with a deadline is urgent when serving it would end within this many seconds of it (default 60). */
  deadlineSlackS?: number
  /**
   * Aging: seconds of service cost forgiven per second a request has waited (default 0).
   * Requests that arrived together keep their order by cost; among requests that arrived
   * at different times (readers of a mount), an old one wins over a nearer new one once it
   * has waited cost difference / agingPerS seconds, so the age cap is rarely reached.
   */
  agingPerS?: number
}

export const DEFAULT_AGE_CAP_S = 600
const DEFAULT_DEADLINE_SLACK_S = 60

/** How the head gets from one block to another. */
export type Move = { how: 'none'; seconds: 0 } | { how: 'locate'; to: number; seconds: number } | { how: 'readThrough'; blocks: number; seconds: number }

/** The cheaper way from `from` to `to`: nothing, a locate, or (forward only) reading the gap. */
export function moveTo(m: TapeModel, from: number, to: number, readThrough = true): Move {
  if (from === to) return { how: 'none', seconds: 0 }
  const locate = locateSeconds(m, from, to)
  if (readThrough && to > from) {
    const read = readThroughSeconds(m, to - from)
    if (read <= locate) return { how: 'readThrough', blocks: to - from, seconds: read }
  }
  return { how: 'locate', to, seconds: locate }
}

/** Seconds to move to `r` and read it. */
export function serviceSeconds(m: TapeModel, from: number, r: RecallRequest, readThrough = true): number {
  return moveTo(m, from, r.block, readThrough).seconds + readThroughSeconds(m, r.records)
}

/** Where a drive is: the cartridge in it (null: empty) and the head's block. */
export interface HeadPosition {
  cartridge: string | null
  block: number
}

/** What a drive should do next. */
export type Decision =
  | { kind: 'serve'; request: RecallRequest; move: Move; urgent: boolean }
  /** Change cartridges (unload the current one, if any, and mount this one). */
  | { kind: 'switch'; cartridge: string; urgent: boolean }

/** When an urgent request's turn is due: its deadline, or when the age cap ran out. */
function dueTime(r: RecallRequest, ageCap: number): number {
  return Math.min(r.deadline ?? Infinity, r.arrival + ageCap)
}

/**
 * The next request to serve on the mounted cartridge, or the cartridge to switch to.
 * `overtaken(r)` says whether a request that arrived after `r` has been served before it.
 * Null when nothing is pending.
 */
export function decide(m: TapeModel, head: HeadPosition, pending: Iterable<RecallRequest>, now: number, overtaken: (r: RecallRequest) => boolean, opts: ScheduleOptions = {}): Decision | null {
  const readThrough = opts.readThrough ?? true
  const ageCap = opts.ageCapS ?? DEFAULT_AGE_CAP_S
  const slack = opts.deadlineSlackS ?? DEFAULT_DEADLINE_SLACK_S
  const aging = opts.agingPerS ?? 0
  let best: { r: RecallRequest; cost: number } | null = null
  let urgent: { r: RecallRequest; due: number; cost: number } | null = null
  let oldestElsewhere: RecallRequest | null = null
  // the oldest request a reader waits for on another cartridge, and whether one waits here
  let readerElsewhere: RecallRequest | null = null
  let readerHere = false
  // getting to another cartridge: an exchange, or a mount into an empty drive
  const change = head.cartridge === null ? mountSeconds(m) : exchangeSeconds(m, head.block)
  for (const r of pending) {
    const here = r.cartridge === head.cartridge
    const cost = here ? serviceSeconds(m, head.block, r, readThrough) : Infinity
    const overdue = !r.ahead && overtaken(r) && now - r.arrival >= ageCap
    const pressed = r.deadline !== undefined && now + (here ? cost : change + serviceSeconds(m, 0, r, false)) >= r.deadline - slack
    if (overdue || pressed) {
      const due = dueTime(r, ageCap)
      if (!urgent || due < urgent.due || (due === urgent.due && cost < urgent.cost)) urgent = { r, due, cost }
    }
    if (here) {
      const aged = r.ahead ? cost : cost - aging * Math.max(0, now - r.arrival)
      if (!best || aged < best.cost || (aged === best.cost && (r.arrival < best.r.arrival || (r.arrival === best.r.arrival && r.block < best.r.block)))) best = { r, cost: aged }
      if (!r.ahead) readerHere = true
    } else {
      if (!oldestElsewhere || r.arrival < oldestElsewhere.arrival) oldestElsewhere = r
      if (!r.ahead && (!readerElsewhere || r.arrival < readerElsewhere.arrival)) readerElsewhere = r
    }
  }
  if (urgent) {
    if (urgent.r.cartridge === head.cartridge) return { kind: 'serve', request: urgent.r, move: moveTo(m, head.block, urgent.r.block, readThrough), urgent: true }
    return { kind: 'switch', cartridge: urgent.r.cartridge, urgent: true }
  }
  // only requests asked ahead here, and a reader waits on another cartridge: the reader first
  if (best && !readerHere && readerElsewhere) return { kind: 'switch', cartridge: readerElsewhere.cartridge, urgent: false }
  if (best) return { kind: 'serve', request: best.r, move: moveTo(m, head.block, best.r.block, readThrough), urgent: false }
  const next = readerElsewhere ?? oldestElsewhere
  if (next) return { kind: 'switch', cartridge: next.cartridge, urgent: false }
  return null
}

/**
 * The pending requests of one drive (or one repository's recall service) and their
 * history. `add` new ones at any time; ask `next` what to do; report `served` requests.
 */
export class RecallQueue {
  private readonly pending = new Map<number, RecallRequest>()
  private readonly overtakenIds = new Set<number>()

  constructor(
    readonly model: TapeModel,
    readonly opts: ScheduleOptions = {},
  ) {}

  add(...rs: RecallRequest[]): void {
    for (const r of rs) {
      if (this.pending.has(r.id)) throw new Error(`request ${r.id} is already queued`)
      if (!Number.isSafeInteger(r.block) || r.block < 0 || !Number.isSafeInteger(r.records) || r.records < 1) throw new RangeError(`request ${r.id}: bad block range`)
      this.pending.set(r.id, r)
    }
  }

  get size(): number {
    return this.pending.size
  }

  requests(): RecallRequest[] {
    return [...this.pending.values()]
  }

  next(head: HeadPosition, now: number): Decision | null {
    return decide(this.model, head, this.pending.values(), now, (r) => this.overtakenIds.has(r.id), this.opts)
  }

  /** `r` was read: every pending request that arrived before it has now been overtaken. */
  served(r: RecallRequest): void {
    this.pending.delete(r.id)
    this.overtakenIds.delete(r.id)
    for (const p of this.pending.values()) if (p.arrival < r.arrival) this.overtakenIds.add(p.id)
  }
}

/** One step of a planned order, as a drive executes it (see execute.ts). */
export type Step =
  | { kind: 'switch'; cartridge: string }
  | { kind: 'locate'; block: number }
  | { kind: 'readThrough'; blocks: number }
  | { kind: 'read'; request: RecallRequest }

/** Steps that serve `r` from `from` by `move`. */
export function stepsFor(move: Move, r: RecallRequest): Step[] {
  const out: Step[] = []
  if (move.how === 'locate') out.push({ kind: 'locate', block: move.to })
  else if (move.how === 'readThrough') out.push({ kind: 'readThrough', blocks: move.blocks })
  out.push({ kind: 'read', request: r })
  return out
}

/** A whole plan for requests that are all known now (no arrivals meanwhile), with its estimated seconds. */
export interface Plan {
  steps: Step[]
  seconds: number
}

/**
 * Plans a batch with {@link decide}, estimating time with the model as it goes (a switch
 * costs an exchange, or a mount into an empty drive).
 */
export function planBatch(m: TapeModel, head: HeadPosition, requests: RecallRequest[], now: number, opts: ScheduleOptions = {}): Plan {
  const q = new RecallQueue(m, opts)
  q.add(...requests)
  const steps: Step[] = []
  let t = now
  let pos = { ...head }
  for (let d = q.next(pos, t); d; d = q.next(pos, t)) {
    if (d.kind === 'switch') {
      t += pos.cartridge ? exchangeSeconds(m, pos.block) : mountSeconds(m)
      pos = { cartridge: d.cartridge, block: 0 }
      steps.push({ kind: 'switch', cartridge: d.cartridge })
      continue
    }
    t += d.move.seconds + readThroughSeconds(m, d.request.records)
    steps.push(...stepsFor(d.move, d.request))
    pos = { cartridge: pos.cartridge, block: d.request.block + d.request.records }
    q.served(d.request)
  }
  return { steps, seconds: t - now }
}

/** The requests in the order given, each reached by a locate (no read-through): first come, first served. */
export function arrivalOrderSteps(head: HeadPosition, requests: RecallRequest[]): Step[] {
  const out: Step[] = []
  let cart = head.cartridge
  for (const r of requests) {
    if (r.cartridge !== cart) {
      out.push({ kind: 'switch', cartridge: r.cartridge })
      cart = r.cartridge
    }
    out.push({ kind: 'locate', block: r.block }, { kind: 'read', request: r })
  }
  return out
}

/** Per cartridge (in order of first appearance), the requests sorted by block, each reached by a locate. */
export function sortedByBlockSteps(head: HeadPosition, requests: RecallRequest[]): Step[] {
  const out: Step[] = []
  let cart = head.cartridge
  for (const [c, rs] of byCartridge(requests)) {
    if (c !== cart) out.push({ kind: 'switch', cartridge: c })
    cart = c
    for (const r of [...rs].sort((a, b) => a.block - b.block)) out.push({ kind: 'locate', block: r.block }, { kind: 'read', request: r })
  }
  return out
}

/**
 * What Proxmox Backup Server does (src/api2/tape/restore.rs): its catalog knows only which
 * tape file (chunk archive, ≤ 4 GiB) holds a chunk, so per cartridge it goes through the
 * files in order, locates each file's start and reads sequentially until it has every
 * wanted chunk of that file. `fileOf(r)` gives the first block of r's tape file.
 */
export function pbsLikeSteps(head: HeadPosition, requests: RecallRequest[], fileOf: (r: RecallRequest) => number): Step[] {
  const out: Step[] = []
  let cart = head.cartridge
  for (const [c, rs] of byCartridge(requests)) {
    if (c !== cart) out.push({ kind: 'switch', cartridge: c })
    cart = c
    const files = new Map<number, RecallRequest[]>()
    for (const r of rs) {
      const f = fileOf(r)
      const l = files.get(f)
      if (l) l.push(r)
      else files.set(f, [r])
    }
    for (const f of [...files.keys()].sort((a, b) => a - b)) {
      out.push({ kind: 'locate', block: f })
      let pos = f
      for (const r of files.get(f)!.sort((a, b) => a.block - b.block)) {
        if (r.block > pos) out.push({ kind: 'readThrough', blocks: r.block - pos })
        else if (r.block < pos) out.push({ kind: 'locate', block: r.block }) // overlapping requests
        out.push({ kind: 'read', request: r })
        pos = r.block + r.records
      }
    }
  }
  return out
}

function byCartridge(requests: RecallRequest[]): Map<string, RecallRequest[]> {
  const m = new Map<string, RecallRequest[]>()
  for (const r of requests) {
    const l = m.get(r.cartridge)
    if (l) l.push(r)
    else m.set(r.cartridge, [r])
  }
  return m
}

/**
 * A lower bound on the seconds to read `requests` of one cartridge from BOT: every
 * request is read at native rate, and each needs either a locate (≥ the model's minimum)
 * or a read through the gap behind it from the previous request in block order (no order
 * can reach a request more cheaply). Mounting is not included.
 */
export function lowerBoundSeconds(m: TapeModel, requests: RecallRequest[]): number {
  const rs = [...requests].sort((a, b) => a.block - b.block)
  let t = 0
  let end = 0
  for (const r of rs) {
    const gap = Math.max(0, r.block - end)
    t += Math.min(m.locate.min, readThroughSeconds(m, gap)) + readThroughSeconds(m, r.records)
    end = Math.max(end, r.block + r.records)
  }
  return t
}

/** A drive as the multi-drive planner sees it: what is in it, where its head is, when it is free. */
export interface DriveView {
  index: number
  head: HeadPosition
  freeAt: number
}

/** Which cartridges each drive takes, in order, with estimated start and end times. */
export interface Assignment {
  drive: number
  cartridges: Array<{ cartridge: string; start: number; end: number }>
}

/**
 * Spreads a batch's cartridges over several drives: a cartridge already in a drive stays
 * there (no exchange); the rest go, those with urgent (overtaken or old) requests first,
 * then the biggest jobs first (longest processing time first keeps the drives' finish
 * times close), each to the drive that will be free soonest. A cartridge's job is
 * estimated by {@link planBatch} from BOT plus mounting or exchanging.
 */
export function assignCartridges(m: TapeModel, drives: DriveView[], requests: RecallRequest[], now: number, opts: ScheduleOptions = {}): Assignment[] {
  const ageCap = opts.ageCapS ?? DEFAULT_AGE_CAP_S
  const groups = byCartridge(requests)
  const out = new Map<number, Assignment>(drives.map((d) => [d.index, { drive: d.index, cartridges: [] }]))
  const state = new Map(drives.map((d) => [d.index, { t: Math.max(now, d.freeAt), head: { ...d.head } }]))
  // cartridges already mounted: served first where they are
  for (const d of drives) {
    const c = d.head.cartridge
    if (c === null || !groups.has(c)) continue
    const st = state.get(d.index)!
    const plan = planBatch(m, st.head, groups.get(c)!, st.t, opts)
    out.get(d.index)!.cartridges.push({ cartridge: c, start: st.t, end: st.t + plan.seconds })
    st.t += plan.seconds
    st.head = { cartridge: c, block: lastBlock(plan, st.head.block) }
    groups.delete(c)
  }
  const jobs = [...groups].map(([c, rs]) => ({
    cartridge: c,
    rs,
    oldest: Math.min(...rs.map((r) => r.arrival)),
    work: planBatch(m, { cartridge: c, block: 0 }, rs, now, opts).seconds,
  }))
  const isUrgent = (j: (typeof jobs)[number]): boolean => now - j.oldest >= ageCap
  jobs.sort((a, b) => Number(isUrgent(b)) - Number(isUrgent(a)) || (isUrgent(a) ? a.oldest - b.oldest : b.work - a.work) || a.cartridge.localeCompare(b.cartridge))
  for (const j of jobs) {
    let pick = drives[0]!.index
    for (const d of drives) if (state.get(d.index)!.t < state.get(pick)!.t) pick = d.index
    const st = state.get(pick)!
    const change = st.head.cartridge ? exchangeSeconds(m, st.head.block) : mountSeconds(m)
    const plan = planBatch(m, { cartridge: j.cartridge, block: 0 }, j.rs, st.t + change, opts)
    out.get(pick)!.cartridges.push({ cartridge: j.cartridge, start: st.t, end: st.t + change + plan.seconds })
    st.t += change + plan.seconds
    st.head = { cartridge: j.cartridge, block: lastBlock(plan, 0) }
  }
  return [...out.values()]
}

function lastBlock(plan: Plan, fallback: number): number {
  for (let i = plan.steps.length - 1; i >= 0; i--) {
    const s = plan.steps[i]!
    if (s.kind === 'read') return s.request.block + s.request.records
  }
  return fallback
}
