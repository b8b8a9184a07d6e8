/**
 * What `bfs find` and `bfs log` share: the glob of find (a state machine over path
 * components), `--gens` ranges, and `--newer`/`--older` times. Pure: no repository access
 * but through the `resolve` function a command passes in.
 */
import { InvalidArgumentError } from 'commander'
import { BfsError } from '../repo/errors.js'
import { parseGenRef } from '../repo/repository.js'
import { parseWithin, subtractWithin } from '../repo/v2/retention.js'

/** One component's matcher over name bytes [s, e) of `b`. */
type NameMatch = (b: Buffer, s: number, e: number) => boolean

/**
 * A compiled pattern: components, `null` for `**` (any number of components, none included).
 * A pattern without a slash is `** / NAME` (it matches a base name at any depth); with one,
 * the whole path from the generation's root (a leading `/` is allowed). A trailing `/`
 * matches directories only; a trailing `**` one or more components (`etc/**`: what is inside
 * etc, not etc).
 */
export class PathPattern {
  readonly segs: Array<NameMatch | null>
  readonly dirOnly: boolean
  /**
   * The name when the pattern is a literal NAME at any depth (no wildcard, case counts): then
   * only directories (to walk) and entries of that name can matter (find's native scan
   * returns only those).
   */
  readonly leafName: Buffer | null
  /**
   * The pattern for find's walk in C (native/findwalk.h: component count, dirOnly, then each
   * component as type 0 `**`, 1 literal bytes or 2 an ASCII glob with `*` only, a 2-byte
   * length and its bytes), or null when a component is of another kind (`?`, `[`, `\`,
   * --ignore-case, a non-ASCII glob): those are matched by RegExps on the names' text.
   */
  readonly nativeSpec: Buffer | null
  /** States: bit i = "the first i components are matched". */
  readonly start: number
  private readonly full: number

