/**
 * Planning a recall before it starts (native-notes/tape.md §"Planning a restore"): the
 * order the scheduler will read a set of tape-resident units in, its estimated simulated
 * time, and — for a buffer cache smaller than the set — passes in that order, each of
 * which fits the cache, so that a restore pins a pass, reads it, unpins it, and no unit is
 * ever recalled twice. `bfs recall` prints the estimate; the restore (after issue 12's
 * switch-over) recalls pass by pass with `TieredStore.prefetch(keys, { pin })`.
 */
import { locateSeconds, modelByName, readThroughSeconds, type TapeModel } from '../tape/model.js'
import { assignCartridges, planBatch, type DriveView, type RecallRequest } from '../tape/schedule.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import type { ColdEntry } from '../store/tape.js'
import type { TapeRepo } from './tiers.js'
import { readTier, tapeToBfs } from './tiers.js'

export interface RecallOrder {
  /** Units in the order they are expected to arrive, each with its estimated arrival (simulated seconds from the start). */
  order: Array<{ entry: ColdEntry; at: number }>
  /** Estimated simulated seconds until the last one arrives. */
  seconds: number
}

/**
 * The order `entries` (on one library) will be read in, by the same decisions the engine
 * takes: cartridges spread over the drives (assignCartridges), each cartridge's requests by
 * planBatch from where its drive will be.
 */
export function recallOrder(m: TapeModel, drives: DriveView[], entries: ColdEntry[]): RecallOrder {
  const reqs: RecallRequest[] = entries.map((e, i) => ({ id: i, cartridge: e.loc.cartridge, block: e.loc.block, records: e.loc.records, arrival: 0 }))
  const byCart = new Map<string, RecallRequest[]>()
  for (const r of reqs) byCart.set(r.cartridge, [...(byCart.get(r.cartridge) ?? []), r])
  const order: RecallOrder['order'] = []
  let seconds = 0
  for (const a of assignCartridges(m, drives, reqs, 0)) {
    const d = drives.find((x) => x.index === a.drive)!
    let head = { ...d.head }
    for (const c of a.cartridges) {
      const startHead = head.cartridge === c.cartridge ? head : { cartridge: c.cartridge, block: 0 }
      const plan = planBatch(m, startHead, byCart.get(c.cartridge)!, 0)
      // the cartridge is ready when its change is done: replay the plan's moves and reads
      let t = c.end - plan.seconds
      let pos = startHead.block
      for (const s of plan.steps) {
        if (s.kind === 'locate') {
          t += locateSeconds(m, pos, s.block)
          pos = s.block
        } else if (s.kind === 'readThrough') {
          t += readThroughSeconds(m, s.blocks)
          pos += s.blocks
        } else if (s.kind === 'read') {
          t += readThroughSeconds(m, s.request.records)
          pos = s.request.block + s.request.records
          order.push({ entry: entries[s.request.id]!, at: t })
        }
      }
      seconds = Math.max(seconds, c.end)
      head = { cartridge: c.cartridge, block: pos }
    }
  }
  order.sort((a, b) => a.at - b.at)
  return { order, seconds }
}

/** Consecutive runs of `order` whose bytes fit `maxBytes` (a unit larger than it is a pass of its own). */
export function recallPasses(order: ColdEntry[], maxBytes: number): ColdEntry[][] {
  const out: ColdEntry[][] = []
  let cur: ColdEntry[] = []
  let bytes = 0
  for (const e of order) {
    if (cur.length && bytes + e.sizeBytes > maxBytes) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(e)
    bytes += e.sizeBytes
  }
  if (cur.length) out.push(cur)
  return out
}

export interface RecallPlan {
  /** In expected arrival order (tiers' orders merged by time). */
  order: ColdEntry[]
  /** Estimated simulated seconds (the slowest tier; tiers work at once). */
  seconds: number
  cartridges: string[]
  /** The libraries' clock scales (real seconds per simulated second), highest. */
  clockScale: number
}

/** Plans recalling `entries` with each tier's library as it is now (its drives' cartridges and positions). */
export function planRecall(repo: TapeRepo, entries: ColdEntry[]): RecallPlan {
  const byTier = new Map<string, ColdEntry[]>()
  for (const e of entries) byTier.set(e.loc.tier, [...(byTier.get(e.loc.tier) ?? []), e])
  const all: RecallOrder['order'] = []
  const plan: RecallPlan = { order: [], seconds: 0, cartridges: [], clockScale: 0 }
  const carts = new Set<string>()
  for (const [name, es] of byTier) {
    const tier = readTier(repo, name)
    let st
    try {
      st = VirtualTapeLibrary.readState(tier.dir)
    } catch (err) {
      throw tapeToBfs(err)
    }
    const m = modelByName(st.model)
    if (!m) throw tapeToBfs(new Error(`unknown tape model ${st.model}`))
    plan.clockScale = Math.max(plan.clockScale, st.clockScale)
    const drives: DriveView[] = st.drives.map((d, index) => ({ index, head: { cartridge: d.loaded ? d.cartridge : null, block: d.loaded ? d.block : 0 }, freeAt: 0 }))
    const o = recallOrder(m, drives, es)
    all.push(...o.order)
    plan.seconds = Math.max(plan.seconds, o.seconds)
    for (const e of es) carts.add(e.loc.cartridge)
  }
  all.sort((a, b) => a.at - b.at)
  plan.order = all.map((x) => x.entry)
  plan.cartridges = [...carts].sort()
  return plan
}
