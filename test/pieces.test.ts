/**
 * The pieces layer (src/pieces/, native-notes/pieces.md): packs written through the store as
 * staged writes, the piece reader (ranged gets, checks, bounded cache, single flight), the
 * tree writer's reuse of unchanged directories and pages, DIRDELTAs, paging, the lazy tree
 * reader, and file maps — over real trees on disk and over DiskStore, MemStore and
 * FaultyStore.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { xxh64Seed0 } from '../src/codec/hash.js'
import { FormatError } from '../src/format/errors.js'
import { type Extent, type PieceRef, PieceKind } from '../src/format/v2/common.js'
import { type Entry2, FileType, cutDirPages, encodeDir, encodeDirDelta, encodeDirIndex, newEntry2 } from '../src/format/v2/dir.js'
import { type IdRow, type LinkRow, TableKind, cutIdPages } from '../src/format/v2/idtable.js'
import { keys2 } from '../src/format/v2/layout.js'
import { decodePackTable, decodePackTrailer } from '../src/format/v2/pack.js'
import { IdTableReader, IdTableWriter } from '../src/pieces/idtables.js'
import { MapReader, MapWriter } from '../src/pieces/maps.js'
import { PackWriter } from '../src/pieces/packs.js'
import { PieceReader } from '../src/pieces/reader.js'
import { type DirRef, PrevCursor, TreeReader } from '../src/pieces/tree-reader.js'
import { TreeWriter } from '../src/pieces/tree-writer.js'
import { DiskStore } from '../src/store/disk.js'
import { FaultyStore } from '../src/store/faulty.js'
import { MemStore } from '../src/store/mem.js'
import { StoreError, type Store } from '../src/store/store.js'
import { makeTree, sh, tmpdir } from './helpers.js'
import { type Gen, syntheticExtents, walkTree } from './pieces-walk.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const scratch: string[] = []
afterAll(() => {
  for (const d of scratch) fs.rmSync(d, { recursive: true, force: true })
})
const newDir = (p: string): string => {
  const d = tmpdir(p)
  scratch.push(d)
  return d
}

interface Repo {
  store: FaultyStore
  packs: PackWriter
  reader: PieceReader
  tree: TreeWriter
  maps: MapWriter
  treeReader: TreeReader
}

/** One run's writers over `store` (a FaultyStore wrapper that counts calls). */
function openRun(store: FaultyStore, run: number, cacheBytes?: number): Repo {
  const packs = new PackWriter(store, { run, packBytes: 1 << 20 })
  const reader = new PieceReader(store, { cacheBytes })
  return { store, packs, reader, tree: new TreeWriter(packs, reader, { xxh64: xxh64Seed0 }), maps: new MapWriter(packs, reader), treeReader: new TreeReader(reader) }
}

/** Bytes of the pack files run `run` wrote. */
async function packBytes(store: Store, run: number): Promise<number> {
  let n = 0
  for (const k of await store.list(keys2.genDir(run))) n += (await store.stat(k)).sizeBytes
  return n
}

/**
 * Reads every directory (readdir) and symlink (readlink) of the tree at `dir` once, so that
 * relatime has updated their atimes before a walk records them (a walk reads both).
 */
async function settleAtimes(dir: string): Promise<void> {
  await sh(`find '${dir}' -type d -exec ls -a {} + > /dev/null; find '${dir}' -type l -exec readlink {} + > /dev/null`)
}

