import { ByteWriter } from '../format/bytes.js'
import { type PieceRef, type Xxh64Fn, PieceKind, finishPiece, pieceWriter } from '../format/v2/common.js'
import {
  type DirOp,
  type Entry2,
  type IndexChild,
  DIR_MAX_BYTES,
  DIR_MAX_ENTRIES,
  INDEX_MAX_CHILDREN,
  PAGE_CUT_MASK,
  PAGE_MAX_ENTRIES,
  PAGE_MIN_ENTRIES,
  deltaWorthIt,
  encodeDirDelta,
  encodeDirIndex,
  entryBytes,
  groupIndexChildren,
  writeEntry,
} from '../format/v2/dir.js'
import type { PackWriter } from './packs.js'
import { type DecodedPiece, type PieceReader, Workarounds, isPieceFailure } from './reader.js'
import type { DirRef } from './tree-reader.js'

export interface TreeWriterOptions {
  /** XXH64 with the repository's seed (page cuts, §2.13.5, §2.22): Repo2.pageCut. No default, so no writer cuts with seed 0 by omission. */
  xxh64: Xxh64Fn
  /** Write DIRDELTAs (config `defaults.dirDelta`, default true). */
  dirDelta?: boolean
  /**
   * Never reuse a previous DIRDELTA (bfs merge, format.md §2.20.5): a directory or page whose
   * previous piece is a delta is written as a DIR even when its entries are unchanged (only a
   * previous DIR, or a DIRINDEX node, is reused). Implies no new DIRDELTAs.
   */
  foldDeltas?: boolean
}

export interface TreeWriterStats {
  /** Directories closed (empty ones included). */
  dirs: number
  /** Pieces reused from the previous generation (a ref copied, nothing written). */
  reused: number
  /** DIR pieces written (whole directories and pages). */
  dirPieces: number
  /** DIRDELTA pieces written. */
  deltaPieces: number
  /** DIRINDEX pieces written. */
  indexPieces: number
  /** DIRDELTAs written again as DIRs (`foldDeltas`). */
  deltasFolded: number
}

interface PrevPage {
  ref: PieceRef
  entries: number
}

const hex = (b: Buffer): string => b.toString('hex')

/**
 * Writes a generation's directory pieces (format.md §2.13) in the order a streaming walk
 * produces them: a directory is opened, its entries added in strictly increasing name order
 * (a subdirectory's entry after that subdirectory was closed: post-order, so children are
 * written before parents, R1), and closed, which gives the DirRef its parent's entry holds
 * (null for an empty directory).
 *
 * Each directory or page follows the writer rule of §2.13.3 against the previous
 * generation's: equal entries → the previous PieceRef is copied (nothing written); else a
 * cumulative DIRDELTA over the previous DIR (or the previous delta's base) when that base has
 * ≥ 64 entries and the delta is ≤ ¼ of it; else a DIR. Big directories are cut into pages
 * (§2.13.5) as their entries arrive, each page compared with the previous page of the same
 * first name, and indexed by DIRINDEX nodes (an index node equal to one of the previous
 * generation's is reused too).
 *
 * Memory: per open directory, the entries of its current page (≤ 8,192, ≤ 256 KiB encoded) and
 * one index child per written page; the previous generation's pieces come through the
 * PieceReader's bounded cache. So a walk holds its open path, never the tree.
 */
export class TreeWriter {
  readonly stats: TreeWriterStats = { dirs: 0, reused: 0, dirPieces: 0, deltaPieces: 0, indexPieces: 0, deltasFolded: 0 }
  /**
   * Previous-generation pieces that could not be read (damaged, missing, EIO): the directory
   * or page was written afresh instead of reused or delta-coded (§2.20.10; the backup warns
   * with the count).
   */
  readonly unreadable = new Workarounds()
  readonly xxh64: Xxh64Fn
  readonly dirDelta: boolean
  readonly foldDeltas: boolean

  constructor(
    readonly packs: PackWriter,
    readonly pieces: PieceReader,
    opts: TreeWriterOptions,
  ) {
    this.xxh64 = opts.xxh64
    this.foldDeltas = opts.foldDeltas ?? false
    this.dirDelta = !this.foldDeltas && (opts.dirDelta ?? true)
  }

