/**
 * Readahead over the tree for a mount whose units are on tape (native-notes/tape.md
 * §"Reading through the commands and the mount", "Readahead over the tree").
 *
 * Readers that go through a tree in order — `find | xargs cat`, `cp -a`, `tar c`, `grep -r`
 * — open its files in traversal order (pre-order, each directory's entries in readdir
 * order, which is the catalog's). Eight of them wait for at most eight units at a time, and
 * the best order among eight random places on a tape still costs a long locate per unit
 * (6.5 simulated hours for 1,000 units against 3.2 for the same units known up front). Once
 * two opens follow each other in traversal order, this asks for the units on tape of the
 * files that come next, up to a window (units, and bytes: a quarter of the buffer cache),
 * and tops the window up as the opens move on; those requests are marked `ahead`, so the
 * scheduler orders them by cost alone and a waiting reader's own request keeps its turn
 * (it is promoted when a reader comes to wait for it). An open elsewhere (a user opening
 * one file, or jumping about) starts over: nothing more is asked for until opens are in
 * order again, and what was asked stays asked (at most one window).
 *
 * Pure bookkeeping over the catalog: the units of a file and where they are come from the
 * caller; no I/O here.
 */
import { EntryType, type CatalogIndex } from '../format/catalog.js'

/** Opens this many files apart (either way, in traversal order) still count as in order: parallel readers open out of step. */
export const NEAR_FILES = 16
/** Entries looked at per top-up at most, so that a tree of files already on disk does not hold the event loop. */
export const MAX_WALK = 1024

/** What the readahead needs from the mount for one generation. */
export interface TreeAheadSource {
  readonly cat: CatalogIndex
  /** The units of regular file `i` that are on tape (not in the cache, not on disk), with their sizes. */
  unitsOnTape(i: number): Array<{ key: string; bytes: number }>
  /** Asks for `keys`, ahead of any reader. */
  ask(keys: string[]): void
}

export interface TreeAheadOptions {
  /** Units asked for ahead at most (0: none). */
  maxUnits: number
  /** Bytes asked for ahead at most. */
  maxBytes: number
}

/** The entry after `i` in pre-order (a directory's children in catalog order) within directory `scope`'s subtree (default the root's), or -1 after its last. */
export function nextInTree(cat: CatalogIndex, i: number, scope = 0): number {
  if (cat.type[i] === EntryType.Dir && cat.childCount[i]! > 0) return cat.firstChild[i]!
  for (let x = i; x !== scope && x !== 0; x = cat.parent[x]!) {
    const p = cat.parent[x]!
    if (x + 1 < cat.firstChild[p]! + cat.childCount[p]!) return x + 1
  }
  return -1
}

/** The next regular file after `i` in pre-order within `scope`'s subtree, or -1 (looking at `limit` entries at most). */
export function nextFile(cat: CatalogIndex, i: number, limit = MAX_WALK, scope = 0): number {
  for (let x = nextInTree(cat, i, scope), n = 0; x >= 0 && n < limit; x = nextInTree(cat, x, scope), n++) if (cat.type[x] === EntryType.File) return x
  return -1
}

/** The deepest directory holding both `a` and `b` (entries; the root is its own parent). */
export function commonDir(cat: CatalogIndex, a: number, b: number): number {
  const up = new Set<number>()
  for (let x = a; ; x = cat.parent[x]!) {
    up.add(x)
    if (x === 0) break
  }
  let y = b
  while (!up.has(y)) y = cat.parent[y]!
  return cat.type[y] === EntryType.Dir ? y : cat.parent[y]!
}

/** Whether regular file `b` comes within `n` files after `a` in traversal order. */
function within(cat: CatalogIndex, a: number, b: number, n: number): boolean {
  for (let x = a, k = 0; k < n; k++) {
    x = nextFile(cat, x, MAX_WALK)
    if (x < 0) return false
    if (x === b) return true
  }
  return false
}

export interface TreeAheadCounters {
  /** Opens that followed the traversal order. */
  inOrder: number
  /** Opens elsewhere (the readahead started over). */
  elsewhere: number
  /** Units asked for ahead. */
  askedUnits: number
}

/**
 * The window of a readahead over the tree: the files (`F`: whatever names a file) whose units
 * were asked for ahead, in traversal order, with those units (consumed as opens reach them),
 * and what is left of the budget. Files with nothing on tape are not kept: a tree on disk
 * walked in order costs no memory here. Shared by format 1's TreeAhead and format 2's
 * TreeAhead2 (vfs/treeahead2.ts), whose walks differ.
 */
export class AheadWindow<F> {
  readonly counters: TreeAheadCounters = { inOrder: 0, elsewhere: 0, askedUnits: 0 }
  private readonly files = new Map<F, { keys: string[]; bytes: number }>()
  /** The units in the window (a unit shared by neighbours is asked for once). */
  private readonly keys = new Set<string>()
  private units = 0
  private bytes = 0
  /** Opens in a row in traversal order (the walk starts from the second). */
  streak = 0

