/**
 * Recall ordering (src/tape/schedule.ts), carried out on the virtual tape library with
 * clock scale 0: it must beat arrival order and PBS's per-archive reading on a seeded
 * scenario, read through short gaps, mount each cartridge once per batch, take new
 * requests into the plan, and never starve a request.
 */
import fs from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { drainQueue, runSteps } from '../src/tape/execute.js'
import { capacityBlocks, locateSeconds, LTO9, readThroughSeconds } from '../src/tape/model.js'
import { assignCartridges, decide, moveTo, planBatch, RecallQueue, serviceSeconds, type RecallRequest } from '../src/tape/schedule.js'
import { fillAll, lowerBound, pickRequests, rng, runStrategy, scratchLibrary } from '../src/tape/sim.js'
import { tmpdir } from './helpers.js'

const m = LTO9
const base = tmpdir('bfs-tape-sched-')
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))
const req = (id: number, block: number, o: Partial<RecallRequest> = {}): RecallRequest => ({ id, cartridge: 'A', block, records: 20, arrival: 0, ...o })

describe('recall ordering on a full tape', () => {
  it('beats arrival order and PBS-like by far on 300 units (seed 42), within reach of the lower bound', async () => {
    const { lib, drive, cleanup } = await scratchLibrary(base, 'full', m, 1)
    try {
      const layouts = await fillAll(lib, drive)
      const reqs = pickRequests([...layouts.values()][0]!, 300, rng(42))
      const t: Record<string, number> = {}
      for (const s of ['arrival', 'pbs', 'sorted', 'bfs'] as const) t[s] = (await runStrategy(lib, drive, s, reqs, layouts)).seconds
      const lb = lowerBound(m, reqs)
      expect(t.bfs!).toBeGreaterThanOrEqual(lb)
      expect(t.bfs!).toBeLessThan(t.arrival! / 3)
      expect(t.bfs!).toBeLessThan(t.pbs! / 1.8)
      expect(t.bfs!).toBeLessThan(t.sorted!)
      expect(t.pbs!).toBeLessThan(t.arrival!)
      // the plan's estimate is the drive's clock: both come from the same model
      // (the estimate counts filemarks and header records as full records: a hair more)
      const plan = planBatch(m, { cartridge: null, block: 0 }, reqs, 0)
      expect(plan.seconds).toBeGreaterThanOrEqual(t.bfs!)
      expect(plan.seconds / t.bfs!).toBeLessThan(1.001)
    } finally {
      await cleanup()
    }
  })
})

describe('recall ordering: moves', () => {
  it('reads through a gap when that is cheaper than the locate, and locates otherwise', () => {
    const from = 1000
    expect(moveTo(m, from, from)).toEqual({ how: 'none', seconds: 0 })
    const near = moveTo(m, from, from + 100)
    expect(near).toMatchObject({ how: 'readThrough', blocks: 100 })
    expect(near.seconds).toBeCloseTo(readThroughSeconds(m, 100), 9)
    // backwards never reads through
    expect(moveTo(m, from + 100, from)).toMatchObject({ how: 'locate', to: from })
    // the break-even on this stretch of the wrap: the largest gap still read through
    let g = 1
    while (readThroughSeconds(m, g + 1) <= locateSeconds(m, from, from + g + 1)) g++
    expect(moveTo(m, from, from + g).how).toBe('readThrough')
    expect(moveTo(m, from, from + g + 1).how).toBe('locate')
    // on the same wrap a locate costs base + perLpos × distance, a read recordBytes / rate per
    // block: they meet at base / (read per block − locate per block), ~4.9 GB, well above the
    // 1.72 GB that the minimum locate alone gives
    const lposPerBlock = (m.maxLpos - m.minLpos) / (capacityBlocks(m) / m.wraps)
    const meet = m.locate.base / (m.recordBytes / m.nativeRate - m.locate.perLpos * lposPerBlock)
    expect(Math.abs(g - meet)).toBeLessThan(2)
    expect(g * m.recordBytes).toBeGreaterThan(4.5e9)
    expect(g * m.recordBytes).toBeLessThan(5.3e9)
    expect(moveTo(m, from, from + 2000, false).how).toBe('locate')
  })
})

