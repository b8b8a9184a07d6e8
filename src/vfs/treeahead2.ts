/**
 * The readahead over the tree (vfs/treeahead.ts: its comment says what and why) for format
 * 2's lazy tree: the same semantics — from the second open in a row in traversal order, ask
 * (marked `ahead`) for the units on tape of the files that come next, up to the window
 * (AheadWindow: units, and a quarter of the buffer cache); an open within NEAR_FILES files
 * of the last one either way counts as in order; one elsewhere starts over; the walk stays
 * inside the scope, the deepest directory holding the files opened in order — over a tree
 * whose directories are read as pieces (a directory's entries in name order, which is
 * readdir's and find's).
 *
 * Files are named by their path (components). The traversal is pre-order with each
 * directory's entries in name order; comparing two paths component by component (an
 * ancestor first) gives that order without reading anything. A walk reads directories in
 * chunks (`list`: the entries after a name), keeps its place between top-ups, and looks
 * at MAX_WALK entries at most per top-up. Everything happens after the open was answered,
 * one open at a time (a queue), and is only a hint: an error stops that step, nothing else.
 */
import { FileType, type Entry2 } from '../format/v2/dir.js'
import { AheadWindow, MAX_WALK, NEAR_FILES, type TreeAheadCounters, type TreeAheadOptions } from './treeahead.js'

/** Entries read from a directory at a time by the walk. */
const CHUNK = 256
/** Opens waiting for their step at most (more are dropped: the readahead is a hint). */
const MAX_QUEUED = 256

/** What the readahead needs from a format 2 mount for one generation. */
export interface TreeAhead2Source {
  /** Up to `limit` entries of the directory at `dir` (components; its entry `ref` when known) after the name `after` (all: null), and whether more follow. */
  list(dir: readonly Buffer[], ref: Entry2 | null, after: Buffer | null, limit: number): Promise<{ entries: Entry2[]; more: boolean }>
  /** The units of regular file `e` (at `path`) that are on tape, with their sizes. */
  unitsOnTape(path: readonly Buffer[], e: Entry2): Promise<Array<{ key: string; bytes: number }>>
  /** Asks for `keys`, ahead of any reader. */
  ask(keys: string[]): void
}

type Path = readonly Buffer[]

