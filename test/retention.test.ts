/**
 * Retention policies of `bfs forget` (src/repo/v2/retention.ts, restic's semantics) on fixed
 * timestamps in UTC: each rule alone, combinations, ties, the oldest-kept rule, unlimited,
 * keep-within's calendar arithmetic, ISO weeks at year ends, and the reasons given.
 */
import { describe, expect, it } from 'vitest'
import { applyPolicy, bucketOf, isEmptyPolicy, isoWeek, NO_POLICY, parseKeepCount, parseWithin, subtractWithin, type Candidate, type Policy } from '../src/repo/v2/retention.js'

const at = (iso: string): number => Date.parse(iso)
/** Candidates numbered 1… in the order given (oldest first, as backups are). */
const gens = (...isos: string[]): Candidate[] => isos.map((t, i) => ({ id: i + 1, timeMs: at(t) }))
const policy = (p: Partial<Policy>): Policy => ({ ...NO_POLICY, ...p })
/** id → reasons of the kept ones (removed ones absent). */
const kept = (c: Candidate[], p: Partial<Policy>): Record<number, string> => {
  const out: Record<number, string> = {}
  for (const d of applyPolicy(c, policy(p), 'utc')) if (d.keep) out[d.id] = d.reasons.join(',')
  return out
}

// ten generations: two a day on 2026-03-01..03-03 and 03-10, one on 03-31, 04-15, 2025-12-31
const TEN = gens(
  '2025-12-31T23:00:00Z', // 1
  '2026-03-01T08:00:00Z', // 2
  '2026-03-01T20:00:00Z', // 3
  '2026-03-02T08:00:00Z', // 4
  '2026-03-02T08:30:00Z', // 5
  '2026-03-03T09:00:00Z', // 6
  '2026-03-10T09:00:00Z', // 7
  '2026-03-10T09:45:00Z', // 8
  '2026-03-31T12:00:00Z', // 9
  '2026-04-15T12:00:00Z', // 10
)