describe('recall ordering: batches and arrivals', () => {
  it('mounts each cartridge once per batch, however the requests interleave', async () => {
    const reqs: RecallRequest[] = []
    // units of the first tape file (a header record, then 20-record units)
    for (let i = 0; i < 30; i++) reqs.push(req(i, 1 + 20 * ((i * 37) % 200), { cartridge: ['BFS001L9', 'BFS002L9', 'BFS003L9'][i % 3]! }))
    const plan = planBatch(m, { cartridge: null, block: 0 }, reqs, 0)
    expect(plan.steps.filter((s) => s.kind === 'switch').map((s) => (s as { cartridge: string }).cartridge)).toEqual(['BFS001L9', 'BFS002L9', 'BFS003L9'])
    // and so does the drive: one mount, two exchanges (four robot moves), three loads
    const { lib, drive, cleanup } = await scratchLibrary(base, 'three', m, 3)
    try {
      await fillAll(lib, drive, { maxFiles: 2 })
      const before = lib.status().totals
      const q = new RecallQueue(m)
      q.add(...reqs)
      await drainQueue(lib, drive, q)
      const after = lib.status().totals
      expect(after.robot.count - before.robot.count).toBe(5)
      expect(after.load.count - before.load.count).toBe(3)
      expect(q.size).toBe(0)
    } finally {
      await cleanup()
    }
    // arrival order, for contrast, changes cartridges at every request
    const { lib: lib2, drive: d2, cleanup: c2 } = await scratchLibrary(base, 'three-fifo', m, 3)
    try {
      await fillAll(lib2, d2, { maxFiles: 2 })
      const before = lib2.status().totals.load.count
      await runSteps(lib2, d2, [{ kind: 'switch', cartridge: 'BFS001L9' }, ...reqs.flatMap((r) => [{ kind: 'switch' as const, cartridge: r.cartridge }, { kind: 'locate' as const, block: r.block }, { kind: 'read' as const, request: r }])])
      expect(lib2.status().totals.load.count - before).toBe(30)
    } finally {
      await c2()
    }
  })

  it('takes requests that arrive meanwhile into the plan, and serves an overtaken request once it is age-capped', () => {
    const q = new RecallQueue(m, { ageCapS: 600 })
    const far = req(1, 9_000_000)
    const mid = req(2, 100_000)
    q.add(far, mid)
    let d = q.next({ cartridge: 'A', block: 0 }, 10)
    expect(d).toMatchObject({ kind: 'serve', request: { id: 2 }, urgent: false })
    q.served(mid)
    // a new request right where the head is goes first
    const near = req(3, 100_020, { arrival: 20 })
    q.add(near)
    d = q.next({ cartridge: 'A', block: 100_020 }, 20)
    expect(d).toMatchObject({ kind: 'serve', request: { id: 3 }, move: { how: 'none' } })
    q.served(near) // far (arrived at 0) is now overtaken by near (arrived at 20)
    q.add(req(4, 100_040, { arrival: 30 }))
    expect(q.next({ cartridge: 'A', block: 100_040 }, 599)).toMatchObject({ request: { id: 4 }, urgent: false })
    // 600 s after it arrived, the overtaken request goes first
    expect(q.next({ cartridge: 'A', block: 100_040 }, 600)).toMatchObject({ request: { id: 1 }, urgent: true })
    // requests that arrive together never overtake each other: a batch is ordered by cost alone
    const batch = new RecallQueue(m, { ageCapS: 1 })
    batch.add(req(1, 9_000_000), req(2, 100_000), req(3, 200_000))
    batch.served(batch.requests()[1]!)
    expect(batch.next({ cartridge: 'A', block: 100_020 }, 10_000)).toMatchObject({ request: { id: 3 }, urgent: false })
  })

  it('aging: an old request wins over a nearer new one once it arrived (cost difference / agingPerS) before it; a batch keeps its order by cost', () => {
    const aging = { agingPerS: 0.01, ageCapS: 1e9 }
    const head = { cartridge: 'A', block: 100_000 }
    const none = () => false
    // an old request far away, new ones keep arriving right ahead of the head
    const far = req(3, 9_000_000, { arrival: 0 })
    const fresh = (t: number): RecallRequest => req(4, 100_020, { arrival: t })
    const gap = serviceSeconds(m, head.block, far) - serviceSeconds(m, head.block, fresh(0))
    expect(gap).toBeGreaterThan(50)
    const tipping = gap / 0.01
    expect(decide(m, head, [far, fresh(tipping - 100)], tipping - 100, none, aging)).toMatchObject({ request: { id: 4 }, urgent: false })
    expect(decide(m, head, [far, fresh(tipping + 100)], tipping + 100, none, aging)).toMatchObject({ request: { id: 3 }, urgent: false })
    // without aging the near one always wins (until the age cap)
    expect(decide(m, head, [far, fresh(tipping + 100)], tipping + 100, none, { ageCapS: 1e9 })).toMatchObject({ request: { id: 4 } })
    // requests that arrive together: aging changes nothing
    const batch = [req(5, 9_000_000), req(6, 100_000), req(7, 200_000)]
    expect(decide(m, head, batch, 50_000, none, aging)).toMatchObject({ request: { id: 6 } })
  })

  it('ahead: a request no reader waits for yet gets no aging and never turns urgent; a waiting reader\'s keeps both', () => {
    const aging = { agingPerS: 0.01, ageCapS: 600 }
    const head = { cartridge: 'A', block: 100_000 }
    const all = () => true // every one overtaken
    const far = (o: Partial<RecallRequest>): RecallRequest => req(1, 9_000_000, { arrival: 0, ...o })
    const near = req(2, 100_020, { arrival: 5_000 })
    // 5,000 s old and overtaken: a reader's far request is urgent (age cap); one asked for ahead is not, the near one goes first
    expect(decide(m, head, [far({}), near], 5_000, all, aging)).toMatchObject({ request: { id: 1 }, urgent: true })
    expect(decide(m, head, [far({ ahead: true }), near], 5_000, all, aging)).toMatchObject({ request: { id: 2 }, urgent: false })
    // below the cap, aging alone: the gap is forgiven after gap / 0.01 s for a reader's request, never for one ahead
    const gap = serviceSeconds(m, head.block, far({})) - serviceSeconds(m, head.block, near)
    const t = gap / 0.01 + 100
    const noCap = { agingPerS: 0.01, ageCapS: 1e9 }
    expect(decide(m, head, [far({}), req(2, 100_020, { arrival: t })], t, all, noCap)).toMatchObject({ request: { id: 1 } })
    expect(decide(m, head, [far({ ahead: true }), req(2, 100_020, { arrival: t })], t, all, noCap)).toMatchObject({ request: { id: 2 } })
    // among requests ahead, cost alone
    expect(decide(m, head, [far({ ahead: true }), req(2, 100_020, { ahead: true })], t, all, aging)).toMatchObject({ request: { id: 2 }, urgent: false })
    // only requests ahead on the mounted cartridge, a reader waits on another: that cartridge first
    const none = () => false
    expect(decide(m, head, [req(2, 100_020, { ahead: true }), req(3, 5_000, { cartridge: 'B', arrival: 10 })], 20, none, aging)).toMatchObject({ kind: 'switch', cartridge: 'B' })
    // a reader here too: the mounted cartridge is served (the others' turn comes by aging and the cap)
    expect(decide(m, head, [req(2, 100_020, { ahead: true }), req(4, 200_000), req(3, 5_000, { cartridge: 'B', arrival: 10 })], 20, none, aging)).toMatchObject({ kind: 'serve' })
    // nothing here: to a reader's cartridge before one with only requests ahead, though those are older
    expect(decide(m, { cartridge: 'A', block: 0 }, [req(5, 5_000, { cartridge: 'C', ahead: true, arrival: 0 }), req(3, 5_000, { cartridge: 'B', arrival: 10 })], 20, none, aging)).toMatchObject({ kind: 'switch', cartridge: 'B' })
  })

  it('serves a request whose deadline is near first, even on another cartridge', () => {
    const pending = [req(1, 5000), req(2, 5020), req(3, 9_000_000, { cartridge: 'B', deadline: 400 })]
    const none = () => false
    expect(decide(m, { cartridge: 'A', block: 5000 }, pending, 0, none)).toMatchObject({ kind: 'serve', request: { id: 1 } })
    // an exchange, the locate from BOT and the read take ~180 s: at 200 s the deadline (400 s, 60 s slack) is close
    expect(decide(m, { cartridge: 'A', block: 5000 }, pending, 200, none)).toMatchObject({ kind: 'switch', cartridge: 'B', urgent: true })
  })

  it('spreads cartridges over drives: a mounted one stays, the biggest jobs go first to the drive free soonest', () => {
    const reqs: RecallRequest[] = []
    let id = 0
    for (let i = 0; i < 5; i++) reqs.push(req(id++, 1_000_000 * i + 10, { cartridge: 'X' }))
    for (let i = 0; i < 40; i++) reqs.push(req(id++, 400_000 * i + 10, { cartridge: 'Y' }))
    for (let i = 0; i < 10; i++) reqs.push(req(id++, 1_500_000 * i + 10, { cartridge: 'Z' }))
    const a = assignCartridges(m, [{ index: 0, head: { cartridge: 'X', block: 0 }, freeAt: 0 }, { index: 1, head: { cartridge: null, block: 0 }, freeAt: 0 }], reqs, 0)
    const d0 = a.find((x) => x.drive === 0)!.cartridges.map((c) => c.cartridge)
    const d1 = a.find((x) => x.drive === 1)!.cartridges.map((c) => c.cartridge)
    expect(d0[0]).toBe('X')
    expect(d1[0]).toBe('Y') // the biggest job, on the free drive
    expect([...d0, ...d1].sort()).toEqual(['X', 'Y', 'Z'])
    const ends = a.map((x) => x.cartridges.at(-1)!.end)
    const one = planBatch(m, { cartridge: 'X', block: 0 }, reqs, 0).seconds
    expect(Math.max(...ends)).toBeLessThan(one) // two drives finish sooner than one
  })
})