  constructor(pattern: string, ignoreCase: boolean) {
    if (pattern === '' || /^\/+$/.test(pattern)) throw bad(pattern, 'it is empty')
    let p = pattern
    this.dirOnly = p.endsWith('/')
    p = p.replace(/\/+$/, '')
    const parts = p.includes('/') ? p.replace(/^\//, '').split('/') : ['**', p]
    if (parts.some((c) => c === '')) throw bad(pattern, 'it has an empty component (//)')
    if (parts.length > 30) throw bad(pattern, 'it has more than 30 components')
    // a trailing ** is everything inside, not the directory itself (gitignore's `dir/**`, as
    // restic): one name, then any number of directories (`etc/**` = `etc/*/**`)
    if (parts.at(-1) === '**') parts.splice(-1, 0, '*')
    this.segs = parts.map((c) => (c === '**' ? null : component(c, ignoreCase, pattern)))
    // NAME at any depth, literal: what else than a directory can match is an entry of that name
    const lit = parts.length === 2 && parts[0] === '**' && !this.dirOnly && !ignoreCase && !/[*?[\\]/.test(parts[1]!) ? parts[1]! : null
    this.leafName = lit === null || lit === '**' ? null : Buffer.from(lit)
    this.full = 1 << this.segs.length
    this.nativeSpec = nativeSpecOf(parts, this.dirOnly, ignoreCase)
    this.start = this.close(1)
  }

  /** The states plus those reached through `**` without consuming a name. */
  private close(m: number): number {
    for (let i = 0; i < this.segs.length; i++) if (m & (1 << i) && this.segs[i] === null) m |= 1 << (i + 1)
    return m
  }

  /** The states after one more component, the name bytes [s, e) of `b`; 0: nothing below can match. */
  step(m: number, b: Buffer, s: number, e: number): number {
    let out = 0
    for (let i = 0; i < this.segs.length; i++) {
      if (!(m & (1 << i))) continue
      const g = this.segs[i]
      if (g === null) out |= 1 << i
      else if (g(b, s, e)) out |= 1 << (i + 1)
    }
    return out === 0 ? 0 : this.close(out)
  }

  /** Whether the states after a component mean the whole pattern matched (type checked by the caller: dirOnly). */
  matched(m: number): boolean {
    return (m & this.full) !== 0
  }

  /** Whether a path in these states may have a matching descendant. */
  descend(m: number): boolean {
    return (m & (this.full - 1)) !== 0
  }
}

/** PathPattern.nativeSpec of its components (`**` already spliced as the constructor does). */
function nativeSpecOf(parts: string[], dirOnly: boolean, ignoreCase: boolean): Buffer | null {
  if (parts.length > 31) return null
  const out: Buffer[] = [Buffer.from([parts.length, dirOnly ? 1 : 0])]
  for (const c of parts) {
    let type: number
    if (c === '**') type = 0
    else if (!/[*?[\\]/.test(c) && !ignoreCase) type = 1
    // `*` alone among the wildcards, ASCII only, case counting: a byte match is the text match
    else if (!ignoreCase && /^[\x20-\x7e]*$/.test(c) && !/[?[\\]/.test(c)) type = 2
    else return null
    const b = type === 0 ? Buffer.alloc(0) : Buffer.from(c)
    if (b.length > 0xffff) return null
    out.push(Buffer.from([type, b.length & 0xff, b.length >> 8]), b)
  }
  return Buffer.concat(out)
}

function bad(pattern: string, why: string): BfsError {
  return new BfsError('USAGE', `bad pattern '${pattern}': ${why}`)
}

/** Characters to escape inside a class (`-` too); outside one, `\-` is a syntax error with the `u` flag. */
const RE_SPECIAL = /[\\^$.*+?()[\]{}|/-]/g
const RE_SPECIAL_OUTSIDE = /[\\^$.*+?()[\]{}|/]/g

/** One component: literal bytes when it has no `*`, `?`, `[`, `\` (and case counts), else a RegExp over its UTF-8 text. */
function component(c: string, ignoreCase: boolean, pattern: string): NameMatch {
  if (!/[*?[\\]/.test(c) && !ignoreCase) {
    const lit = Buffer.from(c)
    return (b, s, e) => e - s === lit.length && b.compare(lit, 0, lit.length, s, e) === 0
  }
  const cps = [...c]
  let re = ''
  for (let i = 0; i < cps.length; i++) {
    const ch = cps[i]!
    if (ch === '*') {
      while (cps[i + 1] === '*') i++
      re += '.*'
    } else if (ch === '?') re += '.'
    else if (ch === '\\') {
      if (i + 1 >= cps.length) throw bad(pattern, 'it ends with a lone \\')
      re += cps[++i]!.replace(RE_SPECIAL_OUTSIDE, '\\$&')
    } else if (ch === '[') {
      let j = i + 1
      let cls = ''
      if (cps[j] === '!' || cps[j] === '^') cls += '^', j++
      let first = true
      let closed = false
      for (; j < cps.length; j++) {
        let x = cps[j]!
        if (x === ']' && !first) {
          closed = true
          break
        }
        first = false
        if (x === '\\') {
          if (j + 1 >= cps.length) break
          x = cps[++j]!
        }
        if (cps[j + 1] === '-' && j + 2 < cps.length && cps[j + 2] !== ']') {
          let y = cps[j + 2]!
          j += 2
          if (y === '\\') {
            if (j + 1 >= cps.length) break
            y = cps[++j]!
          }
          if (y.codePointAt(0)! < x.codePointAt(0)!) throw bad(pattern, `the range ${x}-${y} is backwards`)
          cls += `${x.replace(RE_SPECIAL, '\\$&')}-${y.replace(RE_SPECIAL, '\\$&')}`
        } else cls += x.replace(RE_SPECIAL, '\\$&')
      }
      if (!closed) throw bad(pattern, 'a [ has no closing ]')
      re += `[${cls}]`
      i = j
    } else re += ch.replace(RE_SPECIAL_OUTSIDE, '\\$&')
  }
  const rx = new RegExp(`^(?:${re})$`, ignoreCase ? 'sui' : 'su')
  return (b, s, e) => rx.test(b.toString('utf8', s, e))
}

/** A generation as the selection sees it. */
export interface GenInfo {
  id: number
  time: string
  source: string
}

/**
 * `--gens`: a comma-separated list of generation names (`3`, `gen3`, `latest`, `latest~2`)
 * and ranges `A..B` (either end may be left out: from the first, to the latest). Every name
 * is resolved (`resolve`: a malformed one is a usage error, a missing one exit 1); the
 * generations of `gens` in the ranges are kept, in order.
 */
export function selectGens(spec: string | undefined, gens: GenInfo[], resolve: (ref: string) => number): GenInfo[] {
  if (spec === undefined) return gens
  const keep = new Set<number>()
  for (const item of spec.split(',')) {
    const t = item.trim()
    const m = /^(.*?)\.\.(.*)$/.exec(t)
    if (!m) {
      if (t === '') throw new BfsError('USAGE', `bad generation range '${spec}': an empty item`)
      keep.add(resolveName(t, resolve))
      continue
    }
    const a = m[1] === '' ? -Infinity : resolveName(m[1]!, resolve)
    const b = m[2] === '' ? Infinity : resolveName(m[2]!, resolve)
    if (a > b) throw new BfsError('USAGE', `bad generation range '${t}': gen${a} comes after gen${b}`)
    for (const g of gens) if (g.id >= a && g.id <= b) keep.add(g.id)
  }
  return gens.filter((g) => keep.has(g.id))
}

function resolveName(ref: string, resolve: (ref: string) => number): number {
  if (ref.includes('..')) throw new BfsError('USAGE', `bad generation range '${ref}'`)
  parseGenRef(ref) // a malformed name: a usage error (exit 2)
  return resolve(ref)
}

/**
 * A point in time on the command line — find's and log's `--newer`/`--older`, generations'
 * `--since`/`--until` — one syntax for all: an ISO date or time (`2026-01-31`,
 * `2026-01-31T12:00:00Z`, `2026-01-31 12:00`) or a duration before now in forget's syntax
 * (`2d`, `1w3d`, `12h`, `1y5m`: m is months, as in restic's and Borg's retention): epoch ms.
 */
export function parseTime(v: string): number {
  const s = v.trim()
  const w = parseWithin(s)
  if (w) return subtractWithin(Date.now(), w, 'local')
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(s)) {
    const ms = Date.parse(s.replace(' ', 'T'))
    if (!Number.isNaN(ms)) return ms
  }
  throw new InvalidArgumentError('a date (2026-01-31, 2026-01-31T12:00:00Z) or a duration before now (2d, 1w3d, 12h; m is months)')
}

/** `2026-11-30 10:00:00` (UTC) of seconds since the epoch. */
export function shortTime(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')
}
