/**
 * `bfs backup --volume IMAGE` on a format 2 repository (format.md §2.14.1), through the real
 * CLI: a 64 MiB sparse image of random regions (enough extents that its map is a tree of map
 * pieces: an inner root over four leaves), backed up in full, changed, backed up again (a
 * block-incremental that rewrites only the touched leaf and the root and refers to the other
 * leaves), and once more unchanged (not read). Every generation is restored, read with cat,
 * and read through a real FUSE mount (its own process, unmounted in teardown), each compared
 * with `cmp` against a copy of the image taken at its backup; verify --all passes. Then the
 * older generation is forgotten and pruned: its dead unit goes, the pack holding the leaves
 * the kept generation still refers to stays, and the kept generation restores byte-identical.
 * A damaged previous root piece makes the next backup read the image whole (§2.20.10).
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { PieceKind } from '../src/format/v2/common.js'
import { Repo2 } from '../src/repo/v2/repo2.js'
import { PieceReader } from '../src/pieces/reader.js'
import { TreeReader } from '../src/pieces/tree-reader.js'

const MiB = 1 << 20
let work: string
const mounts = new Set<string>()

const ok = async (args: string[], repo: string): Promise<string> => {
  const res = await bfs(args, { repo })
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0)
  return res.stdout
}
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
const du = async (dir: string): Promise<number> => Number((await sh(`du -sb '${dir}'`)).stdout.split('\t')[0])
const cmp = async (a: string, b: string): Promise<void> => {
  const r = await sh(`cmp '${a}' '${b}'`)
  expect(r.code, `cmp ${a} ${b}: ${r.stdout}${r.stderr}`).toBe(0)
}

/** A deterministic generator (the image's layout), so that a failure can be replayed. */
function lcg(seed: number): () => number {
  let x = seed >>> 0
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32
}

/**
 * 64 MiB, sparse: four 2 MiB random regions at MiB-aligned places, and 1,600 runs of 1–3
 * random blocks spread over the image (each run its own extent: > 1,024 extents make the map a
 * tree, §2.14), some blocks written as zeros (all-zero data: holes in the map).
 */
function makeImage(file: string): void {
  fs.writeFileSync(file, '')
  fs.truncateSync(file, 64 * MiB)
  const fd = fs.openSync(file, 'r+')
  const rnd = lcg(42)
  for (const at of [1, 20, 36, 52]) fs.writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, at * MiB)
  for (let i = 0; i < 1600; i++) {
    const b = Math.floor(rnd() * 16384)
    const n = 1 + Math.floor(rnd() * 3)
    fs.writeSync(fd, i % 50 === 0 ? Buffer.alloc(n * 4096) : randomBytes(n * 4096), 0, n * 4096, b * 4096)
  }
  fs.closeSync(fd)
}

/** The root map piece of generation `id`'s image, and its children's runs (which run wrote each leaf). */
async function mapShape(repo: string, id: number, name: string): Promise<{ inner: boolean; leafRuns: number[] }> {
  const r = Repo2.open(repo)
  const pieces = new PieceReader(r.store, { cacheBytes: 1 << 20 })
  try {
    const m = r.manifest(id)
    const e = await new TreeReader(pieces).lookup(m.rootEntry.dir, Buffer.from(name))
    expect(e?.map?.kind).toBe('ref')
    const root = (e!.map as { kind: 'ref'; root: Parameters<PieceReader['pieceOf']>[0] }).root
    const p = await pieces.pieceOf(root, [PieceKind.MapLeaf, PieceKind.MapInner], 'map node')
    if (p.kind !== PieceKind.MapInner) return { inner: false, leafRuns: [root.run] }
    return { inner: true, leafRuns: p.inner.children.map((c) => c.ref.run) }
  } finally {
    pieces.close()
  }
}