/** The generated tree: makeTree's kinds and odd names, a wide directory (paged), a deep one, many small ones, fragmented files. */
async function generateTree(dir: string): Promise<{ files: number }> {
  await makeTree(dir)
  let files = 0
  const wide = path.join(dir, 'wide')
  fs.mkdirSync(wide)
  for (let i = 0; i < 6000; i++) fs.writeFileSync(path.join(wide, `f${String(i).padStart(5, '0')}`), `w${i}\n`)
  files += 6000
  let deep = path.join(dir, 'deep')
  for (let i = 0; i < 60; i++) deep = path.join(deep, `d${i}`)
  fs.mkdirSync(deep, { recursive: true })
  fs.writeFileSync(path.join(deep, 'leaf'), 'leaf\n')
  for (let d = 0; d < 300; d++) {
    const sub = path.join(dir, 'many', `d${String(d).padStart(3, '0')}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let f = 0; f < 5; f++) fs.writeFileSync(path.join(sub, `file${f}`), `${d}/${f}\n`)
    files += 5
  }
  // names with every odd byte but '/' and NUL
  const odd = path.join(dir, 'odd')
  fs.mkdirSync(odd)
  for (let b = 1; b < 256; b++) {
    if (b === 0x2f || b === 0x2e) continue
    fs.writeFileSync(Buffer.concat([Buffer.from(odd + '/'), Buffer.from([b, 0x78, b])]), String(b))
    files++
  }
  fs.writeFileSync(Buffer.concat([Buffer.from(odd + '/'), Buffer.from('\u00e9t\u00e9 \ud83d\ude00 \\ * ?', 'utf8')]), 'utf8')
  // maps: 8 extents (a MAPLEAF), 5,120 extents (a MAPINNER over leaves)
  await sh(`truncate -s 64K '${dir}/mid.frag' && truncate -s 40M '${dir}/big.frag'`)
  return { files: files + 20 }
}

/** Reads the stored tree completely and compares it with the directory on disk. */
async function compareTree(dir: string, gen: Gen, r: TreeReader, maps: MapReader, extents: Map<string, Extent[]>): Promise<number> {
  let n = 0
  const visit = async (p: Buffer, e: Entry2): Promise<void> => {
    const st = fs.lstatSync(p, { bigint: true })
    expect(Number(st.mode & 0o7777n)).toBe(e.mode)
    expect(Number(st.mtimeNs / 1_000_000_000n)).toBe(e.mtimeSec)
    expect(Number(st.mtimeNs % 1_000_000_000n)).toBe(e.mtimeNsec)
    n++
    if (e.type === FileType.Dir) {
      expect(st.isDirectory()).toBe(true)
      expect(e.nlink).toBe(Number(st.nlink))
      const names = (fs.readdirSync(p, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)
      const stored: Entry2[] = []
      for await (const c of r.entries(e.dir)) stored.push(c)
      expect(stored.map((c) => c.name.toString('hex'))).toEqual(names.map((x) => x.toString('hex')))
      expect(e.dir?.entries ?? 0).toBe(names.length)
      for (const c of stored) await visit(Buffer.concat([p, Buffer.from('/'), c.name]), c)
    } else if (e.type === FileType.File) {
      expect(st.isFile()).toBe(true)
      expect(e.size).toBe(Number(st.size))
      const want = extents.get(p.toString('latin1'))
      if (want) expect(await maps.extents(e)).toEqual(want)
      if (p.toString().endsWith('big.frag')) expect(e.map?.kind).toBe('ref')
    } else if (e.type === FileType.Symlink) {
      expect(e.target!.equals(fs.readlinkSync(p, { encoding: 'buffer' }) as Buffer)).toBe(true)
    }
  }
  await visit(Buffer.from(dir), gen.root)
  return n
}

const stores: Array<[string, () => Store]> = [
  ['MemStore', () => new MemStore()],
  ['DiskStore', () => DiskStore.create(newDir('bfs-pieces-repo-'))],
  // latency on a third of the reads: loads finish out of order, concurrent misses overlap
  ['FaultyStore (latency)', () => new FaultyStore(new MemStore(), { seed: 7, rules: [{ fault: 'latency', ops: ['get'], probability: 0.3, latencyMs: [0, 2] }] })],
]

describe('a real tree written as pieces and read back lazily', () => {
  let src: string
  let fileCount: number
  beforeAll(async () => {
    src = path.join(newDir('bfs-pieces-src-'), 'tree')
    fileCount = (await generateTree(src)).files
    await settleAtimes(src)
  })

  for (const [name, make] of stores) {
    it(`round trip, no-change generation, lookups and listings over ${name}`, async () => {
      const store = new FaultyStore(make(), { seed: 1, rules: [] })
      const extents = new Map<string, Extent[]>()
      const g1 = openRun(store, 1)
      const gen1 = await walkTree(src, { tree: g1.tree, maps: g1.maps, reader: g1.treeReader, run: 1, extents }, null)
      const s1 = await g1.packs.finish()
      expect(gen1.stats.files).toBeGreaterThanOrEqual(fileCount - 30)
      expect(s1.packs).toBeGreaterThanOrEqual(1)
      expect(g1.tree.stats.indexPieces).toBeGreaterThanOrEqual(1) // wide/ is paged
      expect(g1.maps.stats.trees).toBeGreaterThanOrEqual(2)
      expect(g1.tree.stats.reused).toBe(0)

      // everything reads back, through a cold reader
      const cold = new PieceReader(store)
      const n = await compareTree(src, gen1, new TreeReader(cold), new MapReader(cold), extents)
      // every path of the tree (find counts the root too), each compared with its lstat above
      expect(n).toBe(Number((await sh(`find '${src}' -printf . | wc -c`)).stdout.trim()))
      expect(n).toBeGreaterThan(7000)

      // packs kept open (as a mount reads): the same answers, no get, each pack opened once
      store.resetCounts()
      const kept = new PieceReader(store, { openPacks: 8 })
      expect(await compareTree(src, gen1, new TreeReader(kept), new MapReader(kept), extents)).toBe(n)
      expect(store.count('get')).toBe(0)
      expect(s1.packs).toBeLessThanOrEqual(8)
      expect(store.count('open')).toBe(s1.packs)
      expect(kept.stats.loads).toBeGreaterThan(10 * s1.packs)
      kept.close()
      // one kept open: evicted packs are closed and opened again when read again, never wrong
      store.resetCounts()
      const one = new PieceReader(store, { openPacks: 1, cacheBytes: 1 << 20 })
      expect(await compareTree(src, gen1, new TreeReader(one), new MapReader(one), extents)).toBe(n)
      expect(store.count('open')).toBeGreaterThanOrEqual(s1.packs)
      one.close()

      // the same tree again: nothing written, not even a pack file
      const g2 = openRun(store, 2)
      const gen2 = await walkTree(src, { tree: g2.tree, maps: g2.maps, reader: g2.treeReader, run: 2 }, gen1)
      const s2 = await g2.packs.finish()
      expect(gen2.stats.changedDirs).toBe(0)
      expect(gen2.stats.changedFiles).toBe(0)
      expect(s2.pieces).toBe(0)
      expect(await store.list(keys2.genDir(2))).toEqual([])
      expect(gen2.root.dir).toEqual(gen1.root.dir)
      expect(gen2.nextOrd).toBe(gen1.nextOrd)

      // a lookup loads only the pieces on its way: one DIR per directory of the path
      const deepPath = ['deep', ...Array.from({ length: 60 }, (_, i) => `d${i}`), 'leaf'].map((s) => Buffer.from(s))
      store.resetCounts()
      const r1 = new TreeReader(new PieceReader(store))
      const leaf = await r1.lookupPath(gen2.root, deepPath)
      expect(leaf?.name.toString()).toBe('leaf')
      expect(leaf?.size).toBe(5)
      expect(store.count('get')).toBe(62) // the root's piece, deep/, d0 … d59
      expect(r1.pieces.stats.loads).toBe(62)
      // wide/ has 6,000 entries: its DIRINDEX and one page
      store.resetCounts()
      const r2 = new TreeReader(new PieceReader(store))
      const f = await r2.lookupPath(gen2.root, [Buffer.from('wide'), Buffer.from('f03333')])
      expect(f?.size).toBe(6)
      expect(store.count('get')).toBe(3)
      expect(await r2.lookupPath(gen2.root, [Buffer.from('wide'), Buffer.from('f03333x')])).toBeNull()
      expect(await r2.lookupPath(gen2.root, [Buffer.from('hello.txt'), Buffer.from('x')])).toBeNull()
      expect(await r2.lookupPath(gen2.root, [Buffer.from('odd'), Buffer.from([0xff, 0x78, 0xff])])).not.toBeNull()

      // concurrent lookups of one path share the loads (single flight)
      store.resetCounts()
      const r3 = new TreeReader(new PieceReader(store))
      const all = await Promise.all(Array.from({ length: 40 }, () => r3.lookupPath(gen2.root, deepPath)))
      expect(all.every((e) => e?.name.toString() === 'leaf')).toBe(true)
      expect(store.count('get')).toBe(62)

      // a listing in pages of 500 = the whole listing, loading pages as it goes
      const wide = (await r2.lookupPath(gen2.root, [Buffer.from('wide')]))!
      const names: string[] = []
      let after: Buffer | null = null
      for (;;) {
        const page: { entries: Entry2[]; more: boolean } = await r2.list(wide.dir, { after, limit: 500 })
        names.push(...page.entries.map((e) => e.name.toString()))
        if (!page.more) break
        after = page.entries[page.entries.length - 1]!.name
      }
      expect(names).toEqual(Array.from({ length: 6000 }, (_, i) => `f${String(i).padStart(5, '0')}`))
      // by position (FUSE readdir offsets): pages before the position are skipped unread
      store.resetCounts()
      const r5 = new TreeReader(new PieceReader(store))
      expect((await r5.listAt(wide.dir, 2999, 5)).map((e) => e.name.toString())).toEqual(['f02999', 'f03000', 'f03001', 'f03002', 'f03003'])
      expect(store.count('get')).toBeLessThanOrEqual(3) // the index and the page(s) holding 2999 … 3003
      const byPos: string[] = []
      for (let i = 0; i < 6000; i += 700) byPos.push(...(await r5.listAt(wide.dir, i, 700)).map((e) => e.name.toString()))
      expect(byPos).toEqual(names)
      expect(await r5.listAt(wide.dir, 6000, 10)).toEqual([])
      const hello = await r5.listAt(gen2.root.dir, 0, 1000)
      expect(hello.length).toBe(gen2.root.dir!.entries)
      store.resetCounts()
      const r4 = new TreeReader(new PieceReader(store))
      const first = await r4.list(wide.dir, { limit: 10 })
      expect(first.entries.length).toBe(10)
      expect(first.more).toBe(true)
      expect(store.count('get')).toBe(2) // the index and the first page

      // maps: the tree of big.frag read whole and by block
      const mr = new MapReader(new PieceReader(store))
      const big = (await r2.lookupPath(gen2.root, [Buffer.from('big.frag')]))!
      expect(big.map?.kind).toBe('ref')
      const ext = await mr.extents(big)
      expect(ext.length).toBe(5120)
      expect(await mr.find(big, 0)).toEqual(ext[0])
      expect(await mr.find(big, 1)).toBeNull() // a hole
      expect(await mr.find(big, 8190)).toEqual(ext[4095])
      expect(await mr.find(big, 10240)).toBeNull() // past the end
    })
  }

  it('1 % of the files changed: only their directories and ancestors are written, small and proportional', async () => {
    const store = new FaultyStore(DiskStore.create(newDir('bfs-pieces-repo-')), { seed: 1, rules: [] })
    const g1 = openRun(store, 1)
    const gen1 = await walkTree(src, { tree: g1.tree, maps: g1.maps, reader: g1.treeReader, run: 1 }, null)
    await g1.packs.finish()
    const full = await packBytes(store, 1)

    // change 1 %: 62 files of wide/, 15 of many/*/ (15 directories), one in the deep chain
    const changed: string[] = []
    for (let i = 0; i < 6000; i += 100) changed.push(`wide/f${String(i).padStart(5, '0')}`)
    changed.push('wide/f05999', 'wide/f05998')
    for (let d = 0; d < 300; d += 20) changed.push(`many/d${String(d).padStart(3, '0')}/file2`)
    changed.push(['deep', ...Array.from({ length: 60 }, (_, i) => `d${i}`), 'leaf'].join('/'))
    for (const c of changed) fs.appendFileSync(path.join(src, c), 'changed\n')
    expect(changed.length).toBeGreaterThanOrEqual(Math.floor(gen1.stats.files / 100))

    const extents = new Map<string, Extent[]>()
    const g2 = openRun(store, 2)
    const gen2 = await walkTree(src, { tree: g2.tree, maps: g2.maps, reader: g2.treeReader, run: 2, extents }, gen1)
    const s2 = await g2.packs.finish()
    const growth = await packBytes(store, 2)
    expect(gen2.stats.changedFiles).toBe(changed.length)
    // written: wide's touched pages + its index, the 15 many/dNNN, many/ itself, the 61 deep
    // directories and deep/'s, and the root — nothing else
    const dirPieces = g2.tree.stats.dirPieces + g2.tree.stats.deltaPieces + g2.tree.stats.indexPieces
    expect(dirPieces).toBeLessThanOrEqual(3 + 1 + 15 + 1 + 61 + 1 + 1)
    expect(g2.tree.stats.deltaPieces).toBeGreaterThanOrEqual(1) // many/ (300 entries, 15 changed) and wide's pages
    expect(s2.pieces).toBe(dirPieces)
    // proportional: a few hundred bytes per changed directory, far below the full tree
    expect(growth).toBeLessThan(32 * 1024 + 600 * dirPieces)
    expect(growth * 5).toBeLessThan(full) // 62 of its pieces are the deep chain of 61 directories and their parents
    console.log(`pieces: full tree ${full} B in ${g1.packs.stats.pieces} pieces; 1 % change (${changed.length} files) ${growth} B in ${s2.pieces} pieces (${g2.tree.stats.deltaPieces} deltas)`)

    // both generations read correctly (the new one shares the old one's pieces)
    const cold = new PieceReader(store)
    await compareTree(src, gen2, new TreeReader(cold), new MapReader(cold), extents)
    const t = new TreeReader(new PieceReader(store))
    const old = await t.lookupPath(gen1.root, [Buffer.from('wide'), Buffer.from('f00100')])
    const neu = await t.lookupPath(gen2.root, [Buffer.from('wide'), Buffer.from('f00100')])
    expect(old!.size).toBe(5)
    expect(neu!.size).toBe(5 + 8)
    expect(neu!.ord).toBe(old!.ord)

    // a third generation with no change writes nothing again
    const g3 = openRun(store, 3)
    const gen3 = await walkTree(src, { tree: g3.tree, maps: g3.maps, reader: g3.treeReader, run: 3 }, gen2)
    expect((await g3.packs.finish()).pieces).toBe(0)
    expect(gen3.root.dir).toEqual(gen2.root.dir)
  })
})

/** n synthetic file entries named by `name(i)` (sorted when name is). */
function fileEntry(name: string, ord: number, size = 100): Entry2 {
  const e = newEntry2(FileType.File, Buffer.from(name))
  e.ord = ord
  e.mode = 0o644
  e.size = size
  e.mtimeSec = 1_700_000_000 + ord
  e.srcInoLo = ord
  e.map = size ? { kind: 'inline', extents: [{ fileBlock: 0, count: Math.ceil(size / 4096), stream: 1, streamBlock: ord }] } : null
  e.dataBlocks = size ? Math.ceil(size / 4096) : 0
  return e
}

describe('directory pieces: deltas, pages, reuse', () => {
  it('a big directory is paged exactly as cutDirPages cuts it, and one changed entry rewrites one page and the index', async () => {
    const store = new FaultyStore(new MemStore(), { seed: 1, rules: [] })
    const entries = Array.from({ length: 20_000 }, (_, i) => fileEntry(`name-${String(i).padStart(6, '0')}`, i + 1))
    const g1 = openRun(store, 1)
    const ref1 = (await g1.tree.writeDir(entries, null))!
    await g1.packs.finish()
    const pages = cutDirPages(entries, xxh64Seed0)
    expect(pages.length).toBeGreaterThan(2)
    const top = await g1.reader.piece(ref1.child)
    expect(top.kind).toBe(PieceKind.DirIndex)
    if (top.kind !== PieceKind.DirIndex) return
    expect(top.index.children.map((c) => c.entries)).toEqual(pages.map((p) => p.length))
    expect(g1.tree.stats.dirPieces).toBe(pages.length)

    const next = entries.slice()
    next[12_345] = fileEntry('name-012345', 12_346, 5000)
    const g2 = openRun(store, 2)
    const ref2 = (await g2.tree.writeDir(next, ref1))!
    await g2.packs.finish()
    expect(g2.tree.stats.dirPieces + g2.tree.stats.deltaPieces).toBe(1)
    expect(g2.tree.stats.deltaPieces).toBe(1) // a page of ≥ 256 entries with one put
    expect(g2.tree.stats.indexPieces).toBe(1)
    const r = new TreeReader(new PieceReader(store))
    expect((await r.lookup(ref2, Buffer.from('name-012345')))!.size).toBe(5000)
    expect((await r.lookup(ref1, Buffer.from('name-012345')))!.size).toBe(100)
    const all: Entry2[] = []
    for await (const e of r.entries(ref2)) all.push(e)
    expect(all.length).toBe(20_000)

    // written again unchanged: everything reused, the DIRINDEX too
    const g3 = openRun(store, 3)
    const ref3 = (await g3.tree.writeDir(next, ref2))!
    expect((await g3.packs.finish()).pieces).toBe(0)
    expect(ref3).toEqual(ref2)
  })

  it('deltas are cumulative over their base DIR, depth 1, until a DIR pays off again', async () => {
    const store = new FaultyStore(new MemStore(), { seed: 1, rules: [] })
    let list = Array.from({ length: 1000 }, (_, i) => fileEntry(`e${String(i).padStart(4, '0')}`, i + 1))
    let run = 1
    const w0 = openRun(store, run)
    let ref = (await w0.tree.writeDir(list, null))!
    await w0.packs.finish()
    const firstBase = ref.child
    const kinds: number[] = []
    const bases: string[] = []
    for (let round = 0; round < 40; round++) {
      // 10 more entries differ from the first generation each round
      list = list.map((e, i) => (i >= round * 10 && i < round * 10 + 10 ? fileEntry(e.name.toString(), e.ord, 5000 + round) : e))
      const w = openRun(store, ++run)
      ref = (await w.tree.writeDir(list, ref))!
      await w.packs.finish()
      const p = await w.reader.piece(ref.child)
      kinds.push(p.kind)
      if (p.kind === PieceKind.DirDelta) {
        // over a DIR, never over the previous delta
        expect((await w.reader.piece(p.delta.base)).kind).toBe(PieceKind.Dir)
        bases.push(p.delta.base.id.toString('hex'))
      }
      const r = new TreeReader(new PieceReader(store))
      const got: Entry2[] = []
      for await (const e of r.entries(ref)) got.push(e)
      expect(got.map((e) => e.size)).toEqual(list.map((e) => e.size))
    }
    const firstDir = kinds.indexOf(PieceKind.Dir)
    expect(firstDir).toBeGreaterThan(5) // deltas while they stay ≤ ¼ of the base
    expect(kinds.slice(0, firstDir).every((k) => k === PieceKind.DirDelta)).toBe(true)
    expect(bases.slice(0, firstDir).every((b) => b === firstBase.id.toString('hex'))).toBe(true) // cumulative: one base
    expect(kinds[firstDir + 1]).toBe(PieceKind.DirDelta) // and deltas again over the new DIR
  })

  it("a two-level DIRINDEX is read with each child's name range carried down, and a page outside its range is refused", async () => {
    const store = new MemStore()
    const packs = new PackWriter(store, { run: 1, packBytes: 1 << 20 })
    const names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']
    const page = (from: number, to: number) => packs.add(encodeDir(names.slice(from, to).map((n, i) => fileEntry(n, from + i + 1))))
    const p0 = page(0, 2) // a b
    const p1 = page(2, 4) // c d
    const p2 = page(4, 6) // e f
    const p3 = page(6, 8) // g h
    const node = (kids: Array<[string, PieceRef, number]>, level: number) =>
      packs.add(encodeDirIndex({ level, totalEntries: kids.reduce((s, k) => s + k[2], 0), children: kids.map(([n, ref, entries]) => ({ firstName: Buffer.from(n), ref, entries })) }))
    const n0 = node([['', p0, 2], ['c', p1, 2]], 0)
    const n1 = node([['', p2, 2], ['g', p3, 2]], 0) // its first child's range starts at 'e'
    const root = node([['', n0, 4], ['e', n1, 4]], 1)
    // the same shape with a lower node whose first page does not start at its range's first name
    const bad1 = node([['', p1, 2], ['g', p3, 2]], 0)
    const badRoot = node([['', n0, 4], ['e', bad1, 4]], 1)
    await packs.finish()
    const r = new TreeReader(new PieceReader(store))
    const dir = { child: root, entries: 8 }
    for (const n of names) expect((await r.lookup(dir, Buffer.from(n)))?.name.toString()).toBe(n)
    expect(await r.lookup(dir, Buffer.from('ee'))).toBeNull()
    const all: string[] = []
    for await (const e of r.entries(dir)) all.push(e.name.toString())
    expect(all).toEqual(names)
    expect((await r.list(dir, { after: Buffer.from('d'), limit: 3 })).entries.map((e) => e.name.toString())).toEqual(['e', 'f', 'g'])
    await expect(r.lookup({ child: badRoot, entries: 8 }, Buffer.from('f'))).rejects.toThrow(/starts with "c", its index says "e"/)
    await expect(r.lookup({ child: root, entries: 9 }, Buffer.from('f'))).rejects.toThrow(FormatError)
  })

  it('a directory of more than 4,096 pages gets a two-level DIRINDEX that reads back (1,048,832 entries)', async () => {
    // names chosen so that every page ends after exactly 256 entries (the cut hash hits on
    // each 256th name): 4,097 pages, one more than a level-0 index holds
    const PAGES = 4097
    const name = (p: number, i: number, k = 0): string => `n${String(p).padStart(5, '0')}-${String(i).padStart(3, '0')}${k ? `-${k}` : ''}`
    const lastOfPage: string[] = []
    for (let p = 0; p < PAGES; p++) {
      let k = 1
      while ((xxh64Seed0(Buffer.from(name(p, 255, k))) & 2047n) !== 0n) k++
      lastOfPage.push(name(p, 255, k))
    }
    const store = DiskStore.create(newDir('bfs-pieces-huge-'))
    const packs = new PackWriter(store, { run: 1 })
    const tree = new TreeWriter(packs, new PieceReader(store, { cacheBytes: 8 << 20 }), { xxh64: xxh64Seed0 })
    const w = tree.openDir(null)
    let ord = 1
    for (let p = 0; p < PAGES; p++) {
      for (let i = 0; i < 255; i++) await w.add(fileEntry(name(p, i), ord++, 0))
      await w.add(fileEntry(lastOfPage[p]!, ord++, 0))
    }
    const ref = (await w.close())!
    await packs.finish()
    expect(ref.entries).toBe(PAGES * 256)
    expect(tree.stats.dirPieces).toBe(PAGES)
    expect(tree.stats.indexPieces).toBeGreaterThan(2) // the level-0 nodes and the root
    const faulty = new FaultyStore(store, { seed: 1, rules: [] })
    const reader = new PieceReader(faulty)
    const top = await reader.piece(ref.child)
    expect(top.kind === PieceKind.DirIndex && top.index.level).toBe(1)
    const r = new TreeReader(reader)
    faulty.resetCounts()
    for (const [p, i] of [[0, 0], [2049, 17], [4096, 254]] as const) expect((await r.lookup(ref, Buffer.from(name(p, i))))?.name.toString()).toBe(name(p, i))
    expect((await r.lookup(ref, Buffer.from(lastOfPage[3000]!)))?.name.toString()).toBe(lastOfPage[3000])
    expect(await r.lookup(ref, Buffer.from(name(3000, 255)))).toBeNull()
    expect(faulty.count('get')).toBeLessThanOrEqual(1 + 4 * 2) // the root, then a level-0 node and a page each
    // a listing across a level-0 node's boundary
    const names: string[] = []
    let after: Buffer | null = Buffer.from(name(1000, 100))
    for (let n = 0; n < 20; n++) {
      const page: { entries: Entry2[]; more: boolean } = await r.list(ref, { after, limit: 400 })
      names.push(...page.entries.map((e) => e.name.toString()))
      after = page.entries[page.entries.length - 1]!.name
    }
    expect(names.length).toBe(8000)
    expect(names[0]).toBe(name(1000, 101))
    for (let i = 1; i < names.length; i++) expect(names[i]! > names[i - 1]!).toBe(true)
  })

  it('PrevCursor merges a new listing with the previous one: hits, new names, and the deleted ones counted', async () => {
    const store = new MemStore()
    const g = openRun(new FaultyStore(store, { seed: 1, rules: [] }), 1)
    const prev = (await g.tree.writeDir(['b', 'd', 'f', 'h'].map((n, i) => fileEntry(n, i + 1)), null))!
    await g.packs.finish()
    const r = new TreeReader(new PieceReader(store))
    const c = new PrevCursor(r, prev)
    expect(await c.seek(Buffer.from('a'))).toBeNull()
    expect((await c.seek(Buffer.from('b')))?.ord).toBe(1)
    expect(await c.seek(Buffer.from('e'))).toBeNull() // d passed over: deleted
    expect((await c.seek(Buffer.from('f')))?.ord).toBe(3)
    await expect(c.seek(Buffer.from('f'))).rejects.toThrow(RangeError)
    expect(await c.finish()).toBe(2) // d and h
    const empty = new PrevCursor(r, null)
    expect(await empty.seek(Buffer.from('x'))).toBeNull()
    expect(await empty.finish()).toBe(0)
  })

  it('entries out of order are refused by the writer', async () => {
    const store = new MemStore()
    const g = openRun(new FaultyStore(store, { seed: 1, rules: [] }), 1)
    const w = g.tree.openDir(null)
    await w.add(fileEntry('b', 1))
    await expect(w.add(fileEntry('a', 2))).rejects.toThrow(RangeError)
    await expect(w.add(fileEntry('b', 3))).rejects.toThrow(RangeError)
  })
})

describe('map pieces', () => {
  it('a changed region of a big map rewrites one leaf and the root; the rest is reused', async () => {
    const store = new FaultyStore(new MemStore(), { seed: 1, rules: [] })
    const size = 64 << 20 // 16,384 blocks: root shift 20, children of shift 12 (4,096 blocks)
    const ext = syntheticExtents(Buffer.from('x.frag'), size, 1, { block: 0 })
    const g1 = openRun(store, 1)
    const m1 = await g1.maps.write(ext, size, null)
    await g1.packs.finish()
    expect(m1.map?.kind).toBe('ref')
    expect(g1.maps.stats.written).toBe(5) // 4 leaves + the root
    const e1 = { map: m1.map, size, dataBlocks: m1.dataBlocks }
    const mr = new MapReader(new PieceReader(store))
    expect(await mr.extents(e1)).toEqual(ext)

    // blocks 5000 … 5001 rewritten into stream 2: inside the second leaf
    const ext2 = ext.map((e) => (e.fileBlock === 5000 ? { ...e, stream: 2, streamBlock: 0 } : e))
    const g2 = openRun(store, 2)
    const m2 = await g2.maps.write(ext2, size, e1)
    await g2.packs.finish()
    expect(g2.maps.stats.written).toBe(2)
    expect(g2.maps.stats.reused).toBe(3)
    const e2 = { map: m2.map, size, dataBlocks: m2.dataBlocks }
    expect(await new MapReader(new PieceReader(store)).extents(e2)).toEqual(ext2)
    expect(await mr.find(e2, 5000)).toEqual({ fileBlock: 5000, count: 1, stream: 2, streamBlock: 0 })
    // unchanged: nothing written
    const g3 = openRun(store, 3)
    const m3 = await g3.maps.write(ext2, size, e2)
    expect((await g3.packs.finish()).pieces).toBe(0)
    expect(m3.map).toEqual(m2.map)
  })

  it('small maps stay inline and write no piece', async () => {
    const store = new MemStore()
    const g = openRun(new FaultyStore(store, { seed: 1, rules: [] }), 1)
    const m = await g.maps.write([{ fileBlock: 0, count: 3, stream: 1, streamBlock: 9 }], 10_000, null)
    expect(m).toEqual({ map: { kind: 'inline', extents: [{ fileBlock: 0, count: 3, stream: 1, streamBlock: 9 }] }, dataBlocks: 3 })
    expect(await g.maps.write([], 0, null)).toEqual({ map: null, dataBlocks: 0 })
    expect((await g.packs.finish()).pieces).toBe(0)
  })
})

describe('identity tables (the links table)', () => {
  const row = (i: number, nlink = 2): LinkRow => ({ srcDev: 2049, srcInoHi: 0, srcInoLo: 1000 + i * 3, source: 0, ord: 50_000 + i, nlinkInGen: nlink })
  it('a big table is paged as cutIdPages cuts it, read by lookups, and one changed row rewrites one page and the index', async () => {
    const store = new FaultyStore(new MemStore(), { seed: 1, rules: [] })
    const rows = Array.from({ length: 10_000 }, (_, i) => row(i))
    const g1 = openRun(store, 1)
    const w1 = new IdTableWriter(g1.packs, g1.reader, TableKind.Links, null, xxh64Seed0)
    for (const r of rows) await w1.add(r)
    const t1 = (await w1.close())!
    await g1.packs.finish()
    const pages = cutIdPages(rows, xxh64Seed0)
    expect(w1.stats.written).toBe(pages.length + 1)
    const top = await new PieceReader(store).piece(t1.ref)
    expect(top.kind).toBe(PieceKind.IdIndex)
    if (top.kind === PieceKind.IdIndex) expect(top.index.children.map((c) => c.rows)).toEqual(pages.map((p) => p.length))

    store.resetCounts()
    const rd = new IdTableReader(new PieceReader(store), TableKind.Links)
    expect(await rd.find(t1.ref, row(7777))).toEqual(row(7777))
    expect(store.count('get')).toBe(2) // the index and one page
    expect(await rd.find(t1.ref, { srcDev: 2049, srcInoHi: 0, srcInoLo: 1001 })).toBeNull()
    const all: IdRow[] = []
    for await (const r of rd.rows(t1.ref)) all.push(r)
    expect(all).toEqual(rows)

    const rows2 = rows.slice()
    rows2[5000] = row(5000, 3)
    const g2 = openRun(store, 2)
    const w2 = new IdTableWriter(g2.packs, g2.reader, TableKind.Links, t1.ref, xxh64Seed0)
    for (const r of rows2) await w2.add(r)
    const t2 = (await w2.close())!
    await g2.packs.finish()
    expect(w2.stats.written).toBe(2)
    expect(w2.stats.reused).toBe(pages.length - 1)
    expect((await new IdTableReader(new PieceReader(store), TableKind.Links).find(t2.ref, row(5000)))).toEqual(row(5000, 3))
    expect((await new IdTableReader(new PieceReader(store), TableKind.Links).find(t1.ref, row(5000)))).toEqual(row(5000, 2))
  })

  it('a small table is one IDPAGE, an empty one none, rows out of order are refused', async () => {
    const store = new FaultyStore(new MemStore(), { seed: 1, rules: [] })
    const g = openRun(store, 1)
    const w = new IdTableWriter(g.packs, g.reader, TableKind.Links, null, xxh64Seed0)
    for (let i = 0; i < 4096; i++) await w.add(row(i))
    const t = (await w.close())!
    expect(w.stats.written).toBe(1)
    expect(await new IdTableWriter(g.packs, g.reader, TableKind.Links, null, xxh64Seed0).close()).toBeNull()
    const bad = new IdTableWriter(g.packs, g.reader, TableKind.Links, null, xxh64Seed0)
    await bad.add(row(5))
    await expect(bad.add(row(4))).rejects.toThrow(RangeError)
    await g.packs.finish()
    expect((await new PieceReader(store).piece(t.ref)).kind).toBe(PieceKind.IdPage)
    expect(await new IdTableReader(new PieceReader(store), TableKind.Links).find(t.ref, row(4095))).toEqual(row(4095))
  })
})

describe('damage is an error, never wrong data', () => {
  let base: MemStore
  let root: DirRef
  beforeAll(async () => {
    base = new MemStore()
    const g = openRun(new FaultyStore(base, { seed: 1, rules: [] }), 1)
    const dirs: DirRef[] = []
    for (let d = 0; d < 20; d++) dirs.push((await g.tree.writeDir(Array.from({ length: 50 }, (_, i) => fileEntry(`f${String(i).padStart(2, '0')}`, d * 100 + i + 1)), null))!)
    root = (await g.tree.writeDir(dirs.map((r, d) => {
      const e = newEntry2(FileType.Dir, Buffer.from(`d${String(d).padStart(2, '0')}`))
      e.ord = 5000 + d
      e.dir = r
      return e
    }), null))!
    await g.packs.finish()
  })

  async function readAllFrom(store: Store, top: DirRef): Promise<number> {
    const r = new TreeReader(new PieceReader(store))
    let n = 0
    for await (const d of r.entries(top)) for await (const _ of r.entries(d.dir)) n++
    return n
  }
  const readAll = (store: Store): Promise<number> => readAllFrom(store, root)

  it('a flipped byte in a pack file on disk is a FormatError naming the pack and the offset', async () => {
    const dir = newDir('bfs-pieces-flip-')
    const disk = DiskStore.create(dir)
    for (const k of await base.list('gens/00000001')) await disk.put(k, await base.get(k))
    expect(await readAll(disk)).toBe(1000)
    const file = path.join(dir, keys2.pack(1, 0))
    const bytes = fs.readFileSync(file)
    const rows = decodePackTable(bytes.subarray(Number(bytes.readBigUInt64LE(bytes.length - 32)), bytes.length - 32), decodePackTrailer(bytes.subarray(bytes.length - 32), bytes.length, false, 'pack'), false, 'pack')
    // every piece, one at a time: each flipped byte is caught where it is
    for (const row of rows.filter((_, i) => i % 5 === 0 || i === rows.length - 1)) {
      for (const at of [0, Math.floor(row.storedLen / 2), row.storedLen - 1]) {
        const damaged = Buffer.from(bytes)
        damaged[row.offset + at]! ^= 0x40
        fs.writeFileSync(file, damaged)
        const err = await readAll(disk).then(() => null, (e: unknown) => e)
        expect(err).toBeInstanceOf(FormatError)
        expect((err as Error).message).toContain('pack-00000000')
        expect((err as Error).message).toContain(`at offset ${row.offset}`)
      }
    }
    fs.writeFileSync(file, bytes)
    expect(await readAll(disk)).toBe(1000)
  })

  it('a new generation never depends on damage: an unreadable previous directory is written afresh, the rest reused', async () => {
    // the previous generation with d05's piece damaged
    const store = new MemStore()
    const bytes = Buffer.from(await base.get(keys2.pack(1, 0)))
    const r0 = new TreeReader(new PieceReader(base))
    const d05 = (await r0.lookup(root, Buffer.from('d05')))!
    bytes[d05.dir!.child.offset + 3]! ^= 0x01
    await store.put(keys2.pack(1, 0), bytes)
    const g2 = openRun(new FaultyStore(store, { seed: 1, rules: [] }), 2)
    const dirs: DirRef[] = []
    for (let d = 0; d < 20; d++) {
      const prev = (await g2.treeReader.lookup(root, Buffer.from(`d${String(d).padStart(2, '0')}`)))!.dir
      dirs.push((await g2.tree.writeDir(Array.from({ length: 50 }, (_, i) => fileEntry(`f${String(i).padStart(2, '0')}`, d * 100 + i + 1)), prev))!)
    }
    const root2 = (await g2.tree.writeDir(dirs.map((r, d) => {
      const e = newEntry2(FileType.Dir, Buffer.from(`d${String(d).padStart(2, '0')}`))
      e.ord = 5000 + d
      e.dir = r
      return e
    }), root))!
    await g2.packs.finish()
    expect(g2.tree.unreadable.count).toBe(1)
    expect(g2.tree.unreadable.messages[0]).toMatch(/pack-00000000 at offset \d+/)
    expect(g2.tree.stats.reused).toBe(19)
    expect(g2.tree.stats.dirPieces).toBe(2) // d05 afresh, and the root that points at it
    expect(dirs[5]!.child.run).toBe(2)
    expect(dirs[4]!.child.run).toBe(1)
    expect(await readAllFrom(store, root2)).toBe(1000)
    await expect(readAllFrom(store, root)).rejects.toThrow(FormatError)
  })

  it('a map or identity table whose previous pieces are unreadable is written afresh', async () => {
    const store = new MemStore()
    const size = 64 << 20
    const ext = syntheticExtents(Buffer.from('x.frag'), size, 1, { block: 0 })
    const g1 = openRun(new FaultyStore(store, { seed: 1, rules: [] }), 1)
    const m1 = await g1.maps.write(ext, size, null)
    await g1.packs.finish()
    const faulty = new FaultyStore(store, { seed: 1, rules: [{ fault: 'EIO', keys: 'gens/00000001/**' }] })
    const g2 = openRun(faulty, 2)
    const m2 = await g2.maps.write(ext, size, { map: m1.map, size, dataBlocks: m1.dataBlocks })
    await g2.packs.finish()
    expect(g2.maps.unreadable.count).toBe(1)
    expect(g2.maps.stats.written).toBe(5)
    expect(await new MapReader(new PieceReader(store)).extents({ map: m2.map, size, dataBlocks: m2.dataBlocks })).toEqual(ext)
  })

  it('flipped, short and failed reads through FaultyStore are errors; a retry after a transient EIO reads the right entries', async () => {
    const flip = new FaultyStore(base, { seed: 3, rules: [{ fault: 'flip', keys: 'gens/*/pack-*', flipBytes: 1 }] })
    await expect(readAll(flip)).rejects.toThrow(FormatError)
    const short = new FaultyStore(base, { seed: 3, rules: [{ fault: 'short', keys: 'gens/*/pack-*', shortBytes: 2000 }] })
    const e1 = await readAll(short).then(() => null, (e: unknown) => e)
    expect(e1).toBeInstanceOf(FormatError)
    expect((e1 as FormatError).code).toBe('TRUNCATED')
    expect((e1 as Error).message).toMatch(/pack-00000000 at offset \d+: the pack ends before/)
    const eio = new FaultyStore(base, { seed: 3, rules: [{ fault: 'EIO', keys: 'gens/*/pack-*', after: 7, times: 1 }] })
    const reader = new PieceReader(eio)
    const r = new TreeReader(reader)
    const walk = async (): Promise<number> => {
      let n = 0
      for await (const d of r.entries(root)) for await (const _ of r.entries(d.dir)) n++
      return n
    }
    const e2 = await walk().then(() => null, (e: unknown) => e)
    expect(e2).toBeInstanceOf(StoreError)
    expect((e2 as StoreError).code).toBe('EIO')
    expect(await walk()).toBe(1000) // the failure was not cached
    // the missing pack
    const gone = new MemStore()
    await expect(readAll(gone)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('a DIRDELTA over a DIRDELTA (depth 2) and a child written after its parent are refused', async () => {
    const store = new MemStore()
    const packs = new PackWriter(store, { run: 1, packBytes: 1 << 20 })
    const list = Array.from({ length: 100 }, (_, i) => fileEntry(`n${String(i).padStart(3, '0')}`, i + 1))
    const dirRef = packs.add(encodeDir(list))
    const d1 = packs.add(encodeDirDelta({ base: dirRef, resultEntries: 100, ops: [{ op: 'put', entry: fileEntry('n001', 2, 7) }] }))
    const d2 = packs.add(encodeDirDelta({ base: d1, resultEntries: 100, ops: [{ op: 'put', entry: fileEntry('n002', 3, 7) }] }))
    await packs.finish()
    const r = new TreeReader(new PieceReader(store))
    expect((await r.lookup({ child: d1, entries: 100 }, Buffer.from('n001')))!.size).toBe(7)
    await expect(r.lookup({ child: d2, entries: 100 }, Buffer.from('n001'))).rejects.toThrow(/not a DIR/)
    // an entry count that does not match the piece
    await expect(r.lookup({ child: dirRef, entries: 99 }, Buffer.from('n001'))).rejects.toThrow(FormatError)
  })
})

describe('pack writes', () => {
  it('packs are staged writes, committed in order at their size limit; a full disk fails the run and leaves no litter', async () => {
    const dir = newDir('bfs-pieces-packs-')
    const disk = DiskStore.create(dir)
    const store = new FaultyStore(disk, { seed: 1, rules: [] })
    const packs = new PackWriter(store, { run: 3, packBytes: 1 << 20 })
    // incompressible pieces of ~100 KiB: eleven fill a 1 MiB pack
    const piece = (): Buffer => {
      const b = randomBytes(100_000)
      return encodeDir([{ ...fileEntry('x', 1), xattrs: [[Buffer.from('user.x'), b.subarray(0, 65536)], [Buffer.from('user.y'), b.subarray(65536)]] }])
    }
    const refs = []
    for (let i = 0; i < 30; i++) {
      refs.push(packs.add(piece()))
      await packs.settle()
    }
    const stats = await packs.finish()
    expect(stats.packs).toBe(3)
    expect(new Set(refs.map((r) => r.pack))).toEqual(new Set([0, 1, 2]))
    for (let i = 1; i < refs.length; i++) expect(refs[i]!.pack > refs[i - 1]!.pack || refs[i]!.offset > refs[i - 1]!.offset).toBe(true)
    expect(store.count('stage')).toBe(3)
    expect(store.count('commitStaged')).toBe(3)
    expect(await store.list(keys2.genDir(3))).toEqual([keys2.pack(3, 0), keys2.pack(3, 1), keys2.pack(3, 2)])
    for (const r of [refs[0]!, refs[17]!, refs[29]!]) expect((await new PieceReader(store).piece(r)).kind).toBe(PieceKind.Dir)
    for (let k = 0; k < 3; k++) expect((await disk.stat(keys2.pack(3, k))).sizeBytes).toBeLessThanOrEqual((1 << 20) + 64 + 32 + 52 * 12)

    // ENOSPC on the second pack's write: the run fails with it, the first pack stays, no temporary file is left
    const full = new FaultyStore(disk, { seed: 1, rules: [{ fault: 'ENOSPC', keys: 'gens/00000004/pack-*', ops: ['writeStaged'], after: 1 }] })
    const p4 = new PackWriter(full, { run: 4, packBytes: 1 << 20 })
    const err = await (async () => {
      for (let i = 0; i < 30; i++) {
        p4.add(piece())
        await p4.settle()
      }
      await p4.finish()
    })().then(() => null, (e: unknown) => e)
    expect(err).toBeInstanceOf(StoreError)
    expect((err as StoreError).code).toBe('ENOSPC')
    expect(() => p4.add(piece())).toThrow(StoreError) // a failed writer stays failed
    expect(await disk.list(keys2.genDir(4))).toEqual([keys2.pack(4, 0)])
    expect(fs.readdirSync(path.join(dir, keys2.genDir(4))).filter((n) => n.includes('.tmp-'))).toEqual([])
  })
})

describe('pack writes appended as they grow', () => {
  // incompressible pieces of ~100 KiB
  const piece = (): Buffer => {
    const b = randomBytes(100_000)
    return encodeDir([{ ...fileEntry('x', 1), xattrs: [[Buffer.from('user.x'), b.subarray(0, 65536)], [Buffer.from('user.y'), b.subarray(65536)]] }])
  }

  it('a store with appendStaged gets the open pack in runs of ≥ 1 MiB at settle(); the files are those a whole write gives', async () => {
    const dir = newDir('bfs-pieces-append-')
    const disk = DiskStore.create(dir)
    const appends: number[] = []
    const spy = Object.assign(Object.create(disk) as DiskStore, {
      appendStaged: async (st: Parameters<DiskStore['appendStaged']>[0], data: readonly Uint8Array[], at: number) => {
        appends.push(data.reduce((n, b) => n + b.length, 0))
        return disk.appendStaged(st, data, at)
      },
    })
    const mem = new MemStore()
    const a = new PackWriter(spy, { run: 5, packBytes: 4 << 20 })
    const b = new PackWriter(mem, { run: 5, packBytes: 4 << 20 })
    const payloads = Array.from({ length: 60 }, piece)
    const refs: PieceRef[] = []
    for (const [i, p] of payloads.entries()) {
      refs.push(a.add(p))
      b.add(p)
      await a.settle()
      await b.settle()
      if (i === 20) {
        // pack 0 is not written yet, but most of it is on disk, under its temporary name
        expect(await disk.list(keys2.genDir(5))).toEqual([])
        const tmp = fs.readdirSync(path.join(dir, keys2.genDir(5)))
        expect(tmp).toHaveLength(1)
        expect(fs.statSync(path.join(dir, keys2.genDir(5), tmp[0]!)).size).toBeGreaterThan(1 << 20)
      }
    }
    const sa = await a.finish()
    const sb = await b.finish()
    expect(sa).toEqual(sb)
    expect(sa.packs).toBe(2)
    // each append (but a pack's last, with its table and trailer) ≥ 1 MiB, and ~1 MiB: the writer held no more
    expect(appends.length).toBeGreaterThanOrEqual(6) // pack 0: 3 of 11 pieces, then the rest; pack 1: one, then the rest
    expect(Math.max(...appends)).toBeLessThan((1 << 20) + 2 * 100_100)
    for (const k of await mem.list(keys2.genDir(5))) expect((await disk.get(k)).equals(await mem.get(k))).toBe(true)
    expect(fs.readdirSync(path.join(dir, keys2.genDir(5))).sort()).toEqual([keys2.pack(5, 0), keys2.pack(5, 1)].map((k) => path.basename(k)))
    for (const r of [refs[0]!, refs[35]!, refs[59]!]) expect((await new PieceReader(disk).piece(r)).kind).toBe(PieceKind.Dir)
  })

  it('an append that fails fails the run with its error, the writer stays failed, and no temporary file is left', async () => {
    const dir = newDir('bfs-pieces-append-fail-')
    const disk = DiskStore.create(dir)
    let calls = 0
    const failing = Object.assign(Object.create(disk) as DiskStore, {
      appendStaged: async (st: Parameters<DiskStore['appendStaged']>[0], data: readonly Uint8Array[], at: number) => {
        if (++calls === 3) throw new StoreError('ENOSPC', keys2.pack(6, 0), 'injected: disk full')
        return disk.appendStaged(st, data, at)
      },
    })
    const p = new PackWriter(failing, { run: 6 })
    const err = await (async () => {
      for (let i = 0; i < 40; i++) {
        p.add(piece())
        await p.settle()
      }
      await p.finish()
    })().then(() => null, (e: unknown) => e)
    expect((err as StoreError).code).toBe('ENOSPC')
    expect(() => p.add(piece())).toThrow(StoreError)
    expect(fs.readdirSync(path.join(dir, keys2.genDir(6)))).toEqual([])
  })
})

describe('memory', () => {
  it('writing a 200k-entry tree keeps the heap bounded (the walk holds its open path, not the tree)', async () => {
    const store = DiskStore.create(newDir('bfs-pieces-mem-'))
    const packs = new PackWriter(store, { run: 1 })
    const reader = new PieceReader(store, { cacheBytes: 8 << 20 })
    const tree = new TreeWriter(packs, reader, { xxh64: xxh64Seed0 })
    gc()
    const before = process.memoryUsage().heapUsed
    let peak = 0
    let ord = 1
    const sample = (): void => {
      gc()
      peak = Math.max(peak, process.memoryUsage().heapUsed - before)
    }
    // 190 directories of 1,000 files (in 19 parents) and one directory of 10,000 (paged)
    const top = tree.openDir(null)
    for (let p = 0; p < 19; p++) {
      const parent = tree.openDir(null)
      for (let d = 0; d < 10; d++) {
        const w = tree.openDir(null)
        for (let f = 0; f < 1000; f++) await w.add(fileEntry(`file-${String(f).padStart(5, '0')}-with-a-longer-name.txt`, ord++, 1 + f * 97))
        const e = newEntry2(FileType.Dir, Buffer.from(`d${d}`))
        e.ord = ord++
        e.dir = await w.close()
        await parent.add(e)
        if (d % 3 === 0) sample()
      }
      const e = newEntry2(FileType.Dir, Buffer.from(`p${String(p).padStart(2, '0')}`))
      e.ord = ord++
      e.dir = await parent.close()
      await top.add(e)
    }
    const big = tree.openDir(null)
    for (let f = 0; f < 10_000; f++) {
      await big.add(fileEntry(`big-${String(f).padStart(6, '0')}`, ord++, 4096))
      if (f % 2500 === 0) sample()
    }
    const e = newEntry2(FileType.Dir, Buffer.from('zz-big'))
    e.ord = ord++
    e.dir = await big.close()
    await top.add(e)
    const root = await top.close()
    const stats = await packs.finish()
    sample()
    expect(ord).toBeGreaterThan(200_000)
    console.log(`memory: ${ord - 1} entries, ${stats.pieces} pieces in ${stats.packs} packs (${stats.packFileBytes} B); heap growth peak ${(peak / 1048576).toFixed(1)} MiB`)
    // 200k decoded entries would be > 100 MiB; the writer holds one page per open directory
    expect(peak).toBeLessThan(40 << 20)
    const r = new TreeReader(new PieceReader(store))
    const hit = await r.lookupPath({ ...newEntry2(FileType.Dir, Buffer.alloc(0)), dir: root }, [Buffer.from('p07'), Buffer.from('d3'), Buffer.from('file-00042-with-a-longer-name.txt')])
    expect(hit?.size).toBe(1 + 42 * 97)
  })
})
