/** bfs find's pattern (cli/find-select.ts): paths matched component by component, as the walks do. */
import { describe, expect, it } from 'vitest'
import { PathPattern, parseTime, selectGens } from '../src/cli/find-select.js'
import { parseSince } from '../src/cli/sources.js'

/** Whether `p` (a path from the root, no leading slash) matches, walking its components as find does. */
function matches(pattern: string, p: string, opts: { ignoreCase?: boolean; dir?: boolean } = {}): boolean {
  const pat = new PathPattern(pattern, !!opts.ignoreCase)
  let m = pat.start
  const parts = p.split('/')
  for (let k = 0; k < parts.length; k++) {
    const b = Buffer.from(parts[k]!)
    m = pat.step(m, b, 0, b.length)
    if (m === 0) return false
    if (k < parts.length - 1 && !pat.descend(m)) return false
  }
  return pat.matched(m) && (!pat.dirOnly || !!opts.dir)
}

describe('find patterns', () => {
  it('no slash: the name at any depth', () => {
    expect(matches('hosts', 'hosts')).toBe(true)
    expect(matches('hosts', 'etc/hosts')).toBe(true)
    expect(matches('hosts', 'etc/hosts.d')).toBe(false)
    expect(matches('*.c', 'a/b/c/main.c')).toBe(true)
    expect(matches('*.c', 'a/b/c/main.h')).toBe(false)
  })
  it('a slash: the whole path; * stays in one name; ** spans directories', () => {
    expect(matches('etc/*', 'etc/hosts')).toBe(true)
    expect(matches('etc/*', 'etc/nginx/nginx.conf')).toBe(false)
    expect(matches('/etc/*', 'etc/hosts')).toBe(true)
    expect(matches('nginx/*', 'etc/nginx/x')).toBe(false)
    expect(matches('etc/**/x', 'etc/x')).toBe(true)
    expect(matches('etc/**/x', 'etc/a/b/x')).toBe(true)
    expect(matches('**/x', 'a/x')).toBe(true)
    expect(matches('etc/**', 'etc/a/b')).toBe(true)
  })
  it('a trailing ** matches everything inside, not the directory itself (gitignore, restic)', () => {
    for (const p of ['etc/**', '/etc/**', 'etc/**/', 'etc/**/**']) {
      expect(matches(p, 'etc', { dir: true }), p).toBe(false)
      expect(matches(p, 'etc/x', { dir: true }), p).toBe(true)
      expect(matches(p, 'etc/a/b', { dir: true }), p).toBe(true)
      expect(matches(p, 'usr/etc/x', { dir: true }), p).toBe(false)
    }
    expect(matches('**', 'etc')).toBe(true) // no slash: a name at any depth, so any entry
    expect(matches('/**', 'etc')).toBe(true) // inside the root
    expect(matches('etc/**/x', 'etc/x')).toBe(true) // in the middle, ** still spans zero directories
    // without **: etc a name at any depth, etc/ a directory at any depth, /etc the root's
    expect(matches('etc', 'usr/etc')).toBe(true)
    expect(matches('etc/', 'usr/etc', { dir: true })).toBe(true)
    expect(matches('etc/', 'usr/etc')).toBe(false)
    expect(matches('/etc', 'usr/etc')).toBe(false)
    expect(matches('/etc', 'etc')).toBe(true)
  })
  it('?, classes, negation, escapes, UTF-8 characters, case', () => {
    expect(matches('?.c', 'a.c')).toBe(true)
    expect(matches('?.c', 'ab.c')).toBe(false)
    expect(matches('?.c', 'é.c')).toBe(true) // one character, two bytes
    expect(matches('[a-c]x', 'bx')).toBe(true)
    expect(matches('[!a-c]x', 'bx')).toBe(false)
    expect(matches('[^a-c]x', 'dx')).toBe(true)
    expect(matches('[]]', ']')).toBe(true)
    expect(matches('[é]', 'é')).toBe(true)
    expect(matches('\\*', '*')).toBe(true)
    expect(matches('\\*', 'a')).toBe(false)
    expect(matches('a.c', 'abc')).toBe(false) // . is not a wildcard
    expect(matches('README', 'readme')).toBe(false)
    expect(matches('README', 'readme', { ignoreCase: true })).toBe(true)
    expect(matches('sites/', 'etc/sites', { dir: true })).toBe(true)
    expect(matches('sites/', 'etc/sites')).toBe(false)
    // a - outside a class (with a wildcard elsewhere) is a plain character, as is an escaped one
    expect(matches('file-0000[01].txt', 'file-00001.txt')).toBe(true)
    expect(matches('file-0000[01].txt', 'file-00002.txt')).toBe(false)
    expect(matches('a-*', 'a-b')).toBe(true)
    expect(matches('a\\-b*', 'a-bc')).toBe(true)
    expect(matches('[a\\-]x', '-x')).toBe(true)
  })
  it('bad patterns are usage errors (exit 2)', () => {
    for (const p of ['', '/', '[abc', 'a//b', '[z-a]', 'x\\']) {
      expect(() => new PathPattern(p, false), p).toThrow(expect.objectContaining({ code: 'USAGE' }))
    }
  })
  it('--gens: ranges, lists, open ends; backwards is a usage error', () => {
    const gens = [1, 2, 3, 5, 8].map((id) => ({ id, time: '', source: '/s' }))
    const resolve = (r: string): number => (r === 'latest' ? 8 : Number(r.replace(/^gen/, '')))
    const ids = (spec: string): number[] => selectGens(spec, gens, resolve).map((g) => g.id)
    expect(ids('2..5')).toEqual([2, 3, 5])
    expect(ids('gen3..latest')).toEqual([3, 5, 8])
    expect(ids('..2,8')).toEqual([1, 2, 8])
    expect(ids('5..')).toEqual([5, 8])
    expect(ids('4..4')).toEqual([])
    expect(() => ids('5..2')).toThrow(expect.objectContaining({ code: 'USAGE' }))
    expect(() => ids('x')).toThrow(expect.objectContaining({ code: 'USAGE' }))
  })
})

describe('times on the command line (find --newer/--older, generations --since/--until)', () => {
  const DAY = 86_400_000
  it('one syntax: forget\'s durations (m is months), or an ISO date or time', () => {
    const ago = (v: string): number => (Date.now() - parseTime(v)) / DAY
    expect(ago('2m')).toBeGreaterThan(55) // two months, not two minutes
    expect(ago('2m')).toBeLessThan(63)
    expect(ago('1w3d')).toBeCloseTo(10, 0)
    expect(ago('12h')).toBeCloseTo(0.5, 1)
    expect(parseTime('2026-01-31T12:00:00Z')).toBe(Date.parse('2026-01-31T12:00:00Z'))
    expect(parseTime('2026-01-31 12:00')).toBe(Date.parse('2026-01-31T12:00'))
    for (const bad of ['30min', 'yesterday', '2d2d', '']) expect(() => parseTime(bad), bad).toThrow(/a date .* or a duration before now/)
    expect(parseSince).toBe(parseTime)
  })
})