  /** Starts a directory whose previous generation was `prev` (null: new, or empty then). */
  openDir(prev: DirRef | null): DirWriter {
    return new DirWriter(this, prev)
  }

  /** A whole directory at once: its entries in name order (any iterable). */
  async writeDir(entries: Iterable<Entry2> | AsyncIterable<Entry2>, prev: DirRef | null): Promise<DirRef | null> {
    const w = this.openDir(prev)
    for await (const e of entries) await w.add(e)
    return w.close()
  }

  /** A previous-generation piece, or null (counted in `unreadable`) when it cannot be read. */
  async prevPiece<K extends DecodedPiece['kind']>(ref: PieceRef, kinds: readonly K[], role: string): Promise<Extract<DecodedPiece, { kind: K }> | null> {
    try {
      return await this.pieces.pieceOf(ref, kinds, role)
    } catch (err) {
      if (!isPieceFailure(err)) throw err
      this.unreadable.note(err)
      return null
    }
  }

  /** Appends a piece unless `known` (pieces of the previous generation seen on the way) holds its id. */
  put(payload: Buffer, kind: 'dir' | 'delta' | 'index', known: Map<string, PieceRef>): PieceRef {
    const id = this.packs.idOf(payload)
    const old = known.get(hex(id))
    if (old) {
      this.stats.reused++
      return old
    }
    if (kind === 'dir') this.stats.dirPieces++
    else if (kind === 'delta') this.stats.deltaPieces++
    else this.stats.indexPieces++
    return this.packs.add(payload, id)
  }
}

/**
 * Encodings of consecutive entries: one buffer and the offsets where each starts (the last
 * offset is the end). `at(k)` is a view of entry k's bytes.
 */
interface EncodedList {
  bytes: Buffer
  offs: readonly number[]
}
const encAt = (l: EncodedList, k: number): Buffer => l.bytes.subarray(l.offs[k]!, l.offs[k + 1]!)

/** One directory being written (see TreeWriter). */
export class DirWriter {
  /** Entries not yet written into a page, their encodings back to back in `w`, and where each starts in it (+ the end). */
  private buf: Entry2[] = []
  private w = new ByteWriter(16 << 10)
  private offs: number[] = [0]
  /** Where pages end in `buf` (exclusive), as the cut rule found them. */
  private cuts: number[] = []
  private pageCount = 0
  private pageBytes = 0
  /** Beyond one DIR: pages are written as they complete. */
  private paged = false
  private total = 0
  private last: Buffer | null = null
  private readonly children: IndexChild[] = []
  private closed = false
  /** Previous generation: pages by first name (hex; '' the first), and every piece seen by id. */
  private prevPages: Map<string, PrevPage> | null = null
  private readonly known = new Map<string, PieceRef>()

  constructor(
    private readonly t: TreeWriter,
    private readonly prev: DirRef | null,
  ) {}

  /**
   * Adds the next entry (names strictly increasing). Returns a promise when it wrote pages
   * (await every add before the next one: `await w.add(e)` in any case).
   */
  add(e: Entry2): Promise<void> | undefined {
    if (this.closed) return Promise.reject(new Error('directory writer: add after close'))
    if (this.last && Buffer.compare(this.last, e.name) >= 0) return Promise.reject(new RangeError(`directory writer: ${JSON.stringify(e.name.toString('latin1'))} does not come after ${JSON.stringify(this.last.toString('latin1'))}`))
    const start = this.w.length
    try {
      writeEntry(this.w, e)
    } catch (err) {
      return Promise.reject(err)
    }
    this.last = e.name
    const size = this.w.length - start
    // the page cut of §2.13.5, run on every directory (it decides only once the directory is paged)
    if (this.pageCount > 0 && this.pageBytes + size > DIR_MAX_BYTES) this.cut(this.buf.length)
    this.buf.push(e)
    this.offs.push(this.w.length)
    this.total++
    this.pageCount++
    this.pageBytes += size
    if ((this.pageCount >= PAGE_MIN_ENTRIES && (this.t.xxh64(e.name) & PAGE_CUT_MASK) === 0n) || this.pageCount >= PAGE_MAX_ENTRIES) this.cut(this.buf.length)
    // not paged yet: `w` holds every entry so far
    if (!this.paged && (this.total > DIR_MAX_ENTRIES || this.w.length > DIR_MAX_BYTES)) this.paged = true
    if (this.paged && this.cuts.length) return this.writePages()
    return undefined
  }

