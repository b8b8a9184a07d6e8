import { FormatError } from '../format/errors.js'
import { type PieceRef, PieceKind, comparePieceRefs } from '../format/v2/common.js'
import { type DirIndex, type Entry2, FileType, findEntry, findIndexChild } from '../format/v2/dir.js'
import type { PieceReader } from './reader.js'

/** A non-empty directory as its entry holds it: the piece (DIR, DIRDELTA or DIRINDEX) and its entry count. */
export interface DirRef {
  child: PieceRef
  entries: number
}

/** One page of a directory: its sorted entries (a DIR, or a DIRDELTA applied to its base). */
export interface DirPage {
  entries: Entry2[]
}

const cmp = Buffer.compare
const show = (b: Buffer): string => JSON.stringify(b.toString('latin1').slice(0, 64))

/**
 * Reads a generation's tree lazily (format.md §2.13): a directory is its DirRef; a lookup
 * binary-searches a DIRINDEX's children (level by level) and then the page, so it loads one
 * piece per index level plus the page (plus a DIRDELTA's base); a listing walks the pages in
 * name order from a start name. Every piece is checked against the place it is read from:
 * kind and level, entry counts (the entry's `entries`, the index's `totalEntries` and per
 * child `entries`), the name range a DIRINDEX gives each child, and R1 (a child is written
 * before its parent), so a damaged or crafted tree is a FormatError, never a loop or a wrong
 * entry.
 */
export class TreeReader {
  constructor(readonly pieces: PieceReader) {}

  /** The entry named `name` in `dir` (null: an empty directory), or null. */
  async lookup(dir: DirRef | null, name: Buffer): Promise<Entry2 | null> {
    if (!dir) return null
    for await (const page of this.pages(dir, name)) {
      const i = findEntry(page.entries, name)
      return i < 0 ? null : page.entries[i]!
    }
    return null
  }

  /**
   * The entry at `path` (components, no empty ones) below `root` (the generation's root
   * entry), looked up component by component; null if a component is missing or a non-final
   * one is not a directory. An empty path is the root itself.
   */
  async lookupPath(root: Entry2, path: readonly Buffer[]): Promise<Entry2 | null> {
    let e: Entry2 = root
    for (const name of path) {
      if (e.type !== FileType.Dir) return null
      const next = await this.lookup(e.dir, name)
      if (!next) return null
      e = next
    }
    return e
  }

  /**
   * Up to `limit` entries of `dir` whose names come after `after` (all when null), in name
   * order, and whether more follow: a listing in pages that loads only the pieces it shows.
   */
  async list(dir: DirRef | null, opts: { after?: Buffer | null; limit?: number } = {}): Promise<{ entries: Entry2[]; more: boolean }> {
    const limit = opts.limit ?? Infinity
    const after = opts.after ?? null
    const out: Entry2[] = []
    if (!dir) return { entries: out, more: false }
    for await (const page of this.pages(dir, after)) {
      let i = 0
      if (after) {
        // first entry > after
        let lo = 0
        let hi = page.entries.length
        while (lo < hi) {
          const mid = (lo + hi) >>> 1
          if (cmp(page.entries[mid]!.name, after) <= 0) lo = mid + 1
          else hi = mid
        }
        i = lo
      }
      for (; i < page.entries.length; i++) {
        if (out.length >= limit) return { entries: out, more: true }
        out.push(page.entries[i]!)
      }
    }
    return { entries: out, more: false }
  }

  /**
   * Up to `limit` entries of `dir` from position `index` (0-based, in name order): a listing
   * by offset, as FUSE's readdir asks for it. Pages before the one holding `index` are skipped
   * by the index's entry counts, without being read.
   */
  async listAt(dir: DirRef | null, index: number, limit: number): Promise<Entry2[]> {
    const out: Entry2[] = []
    if (!dir || index >= dir.entries || limit <= 0) return out
    let skip = Math.max(0, index)
    for await (const page of this.walk(dir.child, dir.entries, null, null, null, null, 'directory', skip)) {
      // the walk starts at the page holding `index`; `skip` counts what precedes it in that page
      const from = page.skipped
      for (let i = from; i < page.entries.length && out.length < limit; i++) out.push(page.entries[i]!)
      if (out.length >= limit) break
      skip = 0
    }
    return out
  }

  /** Every entry of `dir` in name order, one page in memory at a time (the backup's merge with the previous generation). */
  async *entries(dir: DirRef | null): AsyncGenerator<Entry2> {
    if (!dir) return
    for await (const page of this.pages(dir, null)) yield* page.entries
  }

  /**
   * The pages of `dir` in name order, starting with the one that holds `start` (every page
   * when null). Loads each index node on the way once and each page when it is reached.
   */
  async *pages(dir: DirRef, start: Buffer | null): AsyncGenerator<DirPage> {
    yield* this.walk(dir.child, dir.entries, null, null, null, start, 'directory')
  }

