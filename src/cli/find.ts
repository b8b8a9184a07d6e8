/**
 * `bfs find PATTERN` and `bfs log [GEN:]PATH` (issue 17): which generations hold a path, and
 * the versions of one path across generations, from the catalogs (format 1) or directory
 * pieces (format 2) alone: no file data is read.
 *
 * Format 1: each generation's catalog is read as bytes plus an index (CatalogIndex: one
 * checking pass, no entry objects) and walked with the pattern's state machine; names are
 * matched in place, and only matches are decoded. Format 2: the trees are walked through one
 * shared piece reader, and the matches below a directory are kept per (piece id, pattern
 * state): a directory piece shared by several generations (pieces are content-addressed, so
 * the same piece is the same subtree) is read and matched once, whatever the number of
 * generations that hold it.
 */
import { openRepo2 } from './open2.js'
import path from 'node:path'
import type { Command } from 'commander'
import { EntryType, type Entry } from '../format/catalog.js'
import type { CatalogIndex } from '../format/catalog.js'
import { FileType, readEntry, type Entry2 } from '../format/v2/dir.js'
import { PieceKind, StrictReader, comparePieceRefs, readPieceRef } from '../format/v2/common.js'
import { DIR_ROW, ROW_ENTRIES, ROW_ENTRY, ROW_ID, ROW_NAME, ROW_NAME_LEN, ROW_REF, ROW_SRC, ROW_TYPE, ROWS_START, dirScan } from '../codec/dirlist.js'
import type { DirRef } from '../pieces/tree-reader.js'
import { BfsError, EXIT } from '../repo/errors.js'
import { FormatError } from '../format/errors.js'
import { ObjectResolver } from '../repo/resolve.js'
import type { MetaScratch, Repository } from '../repo/repository.js'
import { isFormat2 } from '../repo/v2/detect.js'
import { GenReader2, StreamSource2 } from '../repo/v2/read2.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { type Lease, readerLease } from '../repo/v2/lease.js'
import { pinName } from '../format/v2/records.js'
import { PieceReader, isPieceFailure } from '../pieces/reader.js'
import type { BlobReader, ByteRange, Store } from '../store/store.js'
import { SOURCE_HELP, splitRef } from './common.js'
import type { Ctx } from './context.js'
import { whatChanged, SLASH, type Compared } from './diff-common.js'
import { sameContent1 } from './diff.js'
import { sameContent2 } from './diff2.js'
import { PathPattern, parseTime, selectGens, shortTime, type GenInfo } from './find-select.js'
import { lsEntry, type LsFields } from './json.js'
import { OutBuffer, writeOut } from './output.js'
import { findWalk } from '../native/index.js'

const TYPES: Record<number, string> = { [EntryType.File]: 'file', [EntryType.Dir]: 'dir', [EntryType.Symlink]: 'symlink', [EntryType.CharDev]: 'chardev', [EntryType.BlockDev]: 'blockdev', [EntryType.Fifo]: 'fifo', [EntryType.Socket]: 'socket' }
const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)

/** A match: its path from the root with a leading '/', and its entry (format 1 or 2: the same field names and type numbers). */
interface Match {
  path: Buffer
  e: LsFields & { size: number }
}

/**
 * A generation's matches as the walk in C gives them, without an object per match: rows
 * [from, to) of `rows` (path offset and length in `paths`, entry number), the entries
 * decoded by number, `keep` (by entry number: passes --newer/--older; null: every one).
 */
class RowMatches {
  readonly length: number
  constructor(
    readonly paths: Buffer,
    readonly rows: Float64Array,
    readonly from: number,
    readonly to: number,
    readonly ents: Entry2[],
    readonly keep: Uint8Array | null,
  ) {
    let n = (to - from) / 3
    if (keep) {
      n = 0
      for (let i = from; i < to; i += 3) n += keep[rows[i + 2]!]!
    }
    this.length = n
  }

  /** Each kept match in order: its entry and its path, bytes [s, e) of `paths`. */
  each(f: (e: Entry2, s: number, end: number) => void): void {
    const r = this.rows
    for (let i = this.from; i < this.to; i += 3) {
      const ent = r[i + 2]!
      if (this.keep && !this.keep[ent]) continue
      f(this.ents[ent]!, r[i]!, r[i]! + r[i + 1]!)
    }
  }

  toArray(): Match[] {
    const out: Match[] = []
    this.each((e, s, end) => void out.push({ path: this.paths.subarray(s, end), e }))
    return out
  }
}

/** What find found in one generation. */
interface Found {
  g: GenInfo
  matches: Match[] | RowMatches
}

interface FindOptions {
  gens?: string
  newer?: number
  older?: number
  json?: boolean
  ignoreCase?: boolean
  source?: string
  group?: string
}

