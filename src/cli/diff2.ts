/**
 * `bfs diff` on a format 2 repository: the two trees walked directory by directory through
 * their pieces. A directory whose piece is the same in both generations (unchanged
 * directories share pieces) is skipped whole without reading it: the fast path. Files: the
 * same map (inline extents or map piece) is the same content; otherwise the extents, then
 * the streams' stored block hashes, are compared. No file data is read.
 */
import { openRepo2 } from './open2.js'
import path from 'node:path'
import type { Entry2 } from '../format/v2/dir.js'
import { FileType } from '../format/v2/dir.js'
import type { Extent } from '../format/v2/common.js'
import { BfsError } from '../repo/errors.js'
import { GenReader2, StreamSource2 } from '../repo/v2/read2.js'
import { PieceReader } from '../pieces/reader.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { readerLease } from '../repo/v2/lease.js'
import { pinName } from '../format/v2/records.js'
import { kindOf, sameBlocks, SLASH, whatChanged, type Change, type DiffStats } from './diff-common.js'
import { readEntry } from '../format/v2/dir.js'
import { PieceKind, StrictReader, comparePieceRefs, readPieceRef } from '../format/v2/common.js'
import { isPieceFailure } from '../pieces/reader.js'
import type { DirRef } from '../pieces/tree-reader.js'
import { dirScan } from '../codec/dirlist.js'
import { dirDiff } from '../native/index.js'

const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)
const samePiece = (a: { run: number; pack: number; offset: number }, b: { run: number; pack: number; offset: number }): boolean =>
  a.run === b.run && a.pack === b.pack && a.offset === b.offset

/**
 * Whether two files have the same content: no map on both sides, the same map piece, else
 * the same extents or stored hashes (sameBlocks). `ra`/`rb` read their maps (damage named `genN:p`).
 */
export async function sameContent2(ra: GenReader2, rb: GenReader2, a: Entry2, b: Entry2, p: string, hashesOf: (stream: number) => Buffer): Promise<boolean> {
  if (a.size !== b.size) return false
  // (a generation with a BI index: its overlays may hold data its maps do not, §2.16)
  const plain = !ra.manifest.biIndex && !rb.manifest.biIndex
  if (plain && !a.map && !b.map) return true
  if (plain && (!a.map || !b.map)) return false
  if (plain && a.map!.kind === 'ref' && b.map!.kind === 'ref' && samePiece(a.map!.root, b.map!.root)) return true
  let x: Extent[]
  let y: Extent[]
  try {
    x = await ra.maps.extents(a)
  } catch (err) {
    throw ra.damageOf(err, p)
  }
  try {
    y = await rb.maps.extents(b)
  } catch (err) {
    throw rb.damageOf(err, p)
  }
  return sameBlocks(x, y, (e) => e.stream, hashesOf)
}