  /**
   * pages() without promises, when the piece reader can read synchronously
   * (`PieceReader.canReadSync`: the backup's merge); the same checks. The pages are not
   * cached but pinned (`visitOnce`): `pinned` gets each page's ref, for
   * `PieceReader.unpin` once the caller is done with them.
   */
  *pagesSync(dir: DirRef, pinned: PieceRef[]): Generator<DirPage> {
    yield* this.walkSync(dir.child, dir.entries, null, null, null, 'directory', pinned)
  }

  /** The kinds of piece a node may be. */
  private static kinds(level: number | null): Array<typeof PieceKind.Dir | typeof PieceKind.DirDelta | typeof PieceKind.DirIndex> {
    return level === null ? [PieceKind.Dir, PieceKind.DirDelta, PieceKind.DirIndex] : level < 0 ? [PieceKind.Dir, PieceKind.DirDelta] : [PieceKind.DirIndex]
  }

  /** A FormatError about node `ref` in its `role`. */
  private bad(ref: PieceRef, role: string, m: string): never {
    throw new FormatError('BAD_VALUE', `${this.pieces.where(ref)}: ${role} ${m}`)
  }

  /** The checks of a DIRINDEX node against its parent. */
  private checkIndex(ix: DirIndex, ref: PieceRef, entries: number, level: number | null, lo: Buffer | null, hi: Buffer | null, role: string): void {
    if (level !== null && ix.level !== level) this.bad(ref, role, `is a level ${ix.level} DIRINDEX where level ${level} is expected`)
    if (ix.totalEntries !== entries) this.bad(ref, role, `holds ${ix.totalEntries} entries, its parent says ${entries}`)
    const kids = ix.children
    // names inside the parent's range: every first name but the (empty) first lies in (lo, hi)
    if (kids.length > 1 && ((lo && cmp(kids[1]!.firstName, lo) <= 0) || (hi && cmp(kids[kids.length - 1]!.firstName, hi) >= 0))) this.bad(ref, role, "has children outside its parent's name range")
  }

  /** The checks of a page (DIR or DIRDELTA) against its parent. */
  private checkPage(list: Entry2[], ref: PieceRef, entries: number, lo: Buffer | null, hi: Buffer | null, role: string): void {
    if (list.length !== entries) this.bad(ref, role, `holds ${list.length} entries, its parent says ${entries}`)
    if (lo && !list[0]!.name.equals(lo)) this.bad(ref, role, `starts with ${show(list[0]!.name)}, its index says ${show(lo)}`)
    if (hi && cmp(list[list.length - 1]!.name, hi) >= 0) this.bad(ref, role, `reaches ${show(list[list.length - 1]!.name)}, into the next page's names`)
  }

  /**
   * One node: `level` null for the directory's own piece (any kind), else the DIRINDEX level
   * expected (−1: a page). `lo`/`hi`: the name range the parent gives it (null: open).
   */
  private async *walk(ref: PieceRef, entries: number, level: number | null, lo: Buffer | null, hi: Buffer | null, start: Buffer | null, role: string, skip = 0): AsyncGenerator<DirPage & { skipped: number }> {
    const p = await this.pieces.pieceOf(ref, TreeReader.kinds(level), role)
    if (p.kind === PieceKind.DirIndex) {
      const ix = p.index
      this.checkIndex(ix, ref, entries, level, lo, hi, role)
      const kids = ix.children
      let i = start ? findIndexChild(kids, start) : 0
      // by position: skip whole children by their entry counts
      while (skip > 0 && i < kids.length - 1 && skip >= kids[i]!.entries) skip -= kids[i++]!.entries
      for (; i < kids.length; i++) {
        const c = kids[i]!
        if (comparePieceRefs(c.ref, ref) >= 0) this.bad(ref, role, `child ${i} is not written before it (R1)`)
        const clo = c.firstName.length ? c.firstName : lo
        const chi = i + 1 < kids.length ? kids[i + 1]!.firstName : hi
        yield* this.walk(c.ref, c.entries, ix.level - 1, clo, chi, start, `page ${i} of a DIRINDEX`, skip)
        start = null
        skip = 0
      }
      return
    }
    const list = p.entries
    this.checkPage(list, ref, entries, lo, hi, role)
    yield { entries: list, skipped: Math.min(skip, list.length) }
  }