/**
 * The generations to look in (--source, --gens), and the damaged ones (a manifest that does
 * not read) that --gens asks for: the caller names them (see `damage`) and leaves them out.
 */
interface Selection {
  gens: GenInfo[]
  damaged: Array<{ id: number; problem: string }>
}

/** The generations of `all` that --source and --gens ask for; of `damaged`, those --gens asks for (their source is unknown). */
function selectFrom(o: FindOptions, all: GenInfo[], damaged: Selection['damaged'], dir: string, resolve: (ref: string, source: string | undefined) => number): Selection {
  const source = o.source === undefined ? undefined : path.resolve(o.source)
  if (source !== undefined) {
    if (!all.some((g) => g.source === source)) throw new BfsError('NO_SUCH_GEN', `no generations of ${source} in ${dir}`)
    all = all.filter((g) => g.source === source)
  }
  const gens = selectGens(o.gens, all, (ref) => resolve(ref, source))
  const asked = (id: number): boolean => o.gens === undefined || selectGens(o.gens, [{ id, time: '', source: '' }], (ref) => resolve(ref, source)).length > 0
  return { gens, damaged: damaged.filter((d) => asked(d.id)) }
}

function select1(repo: Repository, o: FindOptions): Selection {
  const all = repo.generations().map((m) => ({ id: m.id, time: m.time, source: m.source }))
  return selectFrom(o, all, repo.damagedGenerations(), repo.dir, (ref, source) => repo.resolveRef(ref, { source }).manifest.id)
}

function select2(repo: Repo2, o: FindOptions): Selection {
  if (o.group !== undefined) throw new BfsError('BAD_INPUT', '--group is not supported on a format 2 repository yet')
  const rows = repo.generations()
  const all = rows.flatMap((g) => ('manifest' in g ? [{ id: g.id, time: g.manifest.time, source: g.manifest.sources[0]?.path ?? '' }] : []))
  const damaged = rows.flatMap((g) => ('problem' in g ? [{ id: g.id, problem: g.problem }] : []))
  return selectFrom(o, all, damaged, repo.dir, (ref, source) => repo.resolve(ref, source).id)
}

/**
 * Names a damaged generation on stderr in one line and makes the exit status 3 (EXIT.PARTIAL:
 * the search finished, but did not cover it); the other generations go on as usual.
 */
function damage(ctx: Ctx, id: number, problem: string): void {
  warn(`warning: gen${id} is damaged and was not searched: ${problem}`)
  ctx.exitCode = EXIT.PARTIAL
}

/** A format 2 read error's message without its leading `genN:PATH: ` (PATH kept where there is one). */
function problemOf(err: Error): string {
  return err.message.replace(/^gen\d+:(\S*): /, (_, p: string) => (p ? `${p}: ` : ''))
}

/** Whether an entry's mtime passes --newer/--older. */
function inTime(e: { mtimeSec: number; mtimeNsec: number }, o: FindOptions): boolean {
  const ms = e.mtimeSec * 1000 + e.mtimeNsec / 1e6
  return (o.newer === undefined || ms > o.newer) && (o.older === undefined || ms < o.older)
}

// ---- format 1 ----

/** The matches of `pat` in one catalog, in path order (a directory before what is below it). */
function find1(ci: CatalogIndex, pat: PathPattern, o: FindOptions): Match[] {
  const out: Match[] = []
  const walk = (dir: number, m: number, prefix: Buffer): void => {
    const first = ci.firstChild[dir]!
    const end = first + ci.childCount[dir]!
    const b = ci.payload
    for (let c = first; c < end; c++) {
      const s = ci.nameStart[c]!
      const n = pat.step(m, b, s, s + ci.nameLen[c]!) // in place: no Buffer per entry
      if (n === 0) continue
      const name = ci.name(c)
      const isDir = ci.type[c] === EntryType.Dir
      let p: Buffer | null = null
      if (pat.matched(n) && (!pat.dirOnly || isDir)) {
        const e = ci.entry(c)
        if (inTime(e, o)) {
          const size = e.type === EntryType.File ? (ci.leader[c] === c ? e.size : ci.entry(ci.leader[c]!).size) : e.type === EntryType.Symlink ? e.size : 0
          // copies: the catalog's bytes are reused for the next generation
          out.push({ path: (p = Buffer.concat([prefix, SLASH, name])), e: { ...e, size, name: Buffer.from(e.name), target: e.target && Buffer.from(e.target) } })
        }
      }
      if (isDir && pat.descend(n) && ci.childCount[c]! > 0) walk(c, n, p ?? Buffer.concat([prefix, SLASH, name]))
    }
  }
  if (ci.type[0] === EntryType.Dir) walk(0, pat.start, Buffer.alloc(0))
  return out
}

// ---- format 2 ----

