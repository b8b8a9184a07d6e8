/**
 * The tape timing model (src/tape/model.ts) and the simulated clock (src/tape/clock.ts):
 * calibration against the LTO-9 figures the issue quotes, the geometry, and the cost of
 * streaming at host rates around the minimum streaming speed.
 */
import { describe, expect, it } from 'vitest'
import { SimClock } from '../src/tape/clock.js'
import { calibrate, capacityBlocks, exchangeSeconds, hostStreamCost, locateSeconds, LTO9, physical, readThroughBreakEvenBytes, rewindSeconds, type TapeModel } from '../src/tape/model.js'
import { rng } from '../src/tape/rng.js'

const m = LTO9
const cap = capacityBlocks(m)
const perWrap = cap / m.wraps

describe('tape model: calibration (LTO-9 full height)', () => {
  const c = calibrate(m, 20000, rng(7))

  it('averages 65 s from the load point, ~48 s between random blocks, 62 s per rewind', () => {
    expect(c.avgLocateFromBot).toBeGreaterThan(65 * 0.97)
    expect(c.avgLocateFromBot).toBeLessThan(65 * 1.03)
    expect(c.avgLocateRandom).toBeGreaterThan(48 * 0.95)
    expect(c.avgLocateRandom).toBeLessThan(48 * 1.05)
    expect(c.avgRewind).toBeGreaterThan(62 * 0.97)
    expect(c.avgRewind).toBeLessThan(62 * 1.03)
    // an end-to-end pass at locate speed: CTA's coefficient over the LPOS range
    expect(c.fullLengthS).toBeCloseTo(104.3, 0)
  })

  it('never locates in under 4 s, even across the middle of a wrap where the CTA fit alone goes negative', () => {
    expect(c.minLocate).toBeGreaterThanOrEqual(4)
    const mid = Math.floor(perWrap / 2)
    // one block apart, on either side of the landing-zone boundary of wrap 0
    const a = physical(m, mid - 1)
    const b = physical(m, mid + 1)
    expect(a.zone).not.toBe(b.zone)
    expect(locateSeconds(m, mid - 1, mid + 1)).toBe(m.locate.min)
    expect(m.locate.min).toBeGreaterThanOrEqual(4)
    // exhaustive over a grid of pairs
    let min = Infinity
    for (let i = 0; i < cap; i += Math.floor(cap / 300)) for (let j = 0; j < cap; j += Math.floor(cap / 290)) if (i !== j) min = Math.min(min, locateSeconds(m, i, j))
    expect(min).toBeGreaterThanOrEqual(4)
  })

  it('puts the read-through break-even at the minimum locate times the native rate (~1.7 GB)', () => {
    expect(readThroughBreakEvenBytes(m) / 1e9).toBeCloseTo(1.716, 2)
  })
})

