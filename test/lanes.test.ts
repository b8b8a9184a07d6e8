import { describe, expect, it } from 'vitest'
import { Lanes } from '../src/repo/lanes.js'
import { dataOrder } from '../src/repo/restore.js'

describe('Lanes (restore jobs, one lane per worker)', () => {
  it('hands out every job exactly once, whatever the workers ask in whatever order', () => {
    for (const [n, k] of [[0, 2], [1, 2], [2, 2], [7, 2], [7, 3], [100, 4], [5, 8]] as const) {
      const l = new Lanes(n, k)
      const seen: number[] = []
      let w = 0
      for (let j = l.take(w); j >= 0; j = l.take(w)) {
        seen.push(j)
        w = (w * 7 + 3) % k // an uneven order of asking
      }
      expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i))
      for (let i = 0; i < k; i++) expect(l.take(i)).toBe(-1)
    }
  })

  it('gives each worker its own stretch from the front, then steals from the back of the fullest lane', () => {
    const l = new Lanes(10, 2) // lanes 0-4 and 5-9
    expect([l.take(0), l.take(0), l.take(1)]).toEqual([0, 1, 5])
    expect([l.take(0), l.take(0), l.take(0)]).toEqual([2, 3, 4])
    // lane 0 done: worker 0 takes lane 1's last job, lane 1's owner keeps its next ones
    expect(l.take(0)).toBe(9)
    expect(l.take(1)).toBe(6)
    expect(l.take(0)).toBe(8)
    expect(l.take(1)).toBe(7)
    expect(l.take(0)).toBe(-1)
    expect(l.take(1)).toBe(-1)
  })
})

describe('dataOrder (restore: files by where their data starts)', () => {
  const f = (...extents: number[]): { f: { extents: number[] }; tag: string } => ({ f: { extents }, tag: extents.join(',') })
  it('sorts by the first extent that is not a hole: stream, then block; files without data first; stable', () => {
    const files = [f(0, 4, 2, 100), f(0, 1, 1, 900), f(), f(0, 2, 0, 0, 2, 2, 1, 50), f(0, 1, 1, 900, 1, 1, 3, 7), f(0, 3, 2, 10), f(0, 1, 0, 0)]
    const sorted = [...files].sort(dataOrder).map((x) => x.tag)
    expect(sorted).toEqual(['', '0,1,0,0', '0,2,0,0,2,2,1,50', '0,1,1,900', '0,1,1,900,1,1,3,7', '0,3,2,10', '0,4,2,100'])
  })
})