/**
 * Matches below a directory, as a tree relative to it: a name, its entry when that path
 * matches, and the matches below it. Subtrees are shared between generations (Find2's memo);
 * paths are built once, when a generation's matches are listed (`flatten`).
 */
interface RelNode {
  name: Buffer
  e: Entry2 | null
  sub: Rel
}
type Rel = readonly RelNode[]
const NONE: Rel = []

/** A generation's matches from its tree: full paths, --newer/--older applied. */
function flatten(rel: Rel, o: FindOptions, prefix: Buffer[] = [], out: Match[] = []): Match[] {
  for (const x of rel) {
    prefix.push(SLASH, x.name)
    if (x.e && inTime(x.e, o)) out.push({ path: Buffer.concat(prefix), e: x.e })
    if (x.sub.length) flatten(x.sub, o, prefix, out)
    prefix.length -= 2
  }
  return out
}

/** A directory piece walked (its id) and the matches below it, or their promise while a walk in JavaScript is under way. */
interface MemoSlot {
  id: Buffer
  v: Rel | Promise<Rel>
}

class Find2 {
  /**
   * (piece id, pattern state) → the matches below that directory: a shared piece is read and
   * matched once. A promise while a walk in JavaScript is under way (concurrent walks of one
   * piece share it), the matches once known: the native walk runs without a promise per
   * directory.
   */
  private readonly memo = new Map<number, Map<number, MemoSlot[]>>()
  /** Directories walked by the native scan (of them DIRDELTA pages) and in JavaScript (tests: that the native path ran). */
  readonly stats = { native: 0, deltas: 0, js: 0 }
  /** The rows of DIRDELTA bases (by piece id): a base shared by the deltas of many generations is parsed once. */
  private readonly bases = new Map<string, Float64Array>()

  constructor(
    private readonly r: GenReader2,
    private readonly pat: PathPattern,
    /** The pieces read synchronously: directory pages scanned in C (dirScan), names matched in place. */
    private readonly native: boolean,
  ) {}

  /**
   * The matches below directory `d`, whose piece id is the 32 bytes of `id` at `at` (`p`: its
   * path, for messages). The memo is keyed by state, then by the id's first 48 bits, the
   * whole id compared: no string per directory walked.
   */
  below(id: Buffer, at: number, d: DirRef | (() => DirRef), m: number, p: () => string): Rel | Promise<Rel> {
    let byId = this.memo.get(m)
    if (!byId) this.memo.set(m, (byId = new Map()))
    const h = id.readUIntLE(at, 6)
    let slots = byId.get(h)
    if (slots) for (const s of slots) if (id.compare(s.id, 0, 32, at, at + 32) === 0) return s.v
    const got = this.walk(typeof d === 'function' ? d() : d, m, p)
    const slot: MemoSlot = { id: id.subarray(at, at + 32), v: got }
    if (slots) slots.push(slot)
    else byId.set(h, (slots = [slot]))
    if (got instanceof Promise) {
      got.then((v) => void (slot.v = v), () => undefined) // (a rejection is the caller's, who awaits it)
    }
    return got
  }

  private walk(d: DirRef, m: number, p: () => string): Rel | Promise<Rel> {
    const page = this.native ? this.scan(d) : null
    if (page) {
      this.stats.native++
      if (page.bufs.length > 1) this.stats.deltas++
      return this.walkRows(page.rows, page.bufs, m, p, ROWS_START, [])
    }
    this.stats.js++
    return this.walkPages(d, m, p)
  }

  /**
   * A directory held in one DIR or DIRDELTA piece as dirScan's rows, and the payloads they
   * point into; null for anything else (a DIRINDEX, a piece the scan declines, a read that
   * fails: the JavaScript walk reads it again and names the damage).
   */
  private scan(d: DirRef): { rows: Float64Array; bufs: Buffer[] } | null {
    const pieces = this.r.pieces
    try {
      const raw = pieces.rawSync(d.child)
      let base: Buffer | null = null
      let baseRows: Float64Array | null = null
      if (raw[0] === PieceKind.DirDelta) {
        const b = readPieceRef(new StrictReader(raw, 'DIRDELTA', 2))
        if (comparePieceRefs(b, d.child) >= 0) return null // R1
        base = pieces.rawSync(b) // R3 (a DIR) is dirScan's check
        const k = b.id.toString('latin1')
        baseRows = this.bases.get(k) ?? null
        if (!baseRows) {
          baseRows = dirScan(base, null)
          if (!baseRows) return null
          this.bases.set(k, baseRows)
        }
      } else if (raw[0] !== PieceKind.Dir) return null
      const rows = dirScan(raw, base, this.pat.leafName, baseRows)
      if (!rows || rows[0] !== d.entries) return null
      return { rows, bufs: base ? [raw, base] : [raw] }
    } catch (err) {
      if (isPieceFailure(err)) return null
      throw err
    }
  }