/** -1, 0 or 1: `a` before, at or after `b` in pre-order (names in byte order; an ancestor first). */
export function comparePaths(a: Path, b: Path): number {
  const n = Math.min(a.length, b.length)
  for (let k = 0; k < n; k++) {
    const c = Buffer.compare(a[k]!, b[k]!)
    if (c) return c
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

const keyOf = (p: Path): string => p.map((c) => c.toString('latin1')).join('/')

/** The readahead of one generation of a format 2 mount. */
export class TreeAhead2 {
  private readonly w: AheadWindow<string>
  private last: Path | null = null
  /** The last file taken into the window (the walk goes on after it); null: none yet. */
  private frontier: Path | null = null
  /** The walk from the frontier, kept between top-ups (null: start one from the frontier). */
  private walk: AsyncGenerator<{ path: Path; e: Entry2 }> | null = null
  /** Components of the scope directory (see treeahead.ts); null: none yet. */
  private scope: Path | null = null
  private done = false
  private queue: Promise<void> = Promise.resolve()
  private queued = 0

  constructor(
    private readonly src: TreeAhead2Source,
    o: TreeAheadOptions,
  ) {
    this.w = new AheadWindow(o)
  }

  get counters(): TreeAheadCounters {
    return this.w.counters
  }

  /** Regular file `path` (components) was opened: its step runs after the steps before it. */
  opened(path: Path): void {
    if (this.w.o.maxUnits <= 0 || this.queued >= MAX_QUEUED) return
    this.queued++
    this.queue = this.queue
      // a macrotask later: the open's reply goes to the kernel first, the hint after it
      .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
      .then(() => this.step(path))
      .catch(() => {
        // a hint only: a directory or map that cannot be read stops this walk (the reads say what is wrong)
        this.stopWalk()
        this.done = true
      })
      .finally(() => void this.queued--)
  }

  /** Resolves once every open so far was taken into account (tests, benches). */
  settled(): Promise<void> {
    return this.queue
  }

  private async step(p: Path): Promise<void> {
    const key = keyOf(p)
    let inOrder = this.w.has(key)
    if (!inOrder && this.last) {
      const c = comparePaths(this.last, p)
      if (c < 0) inOrder = await this.within(this.last, key, NEAR_FILES)
      else if (c > 0) inOrder = await this.within(p, keyOf(this.last), NEAR_FILES)
    }
    if (!this.w.counted(key, inOrder, !this.last)) this.reset()
    const dir = p.slice(0, -1)
    let scope: Path = dir
    if (this.scope) {
      let n = 0
      while (n < this.scope.length && n < dir.length && this.scope[n]!.equals(dir[n]!)) n++
      scope = this.scope.slice(0, n)
    }
    if (!this.scope || scope.length !== this.scope.length) {
      this.scope = scope
      this.done = false // wider: the walk goes on past where the narrower one ended
      this.stopWalk()
    }
    this.last = p
    if (this.w.streak < 2) return
    if (!this.frontier) this.frontier = p
    if (!this.done && this.w.wantsMore) await this.fill()
  }

  private reset(): void {
    this.frontier = null
    this.scope = null
    this.done = false
    this.stopWalk()
  }

  private stopWalk(): void {
    void this.walk?.return(undefined)
    this.walk = null
  }

  private async fill(): Promise<void> {
    const ask: string[] = []
    const walk = (this.walk ??= this.after(this.frontier!, this.scope!.length))
    for (let looked = 0; looked < MAX_WALK; looked++) {
      const r = await walk.next()
      if (r.done) {
        this.done = true
        this.walk = null
        break
      }
      const { path, e } = r.value
      if (e.type !== FileType.File) continue
      this.frontier = path
      this.w.take(keyOf(path), await this.src.unitsOnTape(path, e), ask)
      if (this.w.full) break
    }
    if (ask.length) {
      this.w.asked(ask)
      this.src.ask(ask)
    }
  }

  /** Whether file `b` (its key) comes within `n` files after `a` in traversal order (MAX_WALK entries looked at at most). */
  private async within(a: Path, b: string, n: number): Promise<boolean> {
    const walk = this.after(a, 0)
    try {
      let files = 0
      for (let looked = 0; looked < MAX_WALK; looked++) {
        const r = await walk.next()
        if (r.done) return false
        if (r.value.e.type !== FileType.File) continue
        if (keyOf(r.value.path) === b) return true
        if (++files >= n) return false
      }
      return false
    } finally {
      void walk.return(undefined)
    }
  }

  /** Every entry after `from` in pre-order inside the directory of its first `scopeLen` components. */
  private async *after(from: Path, scopeLen: number): AsyncGenerator<{ path: Path; e: Entry2 }> {
    for (let level = from.length - 1; level >= scopeLen; level--) yield* this.children(from.slice(0, level), null, from[level]!)
  }

  /** The entries of directory `dir` (its entry `ref` when known) after the name `after` (null: all), each followed by its subtree. */
  private async *children(dir: Path, ref: Entry2 | null, after: Buffer | null): AsyncGenerator<{ path: Path; e: Entry2 }> {
    for (let from = after; ; ) {
      const { entries, more } = await this.src.list(dir, ref, from, CHUNK)
      for (const e of entries) {
        const path = [...dir, e.name]
        yield { path, e }
        if (e.type === FileType.Dir && e.dir) yield* this.children(path, e, null)
      }
      if (!more || entries.length === 0) return
      from = entries[entries.length - 1]!.name
    }
  }
}