  /** walk() without promises, every page from the first (pagesSync). */
  private *walkSync(ref: PieceRef, entries: number, level: number | null, lo: Buffer | null, hi: Buffer | null, role: string, pinned: PieceRef[]): Generator<DirPage> {
    const p = this.pieces.pieceOfSync(ref, TreeReader.kinds(level), role, true)
    if (p.kind !== PieceKind.DirIndex) pinned.push(ref)
    if (p.kind === PieceKind.DirIndex) {
      const ix = p.index
      this.checkIndex(ix, ref, entries, level, lo, hi, role)
      const kids = ix.children
      for (let i = 0; i < kids.length; i++) {
        const c = kids[i]!
        if (comparePieceRefs(c.ref, ref) >= 0) this.bad(ref, role, `child ${i} is not written before it (R1)`)
        const clo = c.firstName.length ? c.firstName : lo
        const chi = i + 1 < kids.length ? kids[i + 1]!.firstName : hi
        yield* this.walkSync(c.ref, c.entries, ix.level - 1, clo, chi, `page ${i} of a DIRINDEX`, pinned)
      }
      return
    }
    this.checkPage(p.entries, ref, entries, lo, hi, role)
    yield { entries: p.entries }
  }
}

/**
 * The previous generation's listing of one directory as a cursor for the backup's merge of
 * two sorted lists: `seek(name)` (names strictly increasing) returns the previous entry of
 * that name or null, passing over the entries before it (`gone` counts those: deleted since).
 * Reads one page at a time through `TreeReader.entries`.
 */
export class PrevCursor {
  /** The pages, the current one, and the position in it (entries are taken from a page synchronously). */
  private readonly it: AsyncIterator<DirPage> | null
  /** The pages read synchronously (a PieceReader that can: then `it` is not used). */
  private readonly syncIt: Iterator<DirPage> | null
  private page: Entry2[] = []
  private at = 0
  private ended: boolean
  private last: Buffer | null = null
  /** Previous entries passed over without a match (deleted or renamed since). */
  gone = 0

  /** The pages read synchronously, pinned in the PieceReader until release(). */
  private readonly pinned: PieceRef[] = []

  constructor(private readonly reader: TreeReader, dir: DirRef | null) {
    const sync = !!dir && reader.pieces.canReadSync
    this.syncIt = sync ? reader.pagesSync(dir, this.pinned) : null
    this.it = dir && !sync ? reader.pages(dir, null)[Symbol.asyncIterator]() : null
    this.ended = !dir
  }

  /** The next page taken as the current one; false at the end. */
  private took(r: IteratorResult<DirPage>): boolean {
    if (r.done) {
      this.ended = true
      this.page = []
      return false
    }
    this.page = r.value.entries
    this.at = 0
    return true
  }

  /** The current entry, the next page read when this one is done; null at the end. */
  private async cur(): Promise<Entry2 | null> {
    while (this.at >= this.page.length) {
      if (this.ended) return null
      if (!this.took(this.syncIt ? this.syncIt.next() : await this.it!.next())) return null
    }
    return this.page[this.at]!
  }

  /**
   * seek() without a promise when the answer lies in the page at hand (the common case), or
   * when pages are read synchronously (then always): undefined when it does not (the
   * current page is used up; nothing was consumed beyond it): then call seek().
   */
  seekSync(name: Buffer): Entry2 | null | undefined {
    if (this.last && Buffer.compare(this.last, name) >= 0) throw new RangeError('PrevCursor: names must be strictly increasing')
    if (this.ended && this.at >= this.page.length) {
      this.last = name
      return null
    }
    for (;;) {
      while (this.at < this.page.length) {
        const c = this.page[this.at]!
        const d = Buffer.compare(c.name, name)
        if (d > 0) {
          this.last = name
          return null
        }
        this.at++
        if (d === 0) {
          this.last = name
          return c
        }
        this.gone++
      }
      if (this.ended) {
        this.last = name
        return null
      }
      if (!this.syncIt) return undefined
      this.took(this.syncIt.next())
    }
  }

  async seek(name: Buffer): Promise<Entry2 | null> {
    if (this.last && Buffer.compare(this.last, name) >= 0) throw new RangeError('PrevCursor: names must be strictly increasing')
    this.last = name
    if (this.ended && this.at >= this.page.length) return null
    for (;;) {
      // within a page: no await
      const c = this.at < this.page.length ? this.page[this.at]! : await this.cur()
      if (!c) return null
      const d = Buffer.compare(c.name, name)
      if (d > 0) return null
      this.at++
      if (d === 0) return c
      this.gone++
    }
  }

  /** finish() without a promise (pages read synchronously), else undefined: call finish(). */
  finishSync(): number | undefined {
    if (!this.syncIt && !this.ended) return undefined
    for (;;) {
      this.gone += this.page.length - this.at
      this.at = this.page.length
      if (this.ended || !this.took(this.syncIt!.next())) return this.gone
    }
  }

  /** Unpins the pages read synchronously (once the directory they are the previous listing of is written). */
  release(): void {
    for (const r of this.pinned) this.reader.pieces.unpin(r)
    this.pinned.length = 0
  }

  /** Counts the entries after the last name sought (deleted since) and closes the listing. */
  async finish(): Promise<number> {
    while (await this.cur()) {
      this.gone += this.page.length - this.at
      this.at = this.page.length
    }
    return this.gone
  }
}
