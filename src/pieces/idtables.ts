import { FormatError } from '../format/errors.js'
import { type Identity, type PieceRef, type Xxh64Fn, PieceKind, compareIdentity, comparePieceRefs, identityBytes } from '../format/v2/common.js'
import { INDEX_MAX_CHILDREN } from '../format/v2/dir.js'
import {
  type IdIndexChild,
  type IdRow,
  type TableKind,
  IDPAGE_CUT_MASK,
  IDPAGE_MAX_ROWS,
  IDPAGE_MIN_ROWS,
  encodeIdIndex,
  encodeIdPage,
  findIdChild,
  findRow,
  groupIdChildren,
} from '../format/v2/idtable.js'
import type { PackWriter } from './packs.js'
import { type PieceReader, Workarounds, isPieceFailure } from './reader.js'

/** A stored identity table as the writer returns it: its top piece (the manifest's `links`, later `biIndex`) and its row count. */
export interface IdTableRef {
  ref: PieceRef
  rows: number
}

const hex = (b: Buffer): string => b.toString('hex')
const ZERO_ID: Identity = { srcDev: 0, srcInoHi: 0, srcInoLo: 0 }

/**
 * Writes an identity table (format.md §2.15: IDPAGE, IDINDEX) from rows added in strictly
 * increasing identity order: ≤ 4,096 rows are one IDPAGE, a bigger table is cut into pages as
 * the rows arrive (≥ 256 rows and an XXH64 cut, or 4,096) under IDINDEX levels. A page or index
 * node equal to one of the previous generation's table (`prev`) is not written again: its
 * PieceRef is reused (equal rows, equal bytes, equal id). Memory: one page of rows and one index
 * child per page.
 */
export class IdTableWriter {
  private page: IdRow[] = []
  private pageRows: IdRow[][] = []
  private readonly children: IdIndexChild[] = []
  private total = 0
  private last: Identity | null = null
  private known: Map<string, PieceRef> | null = null
  private closed = false
  /** Pieces written and reused. */
  readonly stats = { written: 0, reused: 0 }
  /** Pieces of the previous table that could not be read (not reused). */
  readonly unreadable = new Workarounds()

  constructor(
    private readonly packs: PackWriter,
    private readonly pieces: PieceReader,
    readonly tableKind: TableKind,
    /** The previous generation's table (the manifest's `links`), whose unchanged pieces are reused. */
    private readonly prev: PieceRef | null,
    /** XXH64 with the repository's seed (page cuts, §2.22): Repo2.pageCut. */
    private readonly xxh64: Xxh64Fn,
  ) {}

  async add(row: IdRow): Promise<void> {
    if (this.closed) throw new Error('identity table writer: add after close')
    if (this.last && compareIdentity(this.last, row) >= 0) throw new RangeError('identity table writer: identities must be strictly increasing')
    this.last = row
    this.page.push(row)
    this.total++
    if ((this.page.length >= IDPAGE_MIN_ROWS && (this.xxh64(identityBytes(row)) & IDPAGE_CUT_MASK) === 0n) || this.page.length >= IDPAGE_MAX_ROWS) {
      this.pageRows.push(this.page)
      this.page = []
      // pages are written once the table is known to be bigger than one IDPAGE
      if (this.total > IDPAGE_MAX_ROWS) await this.flushPages()
    }
  }

  private async loadKnown(): Promise<Map<string, PieceRef>> {
    if (this.known) return this.known
    const known = new Map<string, PieceRef>()
    if (this.prev) {
      // every piece whose ref may be copied is read and checked first (§2.20.10); an
      // unreadable one is written afresh
      const visit = async (ref: PieceRef): Promise<void> => {
        let p
        try {
          p = await this.pieces.pieceOf(ref, [PieceKind.IdPage, PieceKind.IdIndex], 'identity table piece')
        } catch (err) {
          if (!isPieceFailure(err)) throw err
          this.unreadable.note(err)
          return
        }
        known.set(hex(ref.id), ref)
        if (p.kind === PieceKind.IdIndex) for (const c of p.index.children) await visit(c.ref)
      }
      await visit(this.prev)
    }
    this.known = known
    return known
  }

  private put(payload: Buffer, known: Map<string, PieceRef>): PieceRef {
    const id = this.packs.idOf(payload)
    const old = known.get(hex(id))
    if (old) {
      this.stats.reused++
      return old
    }
    this.stats.written++
    return this.packs.add(payload, id)
  }

  private async flushPages(): Promise<void> {
    const known = await this.loadKnown()
    for (const rows of this.pageRows) {
      const ref = this.put(encodeIdPage({ tableKind: this.tableKind, rows }), known)
      const first = this.children.length === 0 ? ZERO_ID : rows[0]!
      this.children.push({ srcDev: first.srcDev, srcInoHi: first.srcInoHi, srcInoLo: first.srcInoLo, ref, rows: rows.length })
    }
    this.pageRows = []
    await this.packs.settle()
  }

