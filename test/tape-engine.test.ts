/**
 * The recall engine (src/tape/engine.ts) — what the recall service runs — on a virtual tape
 * library with clock scale 0: requests submitted at once are one batch that mounts each
 * cartridge once however they interleave, and with the engine's own scheduling (aging, the
 * one-hour cap) a request is never starved by cheaper ones that keep arriving. The same
 * properties of schedule.ts alone are in tape-schedule.test.ts; these go through the
 * engine's queue, its collection window, its drive sessions and its decisions.
 */
import fs from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { dismount } from '../src/tape/execute.js'
import { capacityBlocks, LTO9 } from '../src/tape/model.js'
import { ENGINE_SCHEDULE, RecallEngine } from '../src/tape/engine.js'
import type { ScheduleOptions } from '../src/tape/schedule.js'
import { fillAll, scratchLibrary } from '../src/tape/sim.js'
import { tmpdir } from './helpers.js'

const m = LTO9
const base = tmpdir('bfs-tape-engine-')
afterAll(() => fs.rmSync(base, { recursive: true, force: true }))

describe('recall engine', () => {
  it('batches requests that arrive together: each cartridge mounted once, however they interleave', async () => {
    const { lib, drive, cleanup } = await scratchLibrary(base, 'batch', m, 3)
    let engine: RecallEngine | null = null
    try {
      const layouts = await fillAll(lib, drive, { maxFiles: 2 })
      await dismount(lib, drive)
      await drive.release()
      const labels = [...layouts.keys()]
      expect(labels).toHaveLength(3)
      const before = lib.status().totals
      engine = new RecallEngine(lib, { lingerMs: 50 })
      // 30 units, the cartridge changing at every request (what arrival order would mount 30 times)
      const got: string[] = []
      const done = Array.from({ length: 30 }, (_, i) => {
        const lay = layouts.get(labels[i % 3]!)!
        const block = lay.units[(i * 37) % lay.units.length]!
        return engine!.submit({ cartridge: lay.cartridge, block, records: lay.unitRecords, sink: (recs) => void got.push(`${lay.cartridge}:${block}:${recs.length}`) }).done
      })
      await Promise.all(done)
      expect(got).toHaveLength(30)
      expect(got.every((g) => g.endsWith(':20'))).toBe(true)
      // served cartridge by cartridge: the order changes cartridge exactly twice
      const carts = got.map((g) => g.split(':')[0])
      expect(carts.filter((c, i) => i > 0 && c !== carts[i - 1])).toHaveLength(2)
      expect(engine.counters.mounts).toBe(3)
      expect(engine.counters.served).toBe(30)
      const after = lib.status().totals
      expect(after.load.count - before.load.count).toBe(3)
      // one move in, then two exchanges of two moves each
      expect(after.robot.count - before.robot.count).toBe(5)
    } finally {
      await engine?.close()
      await cleanup()
    }
  })

  /**
   * The first request is far from the head; after it, requests keep arriving just ahead of
   * the head (each ~10 s of reading through a gap), always cheaper than going to the far
   * one. Returns when the far one was served (simulated seconds after it arrived) and how
   * many near ones were served before and after it.
   */
  async function farFirst(name: string, schedule: ScheduleOptions, nearCount: number, ahead: { promoteAfter?: number } | null = null): Promise<{ farDoneAt: number; nearBefore: number; nearAfter: number; nearSeconds: number; promotedAt: number }> {
    const { lib, drive, cleanup } = await scratchLibrary(base, name, m, 1)
    let engine: RecallEngine | null = null
    try {
      await lib.move({ slot: 0 }, { drive: 0 })
      await drive.load()
      const end = capacityBlocks(m) - m.earlyWarningBlocks
      await drive.write({ fill: end }) // one long tape file
      await drive.locate(0)
      await drive.release()
      engine = new RecallEngine(lib, { windowMs: 0, lingerMs: 1000, schedule })
      const eng = engine
      const cart = lib.state().drives[0]!.cartridge!
      // the library's clock is 12.5 simulated hours along (the tape was written): so is a fresh engine's
      const t0 = lib.state().drives[0]!.clock
      expect(t0).toBeGreaterThan(40_000)
      expect(eng.now()).toBe(t0)
      let farDoneAt = -1
      let nearBefore = 0
      let nearAfter = 0
      let promotedAt = -1
      const farJob = eng.submit({ cartridge: cart, block: end - 2000, records: 1, ahead: !!ahead, sink: () => undefined })
      const far = farJob.done.then(() => {
        farDoneAt = eng.now() - t0
      })
      const GAP = 4000 // blocks between near requests: ~10.5 s to read through
      let issued = 0
      let allNear!: () => void
      let failed!: (e: unknown) => void
      const nearAll = new Promise<void>((res, rej) => {
        allNear = res
        failed = rej
      })
      const submitNear = (): void => {
        if (issued >= nearCount) return
        const block = 1 + issued++ * (GAP + 1)
        eng.submit({ cartridge: cart, block, records: 1, sink: () => undefined }).done.then(() => {
          if (farDoneAt < 0) nearBefore++
          else nearAfter++
          if (ahead?.promoteAfter === nearBefore && promotedAt < 0) {
            promotedAt = eng.now() - t0
            expect(eng.promote(farJob.id)).toBe(true)
          }
          if (nearBefore + nearAfter === nearCount) allNear()
          submitNear() // the next one arrives as this one is served: always a cheaper request waiting
        }, failed)
      }
      submitNear()
      submitNear()
      await Promise.all([far, nearAll])
      return { farDoneAt, nearBefore, nearAfter, nearSeconds: eng.now() - t0, promotedAt }
    } finally {
      await engine?.close()
      await cleanup()
    }
  }

  it('never starves a request: with its aging and one-hour cap, a far request is served while cheaper ones keep coming', async () => {
    const nearCount = 420 // ~4,400 simulated s of near requests: longer than the cap
    const fair = await farFirst('starve-engine', {}, nearCount)
    expect(ENGINE_SCHEDULE.ageCapS).toBe(3600)
    // served within the cap, plus the read in progress then, a locate and its own read
    expect(fair.farDoneAt).toBeGreaterThan(0)
    expect(fair.farDoneAt).toBeLessThanOrEqual(3600 + 150)
    // aging is gradual: for a while the cheaper requests go first (a fresh engine on a library
    // whose clock is hours along once stamped its first requests 0: hours old at once)
    expect(fair.nearBefore).toBeGreaterThan(20)
    expect(fair.farDoneAt).toBeGreaterThan(200)
    // while near requests were still arriving (they did not have to run out first)
    expect(fair.nearAfter).toBeGreaterThan(0)
    expect(fair.nearBefore + fair.nearAfter).toBe(nearCount)
    // (control) the same engine with neither aging nor a cap: the far request waits until nothing nearer is left
    const unfair = await farFirst('starve-engine-control', { ageCapS: Infinity, agingPerS: 0 }, nearCount)
    expect(unfair.nearAfter).toBe(0)
    expect(unfair.farDoneAt).toBeGreaterThan(3600 + 150)
  }, 300_000)

  it('a request asked for ahead waits for everything cheaper; once a reader waits for it (promote), it ages and is served within the cap', async () => {
    const nearCount = 420
    // ahead, never promoted: no aging and no cap, so the cheaper requests all go first
    const ahead = await farFirst('ahead-engine', {}, nearCount, {})
    expect(ahead.nearAfter).toBe(0)
    expect(ahead.farDoneAt).toBeGreaterThan(3600 + 150)
    // promoted after 100 near ones: from then an ordinary request arriving then (aging, the cap)
    const promoted = await farFirst('ahead-promoted', {}, nearCount, { promoteAfter: 100 })
    expect(promoted.promotedAt).toBeGreaterThan(0)
    expect(promoted.nearBefore).toBeGreaterThan(100)
    expect(promoted.nearAfter).toBeGreaterThan(0)
    expect(promoted.farDoneAt - promoted.promotedAt).toBeLessThanOrEqual(3600 + 150)
  }, 300_000)
})