  private cut(at: number): void {
    this.cuts.push(at)
    this.pageCount = 0
    this.pageBytes = 0
  }

  /** Writes the complete pages at the front of `buf`, and keeps the rest. */
  private async writePages(): Promise<void> {
    if (!this.prevPages) await this.loadPrevIndex()
    const all = this.w.finish()
    let from = 0
    for (const to of this.cuts) {
      const base = this.offs[from]!
      await this.writePage(this.buf.slice(from, to), { bytes: all.subarray(base, this.offs[to]!), offs: this.offs.slice(from, to + 1).map((o) => o - base) })
      from = to
    }
    const rest = all.subarray(this.offs[from]!)
    const w = new ByteWriter(Math.max(16 << 10, rest.length * 2))
    w.bytes(rest)
    const base = this.offs[from]!
    this.offs = this.offs.slice(from).map((o) => o - base)
    this.w = w
    this.buf = this.buf.slice(from)
    this.cuts = []
    await this.t.packs.settle()
  }

  private async writePage(entries: Entry2[], enc: EncodedList): Promise<void> {
    const firstName = this.children.length === 0 ? Buffer.alloc(0) : entries[0]!.name
    const prev = this.prevPages!.get(hex(firstName)) ?? null
    const ref = await this.writeList(entries, enc, prev)
    this.children.push({ firstName, ref, entries: entries.length })
  }

  /**
   * The writer rule of §2.13.3 for one list (a whole directory or a page) against the
   * previous generation's piece of the same place.
   */
  private async writeList(entries: Entry2[], enc: EncodedList, prev: PrevPage | null): Promise<PieceRef> {
    const w = pieceWriter(PieceKind.Dir, 16 + enc.bytes.length)
    w.varint(entries.length).bytes(enc.bytes)
    const dirPayload = finishPiece(w)
    if (!prev) return this.t.put(dirPayload, 'dir', this.known)
    const p = await this.t.prevPiece(prev.ref, [PieceKind.Dir, PieceKind.DirDelta], 'previous directory page')
    if (p) {
      this.known.set(hex(prev.ref.id), prev.ref)
      // rule 1: the same entries as the previous generation's (resolved) list
      if (p.kind === PieceKind.Dir ? this.t.packs.idOf(dirPayload).equals(prev.ref.id) : !this.t.foldDeltas && sameList(p.entries, entries, enc)) {
        this.t.stats.reused++
        return prev.ref
      }
      if (p.kind === PieceKind.DirDelta && this.t.foldDeltas) this.t.stats.deltasFolded++
      // rule 2: a cumulative delta over the base
      if (this.t.dirDelta) {
        const baseRef = p.kind === PieceKind.Dir ? prev.ref : p.delta.base
        const base = p.kind === PieceKind.Dir ? p : await this.t.prevPiece(baseRef, [PieceKind.Dir], 'DIRDELTA base')
        if (!base) return this.t.put(dirPayload, 'dir', this.known)
        this.known.set(hex(baseRef.id), baseRef)
        const ops = diffEncoded(base.entries, entries, enc)
        // the base itself again (a delta with no ops): its ref is the answer (equal bytes, equal id)
        if (ops.length === 0) {
          this.t.stats.reused++
          return baseRef
        }
        if (base.entries.length >= 64) {
          const deltaPayload = encodeDirDelta({ base: baseRef, resultEntries: entries.length, ops })
          if (deltaWorthIt(base.entries.length, (base as DecodedPiece).rawLen, deltaPayload.length)) return this.t.put(deltaPayload, 'delta', this.known)
        }
      }
    }
    return this.t.put(dirPayload, 'dir', this.known)
  }