describe('tape model: serpentine geometry and costs', () => {
  it('runs wrap 0 forward, wrap 1 back, and fills 280 wraps', () => {
    expect(physical(m, 0)).toMatchObject({ wrap: 0, lpos: m.minLpos, band: 0, zone: 0 })
    const endOf0 = physical(m, Math.floor(perWrap) - 1)
    expect(endOf0.wrap).toBe(0)
    expect(endOf0.lpos).toBeGreaterThan(m.maxLpos - 10)
    const startOf1 = physical(m, Math.ceil(perWrap))
    expect(startOf1.wrap).toBe(1)
    expect(startOf1.lpos).toBeGreaterThan(m.maxLpos - 10)
    expect(physical(m, cap - 1).wrap).toBe(m.wraps - 1)
    expect(physical(m, cap - 1).band).toBe(m.bands - 1)
    // the last wrap is odd: it ends at the beginning of tape, so rewinding from there is short
    expect(rewindSeconds(m, cap - 1)).toBeLessThan(m.rewind.base + 1)
    expect(rewindSeconds(m, Math.floor(perWrap) - 1)).toBeGreaterThan(m.rewind.base + 100)
    expect(rewindSeconds(m, 0)).toBe(0)
  })

  it('charges a step back on the same wrap, a wrap change and distance as CTA does', () => {
    const a = 1000
    expect(locateSeconds(m, a, a)).toBe(0)
    const fwd = locateSeconds(m, a, a + 1000)
    const back = locateSeconds(m, a + 1000, a)
    expect(back - fwd).toBeCloseTo(m.locate.stepBack, 6)
    // the block straight "above" on the next wrap: a wrap and a direction change, no distance
    const across = locateSeconds(m, Math.floor(perWrap) - 1, Math.ceil(perWrap))
    expect(across).toBeCloseTo(m.locate.base + m.locate.wrapChange + m.locate.directionChange, 0)
    expect(exchangeSeconds(m, 0)).toBe(m.unloadS + 2 * m.robotMoveS + m.loadS)
  })

  it('streams at native rate, speed-matches down to 177 MB/s, and shoe-shines below', () => {
    const GiB = 2 ** 30
    expect(hostStreamCost(m, 100 * GiB, Infinity).seconds).toBeCloseTo((100 * GiB) / 400e6, 6)
    expect(hostStreamCost(m, 100 * GiB, 1e9)).toMatchObject({ backhitches: 0 })
    const matched = hostStreamCost(m, 100 * GiB, 300e6)
    expect(matched.seconds).toBeCloseTo((100 * GiB) / 300e6, 6)
    expect(matched.backhitches).toBe(0)
    // 100 MB/s: a backhitch each time the 1 GiB buffer runs dry at 177 MB/s
    const slow = hostStreamCost(m, 100 * GiB, 100e6)
    const cycle = (m.bufferBytes * m.minStreamRate) / (m.minStreamRate - 100e6)
    expect(slow.backhitches).toBe(Math.floor((100 * GiB) / cycle))
    expect(slow.backhitches).toBeGreaterThan(30)
    // the refill (10.7 s) outlasts the backhitch (3 s): the host is the limit, nothing added
    expect(slow.seconds).toBeCloseTo((100 * GiB) / 100e6, 6)
    // a drive with a small buffer makes the host wait out each backhitch
    const small: TapeModel = { ...m, bufferBytes: 64 * 2 ** 20 }
    const s2 = hostStreamCost(small, 100 * GiB, 100e6)
    const wait = m.backhitchS - small.bufferBytes / 100e6
    expect(wait).toBeGreaterThan(0)
    expect(s2.seconds).toBeCloseTo((100 * GiB) / 100e6 + s2.backhitches * wait, 6)
    // the bytes towards the next backhitch carry over between commands
    let carry = 0
    let n = 0
    for (let i = 0; i < 100; i++) {
      const c = hostStreamCost(m, GiB, 100e6, carry)
      carry = c.carry
      n += c.backhitches
    }
    expect(n).toBe(slow.backhitches)
    expect(() => hostStreamCost(m, 1, 0)).toThrow(RangeError)
  })
})

describe('simulated clock', () => {
  it('accounts per operation and sleeps only when the scale is above 0', async () => {
    const c = new SimClock(0)
    const t0 = performance.now()
    await c.spend(3600, 'locate')
    await c.spend(16, 'load')
    expect(performance.now() - t0).toBeLessThan(60_000) // an hour was not slept (a generous bound: the machine may be loaded)
    expect(c.now()).toBe(3616)
    expect(c.totals().locate).toEqual({ count: 1, seconds: 3600 })
    await c.waitUntil(4000)
    expect(c.now()).toBe(4000)
    expect(c.totals().idle.seconds).toBe(384)
    await c.waitUntil(10) // the past: nothing
    expect(c.now()).toBe(4000)
    await expect(c.spend(-1, 'read')).rejects.toThrow(RangeError)

    // scale 0.002: 100 simulated seconds take at least 200 real milliseconds
    const s = new SimClock(0.002)
    const t1 = performance.now()
    await s.spend(100, 'rewind')
    expect(performance.now() - t1).toBeGreaterThanOrEqual(190)
    expect(s.now()).toBe(100)
    expect(() => new SimClock(-1)).toThrow(RangeError)
  })
})