  /**
   * One directory from its rows, from row `from` on, into `out`: names matched in place; only
   * matches (and the refs of directories walked) decoded. Synchronous while every directory
   * below is (native), else continued when the one walked in JavaScript is done.
   */
  private walkRows(rows: Float64Array, bufs: Buffer[], m: number, p: () => string, from: number, out: RelNode[]): Rel | Promise<Rel> {
    const pat = this.pat
    for (let i = from; i < rows.length; i += DIR_ROW) {
      const b = bufs[rows[i + ROW_SRC]!]!
      const s = rows[i + ROW_NAME]!
      const end = s + rows[i + ROW_NAME_LEN]!
      const n = pat.step(m, b, s, end)
      if (n === 0) continue
      const isDir = rows[i + ROW_TYPE] === FileType.Dir
      const self = pat.matched(n) && (!pat.dirOnly || isDir)
      const refAt = rows[i + ROW_REF]!
      const down = isDir && refAt >= 0 && pat.descend(n)
      if (!self && !down) continue
      const name = b.subarray(s, end)
      let e: Entry2 | null = null
      try {
        if (self) e = readEntry(new StrictReader(b, p(), rows[i + ROW_ENTRY]!))
      } catch (err) {
        throw this.r.damageOf(err, p())
      }
      if (!down) {
        out.push({ name, e, sub: NONE })
        continue
      }
      const idAt = rows[i + ROW_ID]!
      const entries = rows[i + ROW_ENTRIES]!
      const cp = (): string => `${p()}/${name.toString()}`
      const ref = (): DirRef => {
        try {
          return { child: readPieceRef(new StrictReader(b, 'a directory entry', refAt)), entries }
        } catch (err) {
          throw this.r.damageOf(err, cp())
        }
      }
      const sub = this.below(b, idAt, ref, n, cp)
      if (sub instanceof Promise) {
        return sub.then((x) => {
          if (e || x.length) out.push({ name, e, sub: x })
          return this.walkRows(rows, bufs, m, p, i + DIR_ROW, out)
        })
      }
      if (e || sub.length) out.push({ name, e, sub })
    }
    return out
  }

  /**
   * One directory in JavaScript: its pages in order, the subdirectories of a page walked
   * concurrently (the piece loads overlap: a cold tree is thousands of small reads).
   */
  private async walkPages(d: DirRef, m: number, p: () => string): Promise<Rel> {
    const out: RelNode[] = []
    const dir = { type: FileType.Dir, dir: d } as Entry2
    for await (const page of this.r.pages(dir, p())) {
      const parts: Array<{ name: Buffer; e: Entry2 | null; sub: Rel | Promise<Rel> | null }> = []
      for (const e of page) {
        const n = this.pat.step(m, e.name, 0, e.name.length)
        if (n === 0) continue
        const isDir = e.type === FileType.Dir
        const self = this.pat.matched(n) && (!this.pat.dirOnly || isDir)
        const sub = isDir && e.dir && this.pat.descend(n) ? this.below(e.dir.child.id, 0, e.dir, n, () => `${p()}/${e.name.toString()}`) : null
        if (self || sub) parts.push({ name: e.name, e: self ? e : null, sub })
      }
      for (const x of parts) {
        const sub = x.sub ? await x.sub : NONE
        if (x.e || sub.length) out.push({ name: x.name, e: x.e, sub })
      }
    }
    return out
  }
}

/**
 * `store` with each pack file opened once and kept open until `close`: a cold walk reads
 * thousands of small pieces from a few packs, and open + fstat + close per piece were most
 * of its time. Everything else is the store's own.
 */
function keepPacksOpen(store: Store): { store: Store; close(): Promise<void> } {
  const blobs = new Map<string, Promise<BlobReader>>()
  const get = (key: string, range?: ByteRange): Promise<Buffer> => {
    if (!range) return store.get(key)
    let b = blobs.get(key)
    if (!b) {
      blobs.set(key, (b = store.open(key)))
      b.catch(() => blobs.delete(key)) // a failed open is not kept (the read below reports it)
    }
    return b.then((x) => x.read(range))
  }
  const proxy = new Proxy(store, {
    get(t, prop) {
      if (prop === 'get') return get
      const v = Reflect.get(t, prop, t) as unknown
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v
    },
  })
  return { store: proxy, close: async () => void (await Promise.allSettled([...blobs.values()].map((b) => b.then((x) => x.close())))) }
}

/**
 * A reader for every generation of a format 2 repository: one piece cache; pieces read
 * synchronously when the store can (`sync`: find's native scan), else the packs kept open.
 */