  constructor(readonly o: TreeAheadOptions) {}

  /**
   * Counts an open of file `f` (`first`: none before it). In order: the window up to `f` is
   * consumed, true. Elsewhere: the window is cleared (what was asked stays asked), false: the
   * caller starts its walk over.
   */
  counted(f: F, inOrder: boolean, first: boolean): boolean {
    if (!inOrder) {
      if (!first) this.counters.elsewhere++
      this.streak = 1
      this.clear()
      return false
    }
    this.counters.inOrder++
    this.streak++
    if (this.files.has(f)) this.consume(f)
    return true
  }

  has(f: F): boolean {
    return this.files.has(f)
  }

  clear(): void {
    this.files.clear()
    this.keys.clear()
    this.units = 0
    this.bytes = 0
  }

  /** Files up to and including `f` in the window were reached by the readers. */
  consume(f: F): void {
    for (const [x, w] of this.files) {
      this.files.delete(x)
      for (const k of w.keys) this.keys.delete(k)
      this.units -= w.keys.length
      this.bytes -= w.bytes
      if (x === f) break
    }
  }

  /** Whether a top-up is due: a quarter of the window was used (fewer, larger requests). */
  get wantsMore(): boolean {
    return this.units <= (this.o.maxUnits * 3) / 4 && this.bytes <= (this.o.maxBytes * 3) / 4
  }

  /** Whether the window is full. */
  get full(): boolean {
    return this.units >= this.o.maxUnits || this.bytes >= this.o.maxBytes
  }

  /**
   * Takes file `f`'s units on tape into the window, what fits (a file larger than what is
   * left of the budget gets what fits: its reader asks for the rest); pushes those to ask
   * for onto `ask`.
   */
  take(f: F, onTape: ReadonlyArray<{ key: string; bytes: number }>, ask: string[]): void {
    const keys: string[] = []
    let bytes = 0
    for (const u of onTape) {
      if ((this.units + keys.length >= this.o.maxUnits || this.bytes + bytes + u.bytes > this.o.maxBytes) && (keys.length || this.units)) break
      if (this.keys.has(u.key)) continue
      this.keys.add(u.key)
      keys.push(u.key)
      bytes += u.bytes
    }
    if (keys.length) {
      ask.push(...keys)
      this.files.set(f, { keys, bytes })
      this.units += keys.length
      this.bytes += bytes
    }
  }

  /** Counts `keys` asked for (after the caller asked for them). */
  asked(keys: readonly string[]): void {
    this.counters.askedUnits += keys.length
  }
}

/** The readahead of one generation of a mount. */
export class TreeAhead {
  private readonly w: AheadWindow<number>
  private last = -1
  /** The last file taken into the window (the walk goes on after it); -1: none yet. */
  private frontier = -1
  /**
   * The directory the readers go through: the deepest one holding every file opened in
   * order since the last start-over (`cp -a mnt/sub` stays in sub/; `find` from the top
   * widens it to the root as its opens cross directories). The walk stays inside it.
   */
  private scope = -1
  private done = false

  constructor(
    private readonly src: TreeAheadSource,
    o: TreeAheadOptions,
  ) {
    this.w = new AheadWindow(o)
  }

  get counters(): TreeAheadCounters {
    return this.w.counters
  }

  /** Regular file `i` was opened. */
  opened(i: number): void {
    if (this.w.o.maxUnits <= 0) return
    const cat = this.src.cat
    const inOrder = this.w.has(i) || (this.last >= 0 && (within(cat, this.last, i, NEAR_FILES) || within(cat, i, this.last, NEAR_FILES)))
    if (!this.w.counted(i, inOrder, this.last < 0)) this.reset()
    const scope = this.scope < 0 ? cat.parent[i]! : commonDir(cat, this.scope, i)
    if (scope !== this.scope) {
      this.scope = scope
      this.done = false // wider: the walk goes on past where the narrower one ended
    }
    this.last = i
    if (this.w.streak < 2) return
    if (this.frontier < 0) this.frontier = i
    if (!this.done && this.w.wantsMore) this.fill()
  }

  private reset(): void {
    this.frontier = -1
    this.scope = -1
    this.done = false
  }

  private fill(): void {
    const cat = this.src.cat
    const ask: string[] = []
    let looked = 0
    for (let f = nextFile(cat, this.frontier, MAX_WALK, this.scope); ; f = nextFile(cat, f, MAX_WALK, this.scope)) {
      if (f < 0) {
        this.done = true
        break
      }
      this.frontier = f
      this.w.take(f, this.src.unitsOnTape(f), ask)
      if (this.w.full || ++looked >= MAX_WALK) break
    }
    if (ask.length) {
      this.w.asked(ask)
      this.src.ask(ask)
    }
  }
}
