/**
 * Retention policies of `bfs forget` (restic's semantics, re-implemented): which generations
 * of a group a policy keeps, and why. Pure: no repository, no clock (times are given).
 *
 * Per group, generations newest first (time, then id, descending):
 * - `--keep-last N`: the N newest.
 * - `--keep-hourly/daily/weekly/monthly/yearly N`: each rule walks the list and keeps a
 *   generation whose hour/day/ISO week/month/year (in the given time zone) differs from the
 *   last one that rule kept, until it has kept N: the newest of each of the last N periods
 *   that have a generation. If a rule still has count left when it reaches the oldest
 *   generation, that one is kept too ("oldest daily"), so the history kept is as long as the
 *   rule allows. `unlimited` (-1) never runs out.
 * - `--keep-within D`: every generation newer than the group's newest minus D (y years,
 *   m months, w weeks, d days, h hours, e.g. `1y5m7d2h`, `2d`, `1w3d`), calendar arithmetic.
 * Rules are independent: each one sees every generation, and a generation is kept when any
 * rule keeps it; its reasons list every rule that did.
 */

export type BucketRule = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly'
export const BUCKET_RULES: readonly BucketRule[] = ['hourly', 'daily', 'weekly', 'monthly', 'yearly']

export interface Within {
  years: number
  months: number
  weeks: number
  days: number
  hours: number
  /** As given (`2d`), for the reason text. */
  text: string
}

export interface Policy {
  /** Counts: 0 = the rule is off, -1 = unlimited. */
  last: number
  hourly: number
  daily: number
  weekly: number
  monthly: number
  yearly: number
  within: Within | null
}

export const NO_POLICY: Policy = { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0, within: null }

/** True when the policy keeps nothing (every rule off): forget refuses it rather than forget everything. */
export function isEmptyPolicy(p: Policy): boolean {
  return p.last === 0 && BUCKET_RULES.every((r) => p[r] === 0) && !p.within
}

/** `1y5m7d2h`, `2d`, `1w3d`, `1y` (y years, m months, w weeks, d days, h hours; each unit at most once); null when malformed. */
export function parseWithin(text: string): Within | null {
  const s = text.trim()
  if (!/^(\d+[ymwdh])+$/.test(s)) return null
  const w: Within = { years: 0, months: 0, weeks: 0, days: 0, hours: 0, text: s }
  const seen = new Set<string>()
  for (const m of s.matchAll(/(\d+)([ymwdh])/g)) {
    const unit = m[2]!
    if (seen.has(unit)) return null
    seen.add(unit)
    const n = Number(m[1])
    if (!Number.isSafeInteger(n) || n > 100_000) return null
    if (unit === 'y') w.years = n
    else if (unit === 'm') w.months = n
    else if (unit === 'w') w.weeks = n
    else if (unit === 'd') w.days = n
    else w.hours = n
  }
  return w
}

/** A count option: a non-negative integer, or `unlimited` (-1); null when malformed. */
export function parseKeepCount(v: string): number | null {
  if (v === 'unlimited' || v === '-1') return -1
  if (!/^\d+$/.test(v)) return null
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : null
}

export type TimeZone = 'local' | 'utc'

interface Parts {
  y: number
  mo: number
  d: number
  h: number
  /** Day of the week, 0 = Sunday. */
  dow: number
}

function parts(ms: number, tz: TimeZone): Parts {
  const t = new Date(ms)
  return tz === 'utc'
    ? { y: t.getUTCFullYear(), mo: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours(), dow: t.getUTCDay() }
    : { y: t.getFullYear(), mo: t.getMonth() + 1, d: t.getDate(), h: t.getHours(), dow: t.getDay() }
}

/** ISO 8601 week-numbering year and week of a calendar date (Monday-based weeks; week 1 holds the year's first Thursday). */
export function isoWeek(y: number, mo: number, d: number): { year: number; week: number } {
  const day = Date.UTC(y, mo - 1, d)
  const dow = (new Date(day).getUTCDay() + 6) % 7 // Monday 0 … Sunday 6
  const thursday = new Date(day + (3 - dow) * 86_400_000)
  const year = thursday.getUTCFullYear()
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1
  return { year, week }
}

/** The period a time falls in, per rule (equal numbers = the same period). */
export function bucketOf(rule: BucketRule, ms: number, tz: TimeZone): number {
  const p = parts(ms, tz)
  switch (rule) {
    case 'hourly':
      return ((p.y * 100 + p.mo) * 100 + p.d) * 100 + p.h
    case 'daily':
      return (p.y * 100 + p.mo) * 100 + p.d
    case 'weekly': {
      const w = isoWeek(p.y, p.mo, p.d)
      return w.year * 100 + w.week
    }
    case 'monthly':
      return p.y * 100 + p.mo
    case 'yearly':
      return p.y
  }
}

/** `ms` minus a Within, by the calendar (months and years as the calendar has them; an overflowing day rolls over, as Go's AddDate). */
export function subtractWithin(ms: number, w: Within, tz: TimeZone): number {
  const t = new Date(ms)
  if (tz === 'utc') t.setUTCFullYear(t.getUTCFullYear() - w.years, t.getUTCMonth() - w.months, t.getUTCDate() - w.days - 7 * w.weeks)
  else t.setFullYear(t.getFullYear() - w.years, t.getMonth() - w.months, t.getDate() - w.days - 7 * w.weeks)
  return t.getTime() - w.hours * 3_600_000
}

export interface Candidate {
  id: number
  /** The generation's point in time (ms since the epoch). */
  timeMs: number
}

export interface Decision {
  id: number
  keep: boolean
  /** Why it is kept (`last`, `daily`, `oldest weekly`, `within 2d`, …); empty when removed. */
  reasons: string[]
}

/** Applies `policy` to one group; the decisions come newest first. */
export function applyPolicy(gens: readonly Candidate[], policy: Policy, tz: TimeZone = 'local'): Decision[] {
  const list = [...gens].sort((a, b) => b.timeMs - a.timeMs || b.id - a.id)
  if (list.length === 0) return []
  const cutoff = policy.within ? subtractWithin(list[0]!.timeMs, policy.within, tz) : null
  const rules: Array<{ name: string; left: number; last: number | null; key: (c: Candidate, i: number) => number }> = []
  if (policy.last !== 0) rules.push({ name: 'last', left: policy.last, last: null, key: (_c, i) => i })
  for (const r of BUCKET_RULES) if (policy[r] !== 0) rules.push({ name: r, left: policy[r], last: null, key: (c) => bucketOf(r, c.timeMs, tz) })
  return list.map((c, i) => {
    const reasons: string[] = []
    if (cutoff !== null && c.timeMs > cutoff) reasons.push(`within ${policy.within!.text}`)
    const oldest = i === list.length - 1
    for (const r of rules) {
      if (r.left === 0) continue
      const v = r.key(c, i)
      if (v === r.last && !oldest) continue
      // the oldest generation is kept by a rule that has count left even in a period it already
      // kept one of: the history kept reaches as far back as there is (restic's rule)
      reasons.push(v === r.last ? `oldest ${r.name}` : r.name)
      r.last = v
      if (r.left > 0) r.left--
    }
    return { id: c.id, keep: reasons.length > 0, reasons }
  })
}