describe('retention: each rule alone', () => {
  it('--keep-last N keeps the N newest; more than there are keeps all', () => {
    expect(kept(TEN, { last: 3 })).toEqual({ 10: 'last', 9: 'last', 8: 'last' })
    expect(Object.keys(kept(TEN, { last: 50 }))).toHaveLength(10)
  })

  it('decisions come newest first and say keep or remove for every generation', () => {
    const d = applyPolicy(TEN, policy({ last: 2 }), 'utc')
    expect(d.map((x) => x.id)).toEqual([10, 9, 8, 7, 6, 5, 4, 3, 2, 1])
    expect(d.map((x) => x.keep)).toEqual([true, true, false, false, false, false, false, false, false, false])
    expect(d[2]!.reasons).toEqual([])
  })

  it('--keep-daily N keeps the newest of each of the last N days that have a generation (days without one do not count)', () => {
    expect(kept(TEN, { daily: 4 })).toEqual({ 10: 'daily', 9: 'daily', 8: 'daily', 6: 'daily' })
    expect(kept(TEN, { daily: 6 })).toEqual({ 10: 'daily', 9: 'daily', 8: 'daily', 6: 'daily', 5: 'daily', 3: 'daily' })
  })

  it('--keep-hourly: 08:00 and 08:30 are one hour, 09:00 and 09:45 another', () => {
    expect(kept(TEN, { hourly: 5 })).toEqual({ 10: 'hourly', 9: 'hourly', 8: 'hourly', 6: 'hourly', 5: 'hourly' })
  })

  it('--keep-weekly uses ISO weeks (Monday first): Sunday 03-01 and Monday 03-02 are different weeks', () => {
    // weeks: 04-15 (W16), 03-31 (W14), 03-10 (W11), 03-02..03 (W10), 03-01 (W09), 2025-12-31 (2026-W01)
    expect(kept(TEN, { weekly: 5 })).toEqual({ 10: 'weekly', 9: 'weekly', 8: 'weekly', 6: 'weekly', 3: 'weekly' })
  })

  it('--keep-monthly and --keep-yearly', () => {
    expect(kept(TEN, { monthly: 2 })).toEqual({ 10: 'monthly', 9: 'monthly' })
    expect(kept(TEN, { monthly: 3 })).toEqual({ 10: 'monthly', 9: 'monthly', 1: 'monthly' })
    expect(kept(TEN, { yearly: 1 })).toEqual({ 10: 'yearly' })
    expect(kept(TEN, { yearly: 2 })).toEqual({ 10: 'yearly', 1: 'yearly' })
  })

  it('--keep-within keeps what is newer than the newest minus the duration (not now), the boundary itself excluded', () => {
    // newest 04-15T12:00: 16d → cutoff 03-30T12:00
    expect(kept(TEN, { within: parseWithin('16d') })).toEqual({ 10: 'within 16d', 9: 'within 16d' })
    // 1w3d = 10 days → cutoff 04-05T12:00
    expect(kept(TEN, { within: parseWithin('1w3d') })).toEqual({ 10: 'within 1w3d' })
    // exactly on the boundary: 03-31T12:00 is 15 days before; 15d's cutoff is that instant, not kept
    expect(kept(TEN, { within: parseWithin('15d') })).toEqual({ 10: 'within 15d' })
    expect(kept(TEN, { within: parseWithin('15d1h') })).toEqual({ 10: 'within 15d1h', 9: 'within 15d1h' })
    expect(Object.keys(kept(TEN, { within: parseWithin('1y') }))).toHaveLength(10)
  })

  it('keep-within counts months and years by the calendar (an overflowing day rolls over, as restic)', () => {
    const w = parseWithin('1m')!
    expect(new Date(subtractWithin(at('2026-03-31T10:00:00Z'), w, 'utc')).toISOString()).toBe('2026-03-03T10:00:00.000Z')
    expect(new Date(subtractWithin(at('2026-04-15T12:00:00Z'), parseWithin('1y2m3d4h')!, 'utc')).toISOString()).toBe('2025-02-12T08:00:00.000Z')
  })
})

describe('retention: the oldest generation, unlimited, ties', () => {
  it('a bucket rule with count left when it reaches the oldest generation keeps it too ("oldest daily")', () => {
    const g = gens('2026-03-01T08:00:00Z', '2026-03-01T09:00:00Z', '2026-03-01T10:00:00Z')
    expect(kept(g, { daily: 1 })).toEqual({ 3: 'daily' })
    expect(kept(g, { daily: 2 })).toEqual({ 3: 'daily', 1: 'oldest daily' })
    // in a period of its own, the oldest is an ordinary daily
    expect(kept(TEN, { daily: 20 })[1]).toBe('daily')
  })

  it("'unlimited' keeps the newest of every period, and the oldest", () => {
    expect(kept(TEN, { daily: -1 })).toEqual({ 10: 'daily', 9: 'daily', 8: 'daily', 6: 'daily', 5: 'daily', 3: 'daily', 1: 'daily' })
    const g = gens('2026-03-01T08:00:00Z', '2026-03-01T09:00:00Z')
    expect(kept(g, { monthly: -1 })).toEqual({ 2: 'monthly', 1: 'oldest monthly' })
    expect(Object.keys(kept(TEN, { last: -1 }))).toHaveLength(10)
  })

  it('generations with the same time: the higher id counts as newer, and a period keeps only it', () => {
    const g = gens('2026-03-01T08:00:00Z', '2026-03-02T08:00:00Z', '2026-03-02T08:00:00Z')
    expect(applyPolicy(g, policy({ last: 3 }), 'utc').map((d) => d.id)).toEqual([3, 2, 1])
    expect(kept(g, { daily: 1 })).toEqual({ 3: 'daily' })
    expect(kept(g, { last: 1 })).toEqual({ 3: 'last' })
  })

  it('an empty list decides nothing', () => {
    expect(applyPolicy([], policy({ last: 1 }), 'utc')).toEqual([])
  })
})