function sharedReader(repo: Repo2, first: number, sync = false): { r: GenReader2; close(): Promise<void> } {
  if (sync && repo.store.sync) {
    const pieces = new PieceReader(repo.store, { cacheBytes: 128 << 20, syncReads: true, openPacks: 64, keys: repo.sealing })
    const r = new GenReader2(repo, repo.manifest(first), 0, pieces)
    return { r, close: async () => (await r.close(), pieces.close()) }
  }
  const packs = keepPacksOpen(repo.store)
  const r = new GenReader2(repo, repo.manifest(first), 0, new PieceReader(packs.store, { cacheBytes: 64 << 20, keys: repo.sealing }))
  return { r, close: async () => (await r.close(), await packs.close()) }
}

// ---- output ----

function printFind(o: FindOptions, results: Found[]): void {
  if (o.json) {
    process.stdout.write(JSON.stringify(results.filter((x) => x.matches.length).map(({ g, matches }) => ({
      generation: `gen${g.id}`, id: g.id, time: g.time, source: g.source, hits: matches.length,
      matches: (matches instanceof RowMatches ? matches.toArray() : matches).map((x) => lsEntry(x.e, x.e, x.path)),
    }))) + '\n')
    return
  }
  // 64 KiB writes, not one per line (55,680 lines for Makefile on 20 generations of Linux)
  const out = new OutBuffer()
  // one formatting per mtime: most matches are the same entries in every generation
  const times = new Map<number, string>()
  const time = (sec: number): string => {
    let t = times.get(sec)
    if (t === undefined) times.set(sec, (t = shortTime(sec)))
    return t
  }
  // one formatting per entry of the walk in C: it hands the same entry object to every generation that holds it
  const heads = new Map<object, Buffer>()
  const NL = Buffer.from('\n')
  const DIR_NL = Buffer.from('/\n')
  let firstGroup = true
  for (const { g, matches } of results) {
    if (!matches.length) continue
    out.add([`${firstGroup ? '' : '\n'}Found matching entries in gen${g.id} from ${g.time.replace('T', ' ').replace(/(\.\d+)?Z$/, '')}:\n`])
    firstGroup = false
    const line = (e: Match['e'], path: Buffer, s: number, end: number, shared: boolean): void => {
      let head = shared ? heads.get(e) : undefined
      if (!head) {
        head = Buffer.from(`${(TYPES[e.type] ?? '?').padEnd(8)} ${String(e.size).padStart(12)}  ${time(e.mtimeSec)}  `)
        if (shared) heads.set(e, head)
      }
      out.bytes(head, 0, head.length)
      out.bytes(path, s, end)
      const nl = e.type === EntryType.Dir ? DIR_NL : NL
      out.bytes(nl, 0, nl.length)
    }
    if (matches instanceof RowMatches) matches.each((e, s, end) => line(e, matches.paths, s, end, true))
    else for (const x of matches) line(x.e, x.path, 0, x.path.length, false)
  }
  out.flush()
}

/** The matches in each of `gens` (format 2), into `results`; a damaged one is named and left out (exit 3). */
async function find2(repo: Repo2, gens: GenInfo[], pat: PathPattern, o: FindOptions, ctx: Ctx, results: Found[]): Promise<void> {
  // one reader (one piece cache) for every generation: the walk only uses its tree reader
  // (BFS_FIND_JS=1: the JavaScript walk alone, as a reference for tests)
  const native = process.env.BFS_FIND_JS !== '1'
  const stats = process.env.BFS_FIND_STATS === '1'
  // the whole walk in C where it can (native/findwalk.c): one call for every generation; a
  // generation it declines (damage, a pack not on disk) is walked in JavaScript
  const t0 = performance.now()
  const done = native ? walkInC(repo, gens, pat) : null
  if (stats && done) warn(`find: ${done.size} generations walked in C (${done.pieces ?? 0} pieces read) in ${(performance.now() - t0).toFixed(0)} ms`)
  const rest = done ? gens.filter((g) => !done.has(g.id)) : gens
  const f = rest.length ? sharedReader(repo, rest[0]!.id, native) : null
  const walker = f && new Find2(f.r, pat, native && f.r.pieces.canReadSync)
  try {
    for (const g of gens) {
      const got = done?.get(g.id)
      if (got) {
        results.push({ g, matches: got.timed(o) })
        continue
      }
      const root = repo.manifest(g.id).rootEntry
      let rel: Rel
      try {
        rel = root.type === FileType.Dir && root.dir ? await walker!.below(root.dir.child.id, 0, root.dir, pat.start, () => '') : NONE
      } catch (err) {
        if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
        damage(ctx, g.id, problemOf(err))
        continue
      }
      results.push({ g, matches: flatten(rel, o) })
    }
  } finally {
    await f?.close()
  }
  if (stats && f && walker) warn(`find: ${walker.stats.native} directories scanned natively (${walker.stats.deltas} DIRDELTA), ${walker.stats.js} in JavaScript; ${f.r.pieces.stats.loads} pieces read, ${f.r.pieces.stats.bytesRead} bytes`)
}