  /** The table's ref, or null when it has no rows (the manifest's `links` is then null). */
  async close(): Promise<IdTableRef | null> {
    if (this.closed) throw new Error('identity table writer: closed twice')
    this.closed = true
    if (this.total === 0) return null
    if (this.page.length) this.pageRows.push(this.page)
    this.page = []
    if (this.total <= IDPAGE_MAX_ROWS) {
      const ref = this.put(encodeIdPage({ tableKind: this.tableKind, rows: this.pageRows.flat() }), await this.loadKnown())
      await this.packs.settle()
      return { ref, rows: this.total }
    }
    await this.flushPages()
    const known = await this.loadKnown()
    let level = 0
    let kids = this.children
    const node = (lvl: number, group: IdIndexChild[]): PieceRef => {
      const children = group.map((c, i) => (i === 0 ? { ...c, ...ZERO_ID } : c))
      return this.put(encodeIdIndex({ tableKind: this.tableKind, level: lvl, totalRows: group.reduce((s, c) => s + c.rows, 0), children }), known)
    }
    while (kids.length > INDEX_MAX_CHILDREN) {
      kids = groupIdChildren(kids, this.xxh64).map((g) => ({ srcDev: g[0]!.srcDev, srcInoHi: g[0]!.srcInoHi, srcInoLo: g[0]!.srcInoLo, ref: node(level, g), rows: g.reduce((s, c) => s + c.rows, 0) }))
      level++
    }
    const ref = node(level, kids)
    await this.packs.settle()
    return { ref, rows: this.total }
  }
}

/**
 * Reads an identity table lazily: `find` descends the IDINDEX levels by binary search to one
 * page (checking levels, row counts, identity ranges and R1), `rows` lists every row in order.
 */
export class IdTableReader {
  constructor(
    readonly pieces: PieceReader,
    readonly tableKind: TableKind,
  ) {}

  /** The row of identity `x` in the table whose top piece is `table` (the manifest's ref), or null. */
  async find(table: PieceRef | null, x: Identity): Promise<IdRow | null> {
    if (!table) return null
    for await (const rows of this.pages(table, x)) {
      const i = findRow(rows, x)
      return i < 0 ? null : rows[i]!
    }
    return null
  }

  async *rows(table: PieceRef | null): AsyncGenerator<IdRow> {
    if (!table) return
    for await (const rows of this.pages(table, null)) yield* rows
  }

  private async *pages(table: PieceRef, start: Identity | null): AsyncGenerator<IdRow[]> {
    yield* this.walk(table, null, null, null, null, start)
  }

  /** `rows`: what the parent says the node holds (null for the top: a manifest holds no count). */
  private async *walk(ref: PieceRef, rows: number | null, level: number | null, lo: Identity | null, hi: Identity | null, start: Identity | null): AsyncGenerator<IdRow[]> {
    const what = this.pieces.where(ref)
    const bad = (m: string): never => {
      throw new FormatError('BAD_VALUE', `${what}: identity table ${m}`)
    }
    const kinds = level === null ? [PieceKind.IdPage, PieceKind.IdIndex] : level < 0 ? [PieceKind.IdPage] : [PieceKind.IdIndex]
    const p = await this.pieces.pieceOf(ref, kinds as Array<typeof PieceKind.IdPage | typeof PieceKind.IdIndex>, 'identity table piece')
    if (p.kind === PieceKind.IdIndex) {
      const ix = p.index
      if (ix.tableKind !== this.tableKind) bad(`is of kind ${ix.tableKind}, expected ${this.tableKind}`)
      if (level !== null && ix.level !== level) bad(`node of level ${ix.level} where level ${level} is expected`)
      if (rows !== null && ix.totalRows !== rows) bad(`node holds ${ix.totalRows} rows, its parent says ${rows}`)
      const kids = ix.children
      if (kids.length > 1 && ((lo && compareIdentity(kids[1]!, lo) <= 0) || (hi && compareIdentity(kids[kids.length - 1]!, hi) >= 0))) bad("node has children outside its parent's range")
      for (let i = start ? findIdChild(kids, start) : 0; i < kids.length; i++) {
        const c = kids[i]!
        if (comparePieceRefs(c.ref, ref) >= 0) bad(`child ${i} is not written before its index (R1)`)
        const clo = i === 0 ? lo : c
        const chi = i + 1 < kids.length ? kids[i + 1]! : hi
        yield* this.walk(c.ref, c.rows, ix.level - 1, clo, chi, start)
        start = null
      }
      return
    }
    const page = p.page
    if (page.tableKind !== this.tableKind) bad(`page is of kind ${page.tableKind}, expected ${this.tableKind}`)
    const list = page.rows
    if (rows !== null && list.length !== rows) bad(`page holds ${list.length} rows, its parent says ${rows}`)
    if (lo && compareIdentity(list[0]!, lo) !== 0) bad('page does not start with its first identity')
    if (hi && compareIdentity(list[list.length - 1]!, hi) >= 0) bad("page reaches into the next page's identities")
    yield list
  }
}