describe('retention: combinations and reasons', () => {
  it('rules are independent: each sees every generation, and a generation lists every rule that kept it', () => {
    expect(kept(TEN, { last: 2, daily: 3, weekly: 2, monthly: 3, within: parseWithin('1w') })).toEqual({
      10: 'within 1w,last,daily,weekly,monthly',
      9: 'last,daily,weekly,monthly',
      8: 'daily',
      1: 'monthly',
    })
  })

  it("restic's classic policy: 7 daily, 4 weekly, 12 monthly", () => {
    // one backup a day at 02:00 for 100 days
    const g: Candidate[] = Array.from({ length: 100 }, (_, i) => ({ id: i + 1, timeMs: at('2026-01-01T02:00:00Z') + i * 86_400_000 }))
    const k = kept(g, { daily: 7, weekly: 4, monthly: 12 })
    // newest is 2026-04-10 (Friday): days 04-04..04-10 daily; weekly: Sundays 04-05, 03-29, 03-22 plus 04-10 itself
    const byDate = Object.fromEntries(Object.entries(k).map(([id, r]) => [new Date(g[Number(id) - 1]!.timeMs).toISOString().slice(0, 10), r]))
    expect(byDate).toEqual({
      '2026-04-10': 'daily,weekly,monthly',
      '2026-04-09': 'daily', '2026-04-08': 'daily', '2026-04-07': 'daily', '2026-04-06': 'daily',
      '2026-04-05': 'daily,weekly', '2026-04-04': 'daily',
      '2026-03-29': 'weekly', '2026-03-22': 'weekly',
      '2026-03-31': 'monthly', '2026-02-28': 'monthly', '2026-01-31': 'monthly',
      // monthly has 8 of 12 left at the oldest: 01-01 is in a month already kept, so "oldest monthly"
      '2026-01-01': 'oldest monthly',
    })
  })
})

describe('retention: parsing and periods', () => {
  it('durations: y m w d h, each unit once; anything else is refused', () => {
    expect(parseWithin('1y5m7d2h')).toEqual({ years: 1, months: 5, weeks: 0, days: 7, hours: 2, text: '1y5m7d2h' })
    expect(parseWithin('1w3d')).toMatchObject({ weeks: 1, days: 3 })
    for (const bad of ['', '2', 'd', '2x', '1d1d', '-1d', '1.5d', '2 d']) expect(parseWithin(bad), bad).toBe(null)
  })

  it("counts: whole numbers or 'unlimited'", () => {
    expect(parseKeepCount('7')).toBe(7)
    expect(parseKeepCount('0')).toBe(0)
    expect(parseKeepCount('unlimited')).toBe(-1)
    for (const bad of ['', 'x', '1.5', '-2', ' 3']) expect(parseKeepCount(bad), bad).toBe(null)
  })

  it('a policy whose rules are all 0 is empty (forget refuses it)', () => {
    expect(isEmptyPolicy(NO_POLICY)).toBe(true)
    expect(isEmptyPolicy(policy({ last: 0, daily: 0 }))).toBe(true)
    expect(isEmptyPolicy(policy({ yearly: 1 }))).toBe(false)
    expect(isEmptyPolicy(policy({ within: parseWithin('1h') }))).toBe(false)
  })

  it('ISO weeks at year ends', () => {
    expect(isoWeek(2027, 1, 1)).toEqual({ year: 2026, week: 53 }) // 2026 starts on a Thursday: 53 weeks
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 })
    expect(isoWeek(2021, 1, 3)).toEqual({ year: 2020, week: 53 })
    expect(isoWeek(2026, 3, 1)).toEqual({ year: 2026, week: 9 })
    expect(isoWeek(2026, 3, 2)).toEqual({ year: 2026, week: 10 })
    expect(bucketOf('weekly', at('2025-12-31T23:00:00Z'), 'utc')).toBe(202601)
  })
})