  /** The previous generation's pages by first name (a DIRINDEX's index nodes only are read), and its index nodes by id. */
  private async loadPrevIndex(): Promise<void> {
    this.prevPages = new Map()
    if (!this.prev) return
    const top = await this.t.prevPiece(this.prev.child, [PieceKind.Dir, PieceKind.DirDelta, PieceKind.DirIndex], 'previous directory')
    if (top?.kind !== PieceKind.DirIndex) return
    this.known.set(hex(this.prev.child.id), this.prev.child)
    const visit = async (p: Extract<DecodedPiece, { kind: typeof PieceKind.DirIndex }>, lo: Buffer): Promise<void> => {
      const kids = p.index.children
      for (let i = 0; i < kids.length; i++) {
        const c = kids[i]!
        const first = c.firstName.length ? c.firstName : lo
        if (p.index.level === 0) this.prevPages!.set(hex(first), { ref: c.ref, entries: c.entries })
        else {
          const sub = await this.t.prevPiece(c.ref, [PieceKind.DirIndex], 'DIRINDEX child')
          if (!sub) continue // its pages are written afresh
          this.known.set(hex(c.ref.id), c.ref)
          await visit(sub, first)
        }
      }
    }
    await visit(top, Buffer.alloc(0))
  }

  /** Finishes the directory: its DirRef, or null when it has no entries. */
  async close(): Promise<DirRef | null> {
    if (this.closed) throw new Error('directory writer: closed twice')
    this.closed = true
    this.t.stats.dirs++
    if (this.total === 0) return null
    if (!this.paged) {
      let prev: PrevPage | null = null
      if (this.prev) {
        const p = await this.t.prevPiece(this.prev.child, [PieceKind.Dir, PieceKind.DirDelta, PieceKind.DirIndex], 'previous directory')
        if (p && p.kind !== PieceKind.DirIndex) prev = { ref: this.prev.child, entries: this.prev.entries }
      }
      const ref = await this.writeList(this.buf, { bytes: this.w.finish(), offs: this.offs }, prev)
      await this.t.packs.settle()
      return { child: ref, entries: this.total }
    }
    if (this.buf.length) this.cuts.push(this.buf.length)
    if (this.cuts.length) await this.writePages()
    // index levels (§2.13.5): group while more than 4,096 children, then one root node
    let level = 0
    let kids = this.children
    while (kids.length > INDEX_MAX_CHILDREN) {
      const next: IndexChild[] = []
      for (const g of groupIndexChildren(kids, this.t.xxh64)) next.push({ firstName: g[0]!.firstName, ref: this.indexNode(level, g), entries: g.reduce((s, c) => s + c.entries, 0) })
      kids = next
      level++
    }
    const ref = this.indexNode(level, kids)
    await this.t.packs.settle()
    return { child: ref, entries: this.total }
  }

  private indexNode(level: number, kids: IndexChild[]): PieceRef {
    const children = kids.map((c, i) => (i === 0 ? { ...c, firstName: Buffer.alloc(0) } : c))
    const totalEntries = children.reduce((s, c) => s + c.entries, 0)
    return this.t.put(encodeDirIndex({ level, totalEntries, children }), 'index', this.known)
  }
}

/** Whether `list` encodes to exactly the entries `enc`. */
function sameList(list: readonly Entry2[], next: readonly Entry2[], enc: EncodedList): boolean {
  if (list.length !== enc.offs.length - 1) return false
  for (let i = 0; i < list.length; i++) if (list[i] !== next[i] && !entryBytes(list[i]!).equals(encAt(enc, i))) return false
  return true
}

/** format/v2/dir.ts diffDir with the new side already encoded. */
function diffEncoded(base: readonly Entry2[], next: readonly Entry2[], enc: EncodedList): DirOp[] {
  const ops: DirOp[] = []
  let i = 0
  let j = 0
  while (i < base.length || j < next.length) {
    const c = i >= base.length ? 1 : j >= next.length ? -1 : Buffer.compare(base[i]!.name, next[j]!.name)
    if (c < 0) ops.push({ op: 'delete', name: base[i++]!.name })
    else if (c > 0) ops.push({ op: 'put', entry: next[j++]! })
    else {
      // (the same object: an unchanged entry the backup took from the previous page as it is)
      if (base[i] !== next[j] && !entryBytes(base[i]!).equals(encAt(enc, j))) ops.push({ op: 'put', entry: next[j]! })
      i++
      j++
    }
  }
  return ops
}