/**
 * The matches of the generations the walk in C answers (findWalk: a local repository with
 * unkeyed piece ids, a pattern it matches: PathPattern.nativeSpec), by generation id, without
 * --newer/--older; null when it cannot run. A generation it declines, or whose matched
 * entries the decoder refuses, is not in the map: the JavaScript walk reads it and names
 * any damage.
 */
function walkInC(repo: Repo2, gens: GenInfo[], pat: PathPattern): (Map<number, { timed(o: FindOptions): RowMatches }> & { pieces?: number }) | null {
  const where = repo.store.describe()
  if (!pat.nativeSpec || where?.kind !== 'disk' || repo.config.encryption !== null) return null
  const out: Map<number, { timed(o: FindOptions): RowMatches }> & { pieces?: number } = new Map()
  const walked: GenInfo[] = []
  const refs: number[] = []
  const ids: Buffer[] = []
  const none = new RowMatches(Buffer.alloc(0), new Float64Array(0), 0, 0, [], null)
  for (const g of gens) {
    const root = repo.manifest(g.id).rootEntry
    if (root.type !== FileType.Dir || !root.dir) out.set(g.id, { timed: () => none }) // nothing below it
    else {
      const c = root.dir.child
      walked.push(g)
      refs.push(c.run, c.pack, c.offset, c.storedLen, root.dir.entries)
      ids.push(c.id)
    }
  }
  if (!walked.length) return out
  const [counts, paths, rows, ents, entOffs, pieces] = findWalk(Buffer.from(where.root), Buffer.alloc(32), pat.nativeSpec, new Float64Array(refs), Buffer.concat(ids))
  out.pieces = pieces
  // every matched entry decoded once (the entries of every generation: C keeps equal ones once)
  const decoded: Entry2[] = new Array(entOffs.length / 2)
  const bad = new Uint8Array(entOffs.length / 2)
  for (let k = 0; k < decoded.length; k++) {
    try {
      decoded[k] = readEntry(new StrictReader(ents.subarray(entOffs[2 * k]!, entOffs[2 * k + 1]!), 'a directory entry', 0))
    } catch {
      bad[k] = 1 // (a generation that holds it is walked in JavaScript, which names the damage)
    }
  }
  const keeps = new Map<string, Uint8Array | null>()
  const keepOf = (o: FindOptions): Uint8Array | null => {
    if (o.newer === undefined && o.older === undefined) return null
    const k = `${o.newer}/${o.older}`
    let keep = keeps.get(k)
    if (keep === undefined) {
      keep = new Uint8Array(decoded.length)
      for (let i = 0; i < decoded.length; i++) keep[i] = decoded[i] && inTime(decoded[i]!, o) ? 1 : 0
      keeps.set(k, keep)
    }
    return keep
  }
  let row = 0
  for (let k = 0; k < walked.length; k++) {
    const n = counts[k]!
    if (n < 0) continue
    const from = row
    const to = (row += 3 * n)
    let ok = true
    for (let i = from; i < to && ok; i += 3) if (bad[rows[i + 2]!]) ok = false
    if (ok) out.set(walked[k]!.id, { timed: (o) => new RowMatches(paths, rows, from, to, decoded, keepOf(o)) })
  }
  return out
}

/** Pins every generation to be read in the reader's lease (§2.20.4), at the revision of its manifest. */
async function pinAll(lease: Lease | null, repo: Repo2, gens: GenInfo[]): Promise<void> {
  await lease?.setPins(gens.map((g) => pinName(g.id, repo.manifest(g.id).rev)))
}

async function findCommand(ctx: Ctx, pattern: string, o: FindOptions): Promise<void> {
  const pat = new PathPattern(pattern, !!o.ignoreCase)
  const results: Found[] = []
  if (isFormat2(ctx.repoDir())) {
    const repo = await openRepo2(ctx.repoDir(), warn)
    // §2.20.4: a lease before the manifests are listed, so that forget/prune leaves what is read
    const lease = readerLease(repo, 'ls', undefined, 'find')
    try {
      const { gens, damaged } = select2(repo, o)
      for (const d of damaged) damage(ctx, d.id, d.problem)
      await pinAll(lease, repo, gens)
      if (!gens.length) return printFind(o, results)
      await find2(repo, gens, pat, o, ctx, results)
    } finally {
      lease?.release()
    }
    return printFind(o, results)
  }
  const repo = ctx.openRepo()
  const { gens, damaged } = select1(repo, o)
  for (const d of damaged) damage(ctx, d.id, d.problem)
  const scratch: MetaScratch = {} // one buffer for every catalog (find1 copies what it keeps)
  for (const g of gens) {
    let ci: CatalogIndex
    try {
      ci = repo.catalogIndex(g.id, scratch)
    } catch (err) {
      if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
      damage(ctx, g.id, err.message)
      continue
    }
    results.push({ g, matches: find1(ci, pat, o) })
  }
  printFind(o, results)
}