beforeAll(() => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-v2vol-')
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2: volume generations of an image file', () => {
  it('full, block-incremental (only the touched map leaf and the root rewritten), unchanged; restore, cat and mount of each are the image as it was; forget + prune keeps what the kept generation uses', async () => {
    const repo = path.join(work, 'repo')
    await ok(['init', '--format', '2'], repo)
    const img = path.join(work, 'vol.img')
    makeImage(img)
    const copies = new Map<number, string>()
    const geo = ['--unit-blocks', '256', '--frame-blocks', '32']

    // gen1: full; holes are not read, all-zero blocks are not stored
    const g1 = JSON.parse(await ok(['backup', '--volume', img, ...geo, '--json'], repo))
    expect(g1).toMatchObject({ generation: 'gen1', kind: 'volume', mode: 'volume', consistency: 'unmounted', partial: false })
    expect(g1.sources).toEqual([expect.objectContaining({ path: img, parent: 0 })])
    expect(g1.stats).toMatchObject({ logicalBytes: 64 * MiB, newFiles: 1 })
    const allocated = fs.statSync(img).blocks * 512
    expect(g1.stats.bytesRead).toBeLessThanOrEqual(allocated + 4096)
    expect(g1.stats.storedBytes).toBeLessThan(allocated + MiB)
    expect(g1.stats.mapPieces).toBe(5) // an inner root over four leaves
    const shape1 = await mapShape(repo, 1, 'vol.img')
    expect(shape1).toEqual({ inner: true, leafRuns: [1, 1, 1, 1] })
    copies.set(1, path.join(work, 'gen1.img'))
    await sh(`cp --sparse=always '${img}' '${copies.get(1)}'`)

    // changes inside the first leaf's range (blocks 0 … 4095): a 2 MiB region overwritten
    // (data over data and over a hole), blocks zeroed, a block written in a hole
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, 1 * MiB) // the region stored at 1 MiB: its units die
    fs.writeSync(fd, randomBytes(512 * 1024), 0, 512 * 1024, 5 * MiB)
    fs.writeSync(fd, Buffer.alloc(8192), 0, 8192, 1 * MiB + 8192)
    fs.writeSync(fd, randomBytes(4096), 0, 4096, 15 * MiB)
    fs.closeSync(fd)
    const changed = 2 * MiB + 512 * 1024 + 4096
    const before = await du(repo)
    const g2 = JSON.parse(await ok(['backup', '--volume', img, ...geo, '--json'], repo))
    expect(g2.sources[0].parent).toBe(1)
    expect(g2.stats).toMatchObject({ changedFiles: 1, mapPieces: 2, mapPiecesReused: 3 })
    const growth = (await du(repo)) - before
    expect(growth).toBeLessThan(4 * changed + MiB)
    expect(g2.stats.storedBytes).toBeGreaterThan(changed - 16384)
    expect(await mapShape(repo, 2, 'vol.img')).toEqual({ inner: true, leafRuns: [2, 1, 1, 1] })
    copies.set(2, path.join(work, 'gen2.img'))
    await sh(`cp --sparse=always '${img}' '${copies.get(2)}'`)

    // gen3: nothing changed: not read, nothing stored, the map referred to (the root's one
    // DIR piece is new only because cp moved the image's atime)
    const g3 = JSON.parse(await ok(['backup', img, '--json'], repo))
    expect(g3).toMatchObject({ mode: 'volume', modeReason: expect.stringMatching(/is an image file/) })
    expect(g3.stats).toMatchObject({ bytesRead: 0, storedBytes: 0, unchangedFiles: 1, mapPieces: 0 })
    expect(g3.stats.pieces).toBeLessThanOrEqual(1)
    expect(await mapShape(repo, 3, 'vol.img')).toEqual({ inner: true, leafRuns: [2, 1, 1, 1] })
    // and once more, the image not even read by cp since: the previous DIR piece itself
    const g4 = JSON.parse(await ok(['backup', img, '--json'], repo))
    expect(g4.stats).toMatchObject({ bytesRead: 0, storedBytes: 0, pieces: 0 })
    await ok(['forget', '4'], repo)
    copies.set(3, copies.get(2)!)

    // every generation: restore (sparse), cat, ls
    for (const [id, copy] of copies) {
      const out = path.join(work, `restored-${id}.img`)
      await ok(['restore', `gen${id}`, out], repo)
      await cmp(out, copy)
      expect(fs.statSync(out).blocks * 512).toBeLessThan(allocated + 4 * MiB)
      const cat = await bfs(['cat', `gen${id}`], { repo })
      expect(cat.code).toBe(0)
      expect(cat.out.equals(fs.readFileSync(copy))).toBe(true)
      expect((await ok(['ls', `gen${id}`], repo)).trim()).toMatch(/^-rw-r--r-- +1 .* 67108864 .* vol\.img$/)
    }
    // a restore into an existing directory names the image
    const into = path.join(work, 'into')
    fs.mkdirSync(into)
    await ok(['restore', 'gen1', into], repo)
    await cmp(path.join(into, 'vol.img'), copies.get(1)!)
    await ok(['verify', '--all'], repo)

    // the mount: each generation's image, its size, its holes
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt)
    await ok(['mount', mnt], repo)
    mounts.add(mnt)
    for (const [id, copy] of copies) {
      expect(fs.readdirSync(path.join(mnt, `gen${id}`))).toEqual(['vol.img'])
      expect(fs.statSync(path.join(mnt, `gen${id}`, 'vol.img')).size).toBe(64 * MiB)
      expect(fs.statSync(path.join(mnt, `gen${id}`, 'vol.img')).blocks * 512).toBeLessThan(allocated + 4 * MiB)
      await cmp(path.join(mnt, `gen${id}`, 'vol.img'), copy)
    }
    await umount(mnt)

    // forget gen1, prune: the unit that held only the overwritten region goes; pack 1 stays
    // (gen2 refers to three of its leaves); gen2 and gen3 restore byte-identical
    await ok(['forget', '1'], repo)
    const pr = JSON.parse(await ok(['prune', '--json'], repo))
    expect(pr.committed).toEqual([2, 3])
    expect(pr.units.deleted).toBeGreaterThanOrEqual(1)
    expect(fs.existsSync(path.join(repo, keys2.pack(1, 0)))).toBe(true)
    expect(fs.existsSync(path.join(repo, keys2.stream(1)))).toBe(true)
    await ok(['verify', '--all'], repo)
    for (const id of [2, 3]) {
      const out = path.join(work, `pruned-${id}.img`)
      await ok(['restore', `gen${id}`, out], repo)
      await cmp(out, copies.get(id)!)
    }
    // a second prune finds nothing more
    expect(JSON.parse(await ok(['prune', '--json'], repo)).bytes.reclaimable).toBe(0)
  }, 600_000)

  it("a previous generation whose root piece is damaged is not the base: the image is read and stored whole, with a warning, and restores; the damage stays in its generation", async () => {
    const repo = path.join(work, 'repo-damage')
    await ok(['init', '--format', '2'], repo)
    const img = path.join(work, 'damage.img')
    fs.writeFileSync(img, randomBytes(4 * MiB))
    await ok(['backup', '--volume', img], repo)
    // gen1's pack holds its one piece (the root's DIR: a 4 MiB random image's map is inline)
    const pack = path.join(repo, keys2.pack(1, 0))
    const bytes = fs.readFileSync(pack)
    bytes[64 + 8] ^= 0xff
    fs.writeFileSync(pack, bytes)
    const fd = fs.openSync(img, 'r+')
    fs.writeSync(fd, randomBytes(4096), 0, 4096, MiB)
    fs.closeSync(fd)
    const r = await bfs(['backup', '--volume', img, '--json'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^bfs: warning: gen1 cannot be the base of this backup: its root directory does not read \(.*\); the volume is read in full$/m)
    const g2 = JSON.parse(r.stdout.trim().split('\n').pop()!)
    expect(g2.stats).toMatchObject({ newFiles: 1, bytesRead: 4 * MiB })
    expect(g2.stats.storedBytes).toBeGreaterThan(4 * MiB - 4096) // whole, not the one changed block
    const out = path.join(work, 'damage-restored.img')
    await ok(['restore', 'gen2', out], repo)
    await cmp(out, img)
    expect((await bfs(['cat', 'gen1'], { repo })).code).toBe(6)
  }, 300_000)

  it('an image that shrinks is warned about and restores exactly; a directory given as --volume is refused in one line; --base takes the difference against the generation named', async () => {
    const repo = path.join(work, 'repo-bad')
    await ok(['init', '--format', '2'], repo)
    const shrink = path.join(work, 'shrink.img')
    fs.writeFileSync(shrink, randomBytes(2 * MiB))
    await ok(['backup', '--volume', shrink], repo)
    fs.truncateSync(shrink, MiB)
    const s = await bfs(['backup', '--volume', shrink], { repo })
    expect(s.code, s.stderr).toBe(0)
    expect(s.stderr).toMatch(/shrank from 2097152 to 1048576 bytes since gen1/)
    const out = path.join(work, 'shrink-restored.img')
    await ok(['restore', 'latest', out], repo)
    await cmp(out, shrink)
    const dir = path.join(work, 'a-dir')
    fs.mkdirSync(dir)
    const d = await bfs(['backup', '--volume', dir], { repo })
    expect([d.code, d.stderr]).toEqual([1, `bfs: ${dir} is not a block device or an image file\n`])
    // --base: the difference against an older generation (the shrunk image against gen1's 2 MiB)
    const based = JSON.parse((await ok(['backup', '--volume', '--base', 'gen1', shrink, '--json'], repo)).trim().split('\n').pop()!)
    expect(based.sources[0].parent).toBe(1)
    expect(based.stats).toMatchObject({ changedFiles: 1, storedBytes: 0 }) // its first MiB is gen1's
    await ok(['restore', 'latest', out + '.based'], repo)
    await cmp(out + '.based', shrink)
    const other = await bfs(['backup', '--volume', '--base', '1', dir + '.img'], { repo })
    expect([other.code, other.stderr]).toEqual([1, `bfs: gen1 is a generation of ${shrink}, not of ${dir}.img\n`])
    expect(JSON.parse(await ok(['ls', '--json'], repo)).map((g: { id: number; kind: string; consistency: string }) => [g.id, g.kind, g.consistency])).toEqual([[1, 'volume', 'unmounted'], [2, 'volume', 'unmounted'], [3, 'volume', 'unmounted']])
    // format 1's table: ID TIME LABEL SOURCE KIND FILES SIZE STORED HOST TAGS
    expect(await ok(['generations'], repo)).toMatch(/^ID +TIME +LABEL +SOURCE +KIND +FILES +SIZE +STORED +HOST +TAGS\ngen1  \S+  - +\S+shrink\.img +volume \(unmounted\) +1 +2\.00 MiB +[\d.]+ [KM]iB +\S+ +-\n/)
  }, 300_000)
})