describe('recall ordering never starves', () => {
  /**
   * The first request is at the far end of the tape; after it, requests keep arriving just
   * ahead of the head, each cheaper to serve than going to the far end. Shortest-locate-
   * first alone would never go there.
   */
  async function farFirst(ageCapS: number, nearCount: number): Promise<{ farDoneAt: number | null; served: number; nearArrivals: number }> {
    const { lib, drive, cleanup } = await scratchLibrary(base, `starve-${ageCapS}`, m, 1)
    try {
      await lib.move({ slot: 0 }, { drive: 0 })
      await drive.load()
      const end = capacityBlocks(m) - m.earlyWarningBlocks
      await drive.write({ fill: end }) // one long tape file
      await drive.locate(0)
      const t0 = drive.clock.now()
      const q = new RecallQueue(m, { ageCapS })
      q.add({ id: 0, cartridge: 'BFS001L9', block: end - 2000, records: 20, arrival: t0 })
      let next = 0 // where the next near request is: right behind the last one
      let issued = 0
      let farDoneAt: number | null = null
      let served = 0
      await drainQueue(lib, drive, q, {
        // a 1 GiB request (2.7 s) right at the head, whenever none is pending
        arrivals: (now) => {
          if (issued < nearCount && q.size < 2) {
            q.add({ id: ++issued, cartridge: 'BFS001L9', block: next, records: 1024, arrival: now })
            next += 1024
          }
        },
        onRead: (r) => {
          served++
          if (r.id === 0) farDoneAt = drive.clock.now() - t0
        },
      })
      return { farDoneAt, served, nearArrivals: issued }
    } finally {
      await cleanup()
    }
  }

  it('serves a first request at the far end within the age cap while nearer ones keep coming', async () => {
    const capped = await farFirst(600, 400)
    expect(capped.nearArrivals).toBe(400) // they kept coming for ~1,000 s
    expect(capped.farDoneAt).not.toBeNull()
    // the cap, plus the request being read then, plus the locate to the far end and its read
    expect(capped.farDoneAt!).toBeLessThanOrEqual(600 + 3 + 130)
    expect(capped.farDoneAt!).toBeGreaterThanOrEqual(600)
  })

  it('(control) without the age cap, the far request waits until nothing nearer is left', async () => {
    const uncapped = await farFirst(Infinity, 400)
    expect(uncapped.farDoneAt!).toBeGreaterThan(400 * 2.6)
    expect(uncapped.served).toBe(401)
  })
})