// ---- log ----

interface Version {
  g: GenInfo
  e: (LsFields & Compared & { size: number }) | null
  /** added, changed, unchanged, removed, absent */
  status: string
  what: string[]
}

async function logCommand(ctx: Ctx, ref: string, o: FindOptions): Promise<void> {
  const held: Array<Lease | null> = [] // format 2: the lease, released when done
  try {
    await log(ctx, ref, o, (l) => void held.push(l))
  } finally {
    for (const l of held) l?.release()
  }
}

async function log(ctx: Ctx, ref: string, o: FindOptions, held: (l: Lease | null) => void): Promise<void> {
  // GEN:PATH: the path's history up to GEN (in GEN's source); PATH alone: every generation
  const colon = ref.indexOf(':')
  const { gen, path: rawPath } = colon < 0 ? { gen: undefined, path: ref } : splitRef(ref)
  const parts = rawPath.split('/').filter((c) => c !== '' && c !== '.')
  if (!parts.length) throw new BfsError('USAGE', `bfs log needs a path inside the generations, not '${ref}'`)
  const shown = '/' + parts.join('/')
  const versions: Version[] = []
  const add = (g: GenInfo, e: Version['e'], contentDiffers: (prev: Version) => Promise<boolean> | boolean): Promise<void> | void => {
    const prev = versions.at(-1)
    if (!e) return void versions.push({ g, e, status: prev?.e ? 'removed' : 'absent', what: [] })
    if (!prev?.e) return void versions.push({ g, e, status: 'added', what: [] })
    const both = prev.e.type === EntryType.File && e.type === EntryType.File
    return (async () => {
      const what = whatChanged(prev.e!, e, both && (await contentDiffers(prev)))
      versions.push({ g, e, status: what.length ? 'changed' : 'unchanged', what })
    })()
  }
  if (isFormat2(ctx.repoDir())) {
    const repo = await openRepo2(ctx.repoDir(), warn)
    // §2.20.4: a lease before the manifests are listed (as find)
    const lease = readerLease(repo, 'ls', undefined, 'log')
    held(lease)
    let { gens, damaged } = select2(repo, gen === undefined ? o : { ...o, source: o.source ?? repo.resolve(gen, undefined).sources[0]?.path })
    if (gen !== undefined) {
      const upTo = repo.resolve(gen, o.source === undefined ? undefined : path.resolve(o.source)).id
      gens = gens.filter((g) => g.id <= upTo)
      damaged = damaged.filter((d) => d.id <= upTo)
    }
    for (const d of damaged) damage(ctx, d.id, d.problem)
    if (!gens.length) throw new BfsError('NO_SUCH_GEN', `no generations to look in`)
    await pinAll(lease, repo, gens)
    const { r, close } = sharedReader(repo, gens[0]!.id)
    const streams = new StreamSource2(repo)
    const hashesOf = (s: number): Buffer => streams.cachedBlockHashes(s)
    const entries = new Map<number, Entry2>()
    // one reader per generation over the shared pieces: each lays its own BI overlays (§2.16)
    const readers = new Map<number, GenReader2>()
    try {
      for (const g of gens) {
        const man = repo.manifest(g.id)
        readers.set(g.id, g.id === r.manifest.id ? r : new GenReader2(repo, man, 0, r.pieces))
        let e: Entry2 | null
        try {
          e = await r.tree.lookupPath(man.rootEntry, parts.map((c) => Buffer.from(c)))
        } catch (err) {
          if (!(err instanceof BfsError && err.code === 'CORRUPT') && !(err instanceof FormatError)) throw err
          damage(ctx, g.id, `${shown}: ${problemOf(err)}`)
          continue
        }
        if (e) entries.set(g.id, e)
        await add(g, e, (prev) => sameContent2(readers.get(prev.g.id)!, readers.get(g.id)!, entries.get(prev.g.id)!, e!, shown, hashesOf).then((same) => !same))
      }
    } finally {
      await close()
    }
  } else {
    const repo = ctx.openRepo()
    let { gens, damaged } = select1(repo, gen === undefined ? o : { ...o, source: o.source ?? repo.resolveRef(gen, {}).manifest.source })
    if (gen !== undefined) {
      const upTo = repo.resolveRef(gen, { source: o.source === undefined ? undefined : path.resolve(o.source) }).manifest.id
      gens = gens.filter((g) => g.id <= upTo)
      damaged = damaged.filter((d) => d.id <= upTo)
    }
    for (const d of damaged) damage(ctx, d.id, d.problem)
    if (!gens.length) throw new BfsError('NO_SUCH_GEN', `no generations to look in`)
    const resolver = new ObjectResolver(repo)
    const data = new Map<number, Entry>()
    for (const g of gens) {
      let ci: CatalogIndex
      try {
        ci = repo.catalogIndex(g.id)
      } catch (err) {
        if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
        damage(ctx, g.id, err.message)
        continue
      }
      let i = 0
      for (const c of parts) {
        if (ci.type[i] !== EntryType.Dir) {
          i = -1
          break
        }
        i = ci.childIndex(i, Buffer.from(c))
        if (i < 0) break
      }
      if (i < 0) {
        await add(g, null, () => false)
        continue
      }
      const e = ci.entry(i)
      const d = ci.leader[i] === i ? e : ci.entry(ci.leader[i]!)
      data.set(g.id, d)
      await add(g, { ...e, size: e.type === EntryType.File ? d.size : e.size }, (prev) => !sameContent1(repo, resolver, data.get(prev.g.id)!, d))
    }
  }
  if (!versions.some((v) => v.e)) throw new BfsError('BAD_INPUT', `${shown}: not in any of the ${versions.length} generation${versions.length === 1 ? '' : 's'} looked in`)
  if (o.json) {
    process.stdout.write(JSON.stringify(versions.map((v) => ({
      generation: `gen${v.g.id}`, id: v.g.id, time: v.g.time, present: !!v.e, status: v.status, what: v.what,
      contentChanged: v.status === 'changed' ? v.what.includes('content') || v.what.includes('type') : v.status === 'unchanged' ? false : null,
      entry: v.e ? lsEntry(v.e, v.e, Buffer.from(shown)) : null,
    }))) + '\n')
    return
  }
  writeOut([`versions of ${shown}:\n`])
  for (const v of versions) {
    const head = `gen${v.g.id}`.padEnd(7) + ` ${v.g.time.replace('T', ' ').replace(/(\.\d+)?Z$/, '')}  ${v.status.padEnd(9)}`
    if (!v.e) writeOut([head.trimEnd(), '\n'])
    else writeOut([`${head}  ${(TYPES[v.e.type] ?? '?').padEnd(8)} ${String(v.e.size).padStart(12)}  ${shortTime(v.e.mtimeSec)}${v.what.length ? `  (${v.what.join(', ')})` : ''}\n`])
  }
}