export async function diffV2(
  dir: string, ga: string, gb: string, rel: string, o: Record<string, unknown>,
  emit: (c: Change) => void, begin: (a: number, b: number) => void,
): Promise<{ a: number; b: number; stats: DiffStats }> {
  if (o.group !== undefined) throw new BfsError('BAD_INPUT', '--group is not supported on a format 2 repository yet')
  const source = typeof o.source === 'string' ? path.resolve(o.source) : undefined
  const repo = await openRepo2(dir, warn)
  const lease = readerLease(repo, 'ls') // §2.20.4 (removed at exit)
  // one piece reader for both trees, reading synchronously from packs kept open when the store
  // can: a diff reads a few thousand small pieces, and an open + fstat + close (or a threadpool
  // round trip) per piece was most of its time
  const pieces = new PieceReader(repo.store, { cacheBytes: 64 << 20, syncReads: true, openPacks: 64, keys: repo.sealing })
  const A = new GenReader2(repo, repo.resolve(ga, source), 0, pieces)
  const B = new GenReader2(repo, repo.resolve(gb, source), 0, pieces)
  await lease?.setPins([...new Set([pinName(A.manifest.id, A.manifest.rev), pinName(B.manifest.id, B.manifest.rev)])])
  const idA = A.manifest.id
  const idB = B.manifest.id
  const streams = new StreamSource2(repo)
  const hashesOf = (s: number): Buffer => streams.cachedBlockHashes(s)
  const stats: DiffStats = {
    added: { files: 0, dirs: 0, others: 0 }, removed: { files: 0, dirs: 0, others: 0 }, changed: { files: 0, dirs: 0, others: 0 },
    addedBytes: 0, removedBytes: 0,
  }
  const sizeOf = (e: Entry2): number => (e.type === FileType.File || e.type === FileType.Symlink ? e.size : 0)

  const list = async (r: GenReader2, d: Entry2, p: Buffer): Promise<Entry2[]> => {
    const out: Entry2[] = []
    for await (const page of r.pages(d, p.toString())) out.push(...page)
    return out
  }

  const sameContent = (a: Entry2, b: Entry2, p: Buffer): Promise<boolean> => sameContent2(A, B, a, b, p.toString(), hashesOf)

  const one = async (r: GenReader2, e: Entry2, p: Buffer, mod: '+' | '-'): Promise<void> => {
    const size = sizeOf(e)
    const k = kindOf(e.type as number)
    if (mod === '+') {
      stats.added[k]++
      if (e.type === FileType.File) stats.addedBytes += size
    } else {
      stats.removed[k]++
      if (e.type === FileType.File) stats.removedBytes += size
    }
    emit({ modifier: mod, path: p, type: e.type as number, what: [], sizeBefore: mod === '-' ? size : null, sizeAfter: mod === '+' ? size : null })
    if (e.type === FileType.Dir) for (const c of await list(r, e, p)) await one(r, c, Buffer.concat([p, SLASH, c.name]), mod)
  }

  const both = async (a: Entry2, b: Entry2, p: Buffer): Promise<void> => {
    const what = whatChanged(a, b, a.type === FileType.File && b.type === FileType.File && !(await sameContent(a, b, p)))
    if (what.length) {
      stats.changed[kindOf(b.type as number)]++
      const before = sizeOf(a)
      const after = sizeOf(b)
      if (what.includes('content') || what.includes('type')) {
        if (a.type === FileType.File) stats.removedBytes += before
        if (b.type === FileType.File) stats.addedBytes += after
      }
      emit({ modifier: 'M', path: p, type: b.type as number, what, sizeBefore: before, sizeAfter: after })
    }
    if (a.type === FileType.Dir && b.type === FileType.Dir) await children(a, b, p)
    else if (a.type === FileType.Dir) for (const c of await list(A, a, p)) await one(A, c, Buffer.concat([p, SLASH, c.name]), '-')
    else if (b.type === FileType.Dir) for (const c of await list(B, b, p)) await one(B, c, Buffer.concat([p, SLASH, c.name]), '+')
  }

  // ---- directories compared in C (dirDiff): only the entries whose bytes differ are decoded ----
  const inC = pieces.canReadSync && process.env.BFS_DIFF_JS !== '1'
  /** DIRDELTA bases' rows by piece id: a base shared by many deltas is scanned once. */
  const bases = new Map<string, Float64Array>()
  /** A directory held in one DIR or DIRDELTA page, as dirDiff takes it; null for anything else (a DIRINDEX, damage: read in JavaScript). */
  const page = (d: DirRef): [Buffer, Buffer | null, Float64Array | null] | null => {
    const raw = pieces.rawSync(d.child)
    if (raw[0] === PieceKind.Dir) return [raw, null, null]
    if (raw[0] !== PieceKind.DirDelta) return null
    const b = readPieceRef(new StrictReader(raw, 'DIRDELTA', 2))
    if (comparePieceRefs(b, d.child) >= 0) return null // R1
    const base = pieces.rawSync(b)
    const k = b.id.toString('latin1')
    let rows = bases.get(k)
    if (!rows) {
      const r = dirScan(base, null)
      if (!r) return null
      bases.set(k, (rows = r))
    }
    return [raw, base, rows]
  }
  /** The names whose entries differ in two directories, decoded, in name order (null: compare them in JavaScript). */
  const differing = (a: DirRef, b: DirRef): Array<[Entry2 | null, Entry2 | null]> | null => {
    try {
      const pa = page(a)
      const pb = pa && page(b)
      const d = pb && dirDiff(pa![0], pa![1], pa![2], pb[0], pb[1], pb[2])
      if (!d || d[0] !== a.entries || d[1] !== b.entries) return null
      const out: Array<[Entry2 | null, Entry2 | null]> = []
      for (let i = 2; i < d.length; i += 5) {
        out.push([
          d[i + 1]! >= 0 ? readEntry(new StrictReader((d[i + 1] ? pa![1] : pa![0])!, 'a directory entry', d[i + 2]!)) : null,
          d[i + 3]! >= 0 ? readEntry(new StrictReader((d[i + 3] ? pb[1] : pb[0])!, 'a directory entry', d[i + 4]!)) : null,
        ])
      }
      return out
    } catch (err) {
      if (isPieceFailure(err)) return null // (the JavaScript listing reads it again and names the damage)
      throw err
    }
  }

  /** Merge-joins two directories' entries; the same piece on both sides: nothing below changed. */
  const children = async (a: Entry2, b: Entry2, p: Buffer): Promise<void> => {
    if (a.dir && b.dir && samePiece(a.dir.child, b.dir.child)) return
    const diffs = inC && a.dir && b.dir ? differing(a.dir, b.dir) : null
    if (diffs) {
      for (const [x, y] of diffs) {
        if (x && y) await both(x, y, Buffer.concat([p, SLASH, x.name]))
        else if (x) await one(A, x, Buffer.concat([p, SLASH, x.name]), '-')
        else await one(B, y!, Buffer.concat([p, SLASH, y!.name]), '+')
      }
      return
    }
    const xs = await list(A, a, p)
    const ys = await list(B, b, p)
    let x = 0
    let y = 0
    while (x < xs.length || y < ys.length) {
      const c = x >= xs.length ? 1 : y >= ys.length ? -1 : Buffer.compare(xs[x]!.name, ys[y]!.name)
      if (c < 0) await one(A, xs[x]!, Buffer.concat([p, SLASH, xs[x]!.name]), '-'), x++
      else if (c > 0) await one(B, ys[y]!, Buffer.concat([p, SLASH, ys[y]!.name]), '+'), y++
      else await both(xs[x]!, ys[y]!, Buffer.concat([p, SLASH, xs[x]!.name])), x++, y++
    }
  }

  try {
    const i = await A.lookup(rel)
    const j = await B.lookup(rel)
    if (!i && !j) throw new BfsError('BAD_INPUT', `${rel}: no such file or directory in gen${idA} or gen${idB}`)
    const clean = rel.split('/').filter((s) => s && s !== '.').join('/')
    const root = clean ? Buffer.from('/' + clean) : Buffer.alloc(0)
    begin(idA, idB)
    if (!i) await one(B, j!, root, '+')
    else if (!j) await one(A, i, root, '-')
    else if (!clean) await children(i, j, root)
    else await both(i, j, root)
  } finally {
    await A.close()
    await B.close()
    pieces.close()
  }
  return { a: idA, b: idB, stats }
}