/** `bfs help find`: what the pattern forms match (paths from the generation's root). */
const FIND_PATTERNS = `
Patterns (a path is from the generation's root; a volume generation holds one file, named
after its source: the image file's name, or NAME.img for a block device /dev/NAME):
  etc          every entry named etc, at any depth (a file or a directory)
  etc/         every directory named etc, at any depth
  /etc         the entry etc at the root (any pattern with a slash is from the root)
  etc/*        the entries directly inside the root's etc
  etc/**       everything inside the root's etc, at any depth, not etc itself
  etc/**/*.conf  the .conf files anywhere below the root's etc (** may be no directory)`

export function registerFind(program: Command, ctx: Ctx): void {
  program
    .command('find')
    .description('list the generations holding a path or name that matches PATTERN (a glob: without a slash it matches a name at any depth, with one the whole path), from the catalogs without reading file data')
    .argument('<pattern>', 'a glob: *, ?, [...], ** (any number of directories); a trailing / matches directories only')
    .option('--gens <range>', 'only these generations: A..B (either end may be left out), a list (1,3,5..7); names as elsewhere (3, gen3, latest, latest~2)')
    .option('--newer <time>', 'only entries modified after TIME: a date (2026-01-31, 2026-01-31T12:00:00Z) or a duration before now (2d, 1w3d, 12h; m is months)', parseTime)
    .option('--older <time>', 'only entries modified before TIME (as --newer)', parseTime)
    .option('-i, --ignore-case', 'match names without regard to case')
    .option('--json', 'print JSON: an array of {generation, id, time, source, hits, matches}')
    .option('--source <path>', 'only the generations of this source')
    .addHelpText('after', FIND_PATTERNS)
    .action((pattern: string, o: FindOptions) => findCommand(ctx, pattern, o))
  program
    .command('log')
    .description('the versions of one path across generations: present or not, type, size, mtime, and what changed from the version before (content from the block maps and hashes, no file data read)')
    .argument('<path>', 'PATH (every generation), or GEN:PATH (the generations of GEN\'s source up to GEN)')
    .option('--gens <range>', 'only these generations (as bfs find)')
    .option('--json', 'print JSON: an array of {generation, id, time, present, status, what, contentChanged, entry}')
    .option('--source <path>', SOURCE_HELP)
    .action((ref: string, o: FindOptions) => logCommand(ctx, ref, o))
}
