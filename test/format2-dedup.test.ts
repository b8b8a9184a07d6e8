/**
 * Content dedup of format 2 backups (issue 17 item 3, native-notes/format.md §2.17): a file
 * whose content is already stored — renamed, copied, hard-linked, after `--full` — stores no
 * new data; its entry takes the stored copy's map. Real CLI, real repositories, a real FUSE
 * mount (its own process, unmounted in teardown). The backup's JSON summary says what was
 * stored (`stats.storedBytes`, the run's unit bytes; `stream` null when nothing) and how many
 * files were hits (`stats.dedupHits`).
 */
import fs from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import os from 'node:os'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { BFS, bfs, diffTree, sh, tmpdir } from './helpers.js'
import { Repo2, envelope2 } from '../src/repo/v2/repo2.js'
import { keys2 } from '../src/format/v2/layout.js'
import { encodeManifestV2, encodeRunRecord } from '../src/format/v2/records.js'
import { dedupKeysOf, readDedupObject } from '../src/repo/v2/dedup.js'
import { type DedupEntry, DedupBatch, DedupProbe, DIGEST_BLOOM_BITS, decodeDedupDirectory, decodeDedupPage, decodeDedupTrailer, encodeDedupObject, findInPage, mayHaveDigest, mayHaveSize, pagesOf } from '../src/format/v2/dedup.js'

const MB = 1_000_000
let work: string
const mounts = new Set<string>()

async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}

async function init2(dir: string): Promise<string> {
  const r = await bfs(['init', '--format', '2'], { repo: dir })
  expect(r.code, r.stderr).toBe(0)
  return dir
}

interface Summary {
  id: number
  stream: { blocks: number } | null
  stats: Record<string, number>
}
async function backup(repo: string, src: string, ...args: string[]): Promise<Summary> {
  const r = await bfs(['backup', src, '--json', ...args], { repo })
  expect(r.code, r.stderr).toBe(0)
  const last = r.stdout.trim().split('\n').pop()!
  return JSON.parse(last) as Summary
}
const du = async (dir: string): Promise<number> => Number((await sh(`du -sb '${dir}'`)).stdout.split('\t')[0])
const put = (p: string, data: Buffer | string): void => {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
}

beforeAll(() => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-v2dedup-')
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('renamed, copied and hard-linked files store no data', () => {
  let src: string
  let repo: string
  let g2: Summary
  let g3: Summary
  const big = randomBytes(5 * MB)
  const other = randomBytes(3 * MB)
  const small = randomBytes(20_000)

  beforeAll(async () => {
    src = path.join(work, 'src')
    repo = await init2(path.join(work, 'repo'))
    put(path.join(src, 'a/big'), big)
    put(path.join(src, 'a/other'), other)
    put(path.join(src, 'a/small1'), small)
    put(path.join(src, 'a/small2'), randomBytes(30_000))
    put(path.join(src, 'a/text.txt'), 'hello\n'.repeat(1000))
    // sparse: its digest is taken while it is stored (holes as zeros), later by a read pass of its own: the two must agree
    put(path.join(src, 'a/sparse'), '')
    fs.truncateSync(path.join(src, 'a/sparse'), 8 << 20)
    const fd = fs.openSync(path.join(src, 'a/sparse'), 'r+')
    fs.writeSync(fd, randomBytes(10_000), 0, 10_000, 3 << 20)
    fs.writeSync(fd, 'tail', (8 << 20) - 4)
    fs.closeSync(fd)
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupHits).toBe(0)
    expect(g1.stats.dedupIndexed).toBe(6)
    fs.mkdirSync(path.join(src, 'b'))
    fs.renameSync(path.join(src, 'a/big'), path.join(src, 'b/big-renamed'))
    fs.renameSync(path.join(src, 'a/sparse'), path.join(src, 'b/sparse-renamed'))
    fs.copyFileSync(path.join(src, 'a/other'), path.join(src, 'b/other-copy'))
    fs.linkSync(path.join(src, 'b/other-copy'), path.join(src, 'b/other-link'))
    fs.copyFileSync(path.join(src, 'a/small1'), path.join(src, 'b/small1-copy'))
    // same size as big, other content: stored
    put(path.join(src, 'b/same-size'), randomBytes(5 * MB))
  })

  it('the next backup stores only the file with new content', async () => {
    const before = await du(repo)
    g2 = await backup(repo, src)
    // big and sparse (renamed), other-copy (its hard link takes the same map, not a lookup), small1-copy
    expect(g2.stats.dedupHits).toBe(4)
    expect(g2.stats.dedupBytes).toBe(5 * MB + 3 * MB + 20_000 + (8 << 20))
    // the run's data = the same-size file (random: incompressible), nothing else
    expect(g2.stats.storedBytes).toBeGreaterThanOrEqual(5 * MB)
    expect(g2.stats.storedBytes).toBeLessThan(5 * MB + 64 * 1024)
    const growth = (await du(repo)) - before
    expect(growth).toBeGreaterThan(5 * MB)
    expect(growth).toBeLessThan(5 * MB + 256 * 1024)
  })

  it('a backup of only renames and copies stores no data at all', async () => {
    fs.mkdirSync(path.join(src, 'c'))
    fs.copyFileSync(path.join(src, 'b/same-size'), path.join(src, 'c/same-size-copy'))
    fs.renameSync(path.join(src, 'a/small2'), path.join(src, 'c/small2-moved'))
    fs.copyFileSync(path.join(src, 'a/text.txt'), path.join(src, 'c/text-copy.txt'))
    const before = await du(repo)
    g3 = await backup(repo, src)
    expect(g3.stats.dedupHits).toBe(3)
    expect(g3.stats.storedBytes).toBe(0)
    expect(g3.stream).toBeNull()
    expect(fs.existsSync(path.join(repo, keys2.genDir(g3.id), 'unit-00000000'))).toBe(false)
    expect((await du(repo)) - before).toBeLessThan(16 * 1024)
  })

  it('restore gives the same bytes, hard links kept', async () => {
    const out = path.join(work, 'restored')
    const r = await bfs(['restore', String(g3.id), out], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(await diffTree(src, out)).toBe('')
    expect((await sh(`cmp '${out}/b/big-renamed' '${out}/b/same-size'`)).code).toBe(1)
    expect(fs.readFileSync(path.join(out, 'b/big-renamed')).equals(big)).toBe(true)
    expect(fs.statSync(path.join(out, 'b/other-copy')).ino).toBe(fs.statSync(path.join(out, 'b/other-link')).ino)
    const two = path.join(work, 'restored2')
    expect((await bfs(['restore', String(g2.id), two], { repo })).code).toBe(0)
    expect(fs.readFileSync(path.join(two, 'b/other-copy')).equals(other)).toBe(true)
    expect(fs.readFileSync(path.join(two, 'b/small1-copy')).equals(small)).toBe(true)
  })

  it('a FUSE mount reads the same bytes', async () => {
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt, { recursive: true })
    const r = await bfs(['mount', String(g3.id), mnt], { repo })
    expect(r.code, r.stderr).toBe(0)
    mounts.add(mnt)
    expect(await diffTree(src, mnt)).toBe('')
    for (const f of ['b/big-renamed', 'b/sparse-renamed', 'b/other-copy', 'b/small1-copy', 'c/same-size-copy', 'c/small2-moved']) {
      expect((await sh(`cmp '${src}/${f}' '${mnt}/${f}'`)).code, f).toBe(0)
    }
    expect(fs.statSync(path.join(mnt, 'b/other-copy')).nlink).toBe(2)
    await umount(mnt)
  })

  it('verify checks every generation, the deduplicated files included', async () => {
    const r = await bfs(['verify', '--all'], { repo })
    expect(r.code, r.stdout + r.stderr).toBe(0)
    // the deduplicated files' data is in the earlier streams: a rotted byte there is found from gen3
    const unit = path.join(repo, keys2.unit(1, 0))
    const copy = path.join(work, 'unit-copy')
    fs.copyFileSync(unit, copy)
    try {
      const fd = fs.openSync(unit, 'r+')
      const b = Buffer.alloc(1)
      fs.readSync(fd, b, 0, 1, 200_000)
      b[0] ^= 0xff
      fs.writeSync(fd, b, 0, 1, 200_000)
      fs.closeSync(fd)
      const bad = await bfs(['verify', String(g3.id)], { repo })
      expect(bad.code, bad.stdout).toBe(4)
    } finally {
      fs.copyFileSync(copy, unit)
    }
  })

  it('a no-change backup reads no index and writes none', async () => {
    const g = await backup(repo, src)
    expect(g.stats.dedupHits).toBe(0)
    expect(g.stats.dedupIndexed).toBe(0)
    expect(fs.readdirSync(path.join(repo, 'index')).filter((n) => n.startsWith(`dedup-${String(g.id).padStart(8, '0')}`))).toEqual([])
  })

  it('--full stores no data for content already stored', async () => {
    const g = await backup(repo, src, '--full')
    expect(g.stats.storedBytes).toBe(0)
    expect(g.stats.dedupHits).toBeGreaterThanOrEqual(9)
    const out = path.join(work, 'restored-full')
    expect((await bfs(['restore', String(g.id), out], { repo })).code).toBe(0)
    expect(await diffTree(src, out)).toBe('')
  })
})

describe('hits are used only from committed generations of that revision', () => {
  const data = randomBytes(2 * MB)

  async function setup(name: string): Promise<{ src: string; repo: string }> {
    const src = path.join(work, `${name}-src`)
    const repo = await init2(path.join(work, `${name}-repo`))
    put(path.join(src, 'x'), data)
    put(path.join(src, 'keep.txt'), 'keep\n')
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupIndexed).toBe(1) // x; keep.txt (5 bytes) is under a new repository's dedupMinBytes (1024)
    fs.renameSync(path.join(src, 'x'), path.join(src, 'y'))
    return { src, repo }
  }
  async function storedAgain(repo: string, src: string): Promise<void> {
    const g = await backup(repo, src)
    expect(g.stats.dedupHits).toBe(0)
    expect(g.stats.storedBytes).toBeGreaterThanOrEqual(2 * MB)
    const out = path.join(work, `${path.basename(repo)}-out`)
    expect((await bfs(['restore', String(g.id), out], { repo })).code).toBe(0)
    expect(fs.readFileSync(path.join(out, 'y')).equals(data)).toBe(true)
    const v = await bfs(['verify', String(g.id)], { repo })
    expect(v.code, v.stdout + v.stderr).toBe(0)
  }

  it('a forgotten generation', async () => {
    const { src, repo } = await setup('forgot')
    expect((await bfs(['forget', '1'], { repo })).code).toBe(0)
    await storedAgain(repo, src)
  })

  it('a generation without its manifest (not committed)', async () => {
    const { src, repo } = await setup('uncommitted')
    fs.renameSync(path.join(repo, keys2.manifest(1)), path.join(work, 'gen1-manifest'))
    await storedAgain(repo, src)
  })

  it('a generation committed with another revision', async () => {
    const { src, repo } = await setup('rev')
    const m = Repo2.open(repo).manifest(1)
    fs.writeFileSync(path.join(repo, keys2.manifest(1)), envelope2('manifest', encodeManifestV2({ ...m, rev: 2 })))
    await storedAgain(repo, src)
  })

  it('the control: the same rename in a repository left alone is a hit', async () => {
    const { src, repo } = await setup('control')
    const g = await backup(repo, src)
    expect(g.stats.dedupHits).toBe(1)
    expect(g.stats.storedBytes).toBe(0)
  })
})

describe('damage stays local', () => {
  it('a hit whose map piece does not read is stored again, with a warning, and reads back', async () => {
    const src = path.join(work, 'dmg-src')
    const repo = await init2(path.join(work, 'dmg-repo'))
    // every other block zero: 256 extents, so the map is a map piece in gen1's pack, not inline
    const frag = Buffer.alloc(2 << 20)
    for (let b = 0; b < 512; b += 2) randomBytes(4096).copy(frag, b * 4096)
    put(path.join(src, 'd/frag'), frag)
    expect((await backup(repo, src)).stats.mapPieces).toBeGreaterThan(0)
    const pack = path.join(repo, keys2.pack(1, 0))
    const b = fs.readFileSync(pack)
    for (let i = 64; i < b.length - 32; i++) b[i] ^= 0x5a
    fs.writeFileSync(pack, b)
    fs.renameSync(path.join(src, 'd/frag'), path.join(src, 'd/frag-moved'))
    const r = await bfs(['backup', src, '--json'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^bfs: warning: 1 file already stored was stored again: the stored copy's map could not be read \(.*pack-00000000/m)
    const g = JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary
    expect(g.stats.dedupHits).toBe(0)
    expect(g.stats.storedBytes).toBeGreaterThanOrEqual(1 << 20)
    const c = await sh(`'${BFS}' --repo '${repo}' cat ${g.id}:d/frag-moved | cmp - '${src}/d/frag-moved'`)
    expect(c.code, c.stderr).toBe(0)
  })
})

describe('a damaged index object', () => {
  it('verify names it (exit 4); a backup passes over it with a warning and stores the file', async () => {
    const src = path.join(work, 'rot-src')
    const repo = await init2(path.join(work, 'rot-repo'))
    const data = randomBytes(300_000)
    put(path.join(src, 'f'), data)
    await backup(repo, src)
    const key = path.join(repo, keys2.dedup(1, 0))
    const b = fs.readFileSync(key)
    b[70] ^= 0x01 // the first entry's digest: the page no longer matches its fence and filters
    fs.writeFileSync(key, b)
    const v = await bfs(['verify', '1'], { repo })
    expect(v.code, v.stdout + v.stderr).toBe(4)
    expect(v.stdout).toMatch(/^FAIL .*index\/dedup-00000001-0000.*: /m)
    // the directory check: a rotted filter is found by the trailer's check
    const d = Buffer.from(b)
    d[70] ^= 0x01
    d[d.length - 40] ^= 0x01
    fs.writeFileSync(key, d)
    expect((await bfs(['verify', '1'], { repo })).stdout).toMatch(/dedup-00000001-0000.*directory check does not match/)
    fs.renameSync(path.join(src, 'f'), path.join(src, 'g'))
    const r = await bfs(['backup', src, '--json'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/^bfs: warning: dedup index: 1 object or page could not be read and was passed over \(.*dedup-00000001-0000.*directory check/m)
    const g = JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary
    expect(g.stats.dedupHits).toBe(0)
    expect(g.stats.storedBytes).toBeGreaterThanOrEqual(300_000)
    expect((await bfs(['verify', '2'], { repo })).code).toBe(0)
  })
})

describe('the object encoding', () => {
  it('many entries: several pages, every digest found through the filters and fences, others not', () => {
    const entries: DedupEntry[] = []
    for (let i = 0; i < 5000; i++) {
      entries.push({ digest: randomBytes(32), sizeBytes: 4096 * (1 + (i % 300)), gen: 7, rev: 1, dataBlocks: 1 + (i % 300),
        map: i % 2 ? { kind: 'inline', extents: [{ fileBlock: 0, count: 1 + (i % 300), stream: 7, streamBlock: i * 300 }] } : { kind: 'ref', root: { run: 7, pack: 0, offset: 64 + i, storedLen: 100, id: randomBytes(32) }, extentCount: 5 } })
    }
    entries.push({ ...entries[0]!, gen: 7 }) // a duplicate digest: one entry
    const obj = encodeDedupObject(7, 3, entries)
    const t = decodeDedupTrailer(obj.subarray(obj.length - 32), obj.length, 'obj')
    const dir = decodeDedupDirectory(obj.subarray(0, 64), obj.subarray(t.D, t.D + t.dirLen), t, 7, 3, 'obj')
    expect(dir.entries).toBe(5000)
    expect(dir.fences.length).toBeGreaterThan(2)
    for (const f of dir.fences) expect(f.storedLen).toBeLessThanOrEqual(64 << 10)
    const pages = dir.fences.map((f, p) => decodeDedupPage(obj.subarray(f.offset, f.offset + f.storedLen), `page ${p}`))
    for (const e of entries) {
      expect(mayHaveDigest(dir, e.digest) && mayHaveSize(dir, e.sizeBytes)).toBe(true)
      const found = pagesOf(dir, e.digest).flatMap((p) => pages[p]!).find((x) => x.digest.equals(e.digest))
      expect(found?.sizeBytes).toBe(e.sizeBytes)
      expect(found?.map).toEqual(e.map)
      // the in-place scan a backup's lookup uses finds the same entry
      const p = pagesOf(dir, e.digest)[0]!
      const raw = obj.subarray(dir.fences[p]!.offset, dir.fences[p]!.offset + dir.fences[p]!.storedLen)
      expect(findInPage(raw, e.digest, 'page')).toEqual(found)
    }
    for (let i = 0; i < 200; i++) {
      const d = randomBytes(32)
      const p = pagesOf(dir, d)
      if (p.length) expect(findInPage(obj.subarray(dir.fences[p[0]!]!.offset, dir.fences[p[0]!]!.offset + dir.fences[p[0]!]!.storedLen), d, 'page')).toBeNull()
    }
    // the digest filter: DIGEST_BLOOM_BITS per entry (20: ~0.05 % false positives with 7
    // probes; 10 bits gave ~1.5 %, and a backup of 1M small files spent 30 s scanning pages)
    expect(dir.digestBloom.length / 8).toBe(Math.ceil((5000 * DIGEST_BLOOM_BITS) / 256))
    let falsePositives = 0
    for (let i = 0; i < 20_000; i++) if (mayHaveDigest(dir, randomBytes(32))) falsePositives++
    expect(falsePositives).toBeLessThan(60)
    // a lookup's probe (computed once for every object it checks) answers as the two filters do
    for (const e of entries) expect(new DedupProbe(e.digest, e.sizeBytes).mayHave(dir)).toBe(true)
    let agree = 0
    for (let i = 0; i < 5000; i++) {
      const d = i % 2 ? randomBytes(32) : Buffer.concat([entries[i]!.digest.subarray(0, 28), randomBytes(4)]) // filter hits, other sizes
      const size = i % 3 ? 4096 * (1 + (i % 400)) : i
      expect(new DedupProbe(d, size).mayHave(dir)).toBe(mayHaveSize(dir, size) && mayHaveDigest(dir, d))
      if (mayHaveSize(dir, size) && mayHaveDigest(dir, d)) agree++
    }
    expect(agree).toBeGreaterThan(1000) // both answers were met
    expect(() => decodeDedupDirectory(obj.subarray(0, 64), obj.subarray(t.D, t.D + t.dirLen), t, 7, 4, 'obj')).toThrow(/header says run 7 seq 3/)
  })

  it('a batch cleared after its object encodes the next as a fresh batch does; the parts are the object', () => {
    const entry = (i: number): DedupEntry => ({ digest: randomBytes(32), sizeBytes: 100 + i, gen: 7, rev: 1, dataBlocks: 1, map: { kind: 'inline', extents: [{ fileBlock: 0, count: 1, stream: 7, streamBlock: i }] } })
    const first = Array.from({ length: 3000 }, (_, i) => entry(i))
    const second = Array.from({ length: 500 }, (_, i) => entry(i))
    const b = new DedupBatch()
    for (const e of first) b.add(e)
    expect(Buffer.concat(b.encodeParts(7, 0))).toEqual(encodeDedupObject(7, 0, first))
    b.clear()
    expect(b.count).toBe(0)
    expect(b.find(first[0]!.digest)).toBeNull()
    expect(b.sizes.size).toBe(0)
    for (const e of second) b.add(e)
    expect(b.find(second[499]!.digest)?.sizeBytes).toBe(599)
    expect(b.encode(7, 1)).toEqual(encodeDedupObject(7, 1, second))
  })
})

describe('within one backup', () => {
  it('copies among new files are stored once (small files read together and large ones)', async () => {
    const src = path.join(work, 'one-src')
    const repo = await init2(path.join(work, 'one-repo'))
    const s = randomBytes(50_000)
    const l = randomBytes(1 * MB)
    put(path.join(src, 'a/s1'), s)
    put(path.join(src, 'a/s2'), s)
    put(path.join(src, 'b/s3'), s)
    put(path.join(src, 'a/l1'), l)
    put(path.join(src, 'b/l2'), l)
    const g = await backup(repo, src)
    expect(g.stats.dedupHits).toBe(3)
    expect(g.stats.storedBytes).toBeLessThan(50_000 + MB + 64 * 1024)
    const out = path.join(work, 'one-out')
    expect((await bfs(['restore', '1', out], { repo })).code).toBe(0)
    expect(await diffTree(src, out)).toBe('')
    expect((await bfs(['verify'], { repo })).code).toBe(0)
  })

  it('lookups that read more index pages than are cached find every copy (pages are read into reused buffers)', async () => {
    // 30,000 files of 1,100-1,399 bytes: one index object of ~25 pages of 64 KiB; then copies
    // of 300 of them, spread over every page, as new files of another source
    const src = path.join(work, 'pages-src')
    const copies = path.join(work, 'pages-copies')
    const repo = await init2(path.join(work, 'pages-repo'))
    const files: string[] = []
    for (let d = 0; d < 30; d++) {
      fs.mkdirSync(path.join(src, `d${d}`), { recursive: true })
      for (let i = 0; i < 1000; i++) {
        const f = path.join(src, `d${d}`, `f${i}`)
        fs.writeFileSync(f, randomBytes(1100 + ((d * 1000 + i) % 300)))
        files.push(f)
      }
    }
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupIndexed).toBe(30_000)
    for (let k = 0; k < 300; k++) put(path.join(copies, `c${k}`), fs.readFileSync(files[(k * 7919) % files.length]!))
    const g2 = await backup(repo, copies)
    expect(g2.stats.dedupHits).toBe(300)
    expect(g2.stats.dedupPagesRead).toBeGreaterThan(16)
    expect(g2.stream).toBeNull()
    const out = path.join(work, 'pages-out')
    expect((await bfs(['restore', '--source', copies, 'latest', out], { repo })).code).toBe(0)
    expect(await diffTree(copies, out)).toBe('')
  })

  it('recovery deletes the index objects of a dead run', async () => {
    const src = path.join(work, 'abort-src')
    const repo = await init2(path.join(work, 'abort-repo'))
    put(path.join(src, 'f'), randomBytes(100_000))
    // run 1 died (kill -9) after writing its index object, before its manifest
    const dead = spawnSync('true').pid!
    fs.writeFileSync(path.join(repo, keys2.run(1)), envelope2('run', encodeRunRecord({ run: 1, kind: 'backup', state: 'running', host: os.hostname(), pid: dead, lease: '', started: new Date().toISOString(), gen: 1 })))
    fs.mkdirSync(path.join(repo, 'index'), { recursive: true })
    fs.writeFileSync(path.join(repo, keys2.dedup(1, 0)), 'left by a dead run')
    fs.writeFileSync(path.join(repo, keys2.dedup(1, 1)), 'left by a dead run')
    const g = await backup(repo, src)
    expect(g.id).toBe(2)
    expect(fs.readdirSync(path.join(repo, 'index'))).toEqual(['dedup-00000002-0000'])
    expect(Repo2.open(repo).runs().find((r) => r.run === 1)?.state).toBe('aborted')
  })
})

describe('which files are indexed: dedupMinBytes (§2.7, §2.17)', () => {
  // two copies of a 500-byte file and two of a 2,000-byte file, all new in one backup
  const s500 = randomBytes(500)
  const l2000 = randomBytes(2000)
  let src: string
  /** The config's JSON as stored (the envelope's payload: after its 64-byte header). */
  const rawConfig = (repo: string, f = 'config'): { defaults: Record<string, unknown> } => JSON.parse(fs.readFileSync(path.join(repo, f)).subarray(64).toString())
  /** The sizes of the entries run `run` indexed. */
  const indexedSizes = (repo: string, run: number): number[] => {
    const r = Repo2.open(repo)
    return dedupKeysOf(r, run).flatMap((k) => readDedupObject(r, k)).map((e) => e.sizeBytes).sort((a, b) => a - b)
  }

  beforeAll(() => {
    src = path.join(work, 'min-src')
    put(path.join(src, 'a/s1'), s500)
    put(path.join(src, 'b/s2'), s500)
    put(path.join(src, 'a/l1'), l2000)
    put(path.join(src, 'b/l2'), l2000)
  })

  it('a new repository has dedupMinBytes 1024: of the two pairs only the 2,000-byte one is indexed and deduplicated', async () => {
    const repo = await init2(path.join(work, 'min-default-repo'))
    expect(Repo2.open(repo).config.defaults.dedupMinBytes).toBe(1024)
    for (const f of ['config', 'config-copy']) expect(rawConfig(repo, f).defaults.dedupMinBytes, f).toBe(1024)
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupIndexed).toBe(1)
    expect(g1.stats.dedupHits).toBe(1) // b/l2 took a/l1's map; b/s2 was stored again
    expect(g1.stats.dedupBytes).toBe(2000)
    expect(indexedSizes(repo, 1)).toEqual([2000])
    // later copies: the 2,000-byte one is a hit, the 500-byte one is stored
    put(path.join(src, 'c/s3'), s500)
    put(path.join(src, 'c/l3'), l2000)
    try {
      const g2 = await backup(repo, src)
      expect(g2.stats.dedupHits).toBe(1)
      expect(g2.stats.dedupBytes).toBe(2000)
      expect(g2.stats.dedupIndexed).toBe(0)
      const out = path.join(work, 'min-default-out')
      expect((await bfs(['restore', String(g2.id), out], { repo })).code).toBe(0)
      expect(await diffTree(src, out)).toBe('')
    } finally {
      fs.rmSync(path.join(src, 'c'), { recursive: true })
    }
  })

  it('the bound is inclusive: a 1,024-byte file is indexed, a 1,023-byte one is not', async () => {
    const s = path.join(work, 'min-bound-src')
    put(path.join(s, 'under'), randomBytes(1023))
    put(path.join(s, 'at'), randomBytes(1024))
    const repo = await init2(path.join(work, 'min-bound-repo'))
    expect((await backup(repo, s)).stats.dedupIndexed).toBe(1)
    expect(indexedSizes(repo, 1)).toEqual([1024])
  })

  it('init --dedup-min-bytes 1 indexes every non-empty file: both pairs are deduplicated', async () => {
    const repo = path.join(work, 'min-one-repo')
    const r = await bfs(['init', '--dedup-min-bytes', '1'], { repo })
    expect(r.code, r.stderr).toBe(0)
    expect(Repo2.open(repo).config.defaults.dedupMinBytes).toBe(1)
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupIndexed).toBe(2)
    expect(g1.stats.dedupHits).toBe(2)
    expect(g1.stats.dedupBytes).toBe(2500)
    expect(indexedSizes(repo, 1)).toEqual([500, 2000])
    const out = path.join(work, 'min-one-out')
    expect((await bfs(['restore', '1', out], { repo })).code).toBe(0)
    expect(await diffTree(src, out)).toBe('')
  })

  it('a config without dedupMinBytes (an existing repository) reads as 1 and indexes small files as before', async () => {
    const repo = await init2(path.join(work, 'min-absent-repo'))
    for (const f of ['config', 'config-copy']) {
      const json = rawConfig(repo, f)
      delete json.defaults.dedupMinBytes
      fs.writeFileSync(path.join(repo, f), envelope2('config', Buffer.from(JSON.stringify(json))))
    }
    expect(Repo2.open(repo).config.defaults.dedupMinBytes).toBe(1)
    const g1 = await backup(repo, src)
    expect(g1.stats.dedupIndexed).toBe(2)
    expect(g1.stats.dedupHits).toBe(2)
    expect(indexedSizes(repo, 1)).toEqual([500, 2000])
    // the backup left the config as it was: no field written into it
    expect(rawConfig(repo).defaults).not.toHaveProperty('dedupMinBytes')
  })

  it('a bad --dedup-min-bytes, or one where it means nothing, is a usage error (exit 2, one line) and makes nothing', async () => {
    const repo = path.join(work, 'min-bad-repo')
    for (const [args, msg] of [
      [['--dedup-min-bytes', '-1'], /--dedup-min-bytes must be a whole number of bytes ≥ 0/],
      [['--dedup-min-bytes', '1.5'], /--dedup-min-bytes must be a whole number of bytes ≥ 0/],
      [['--dedup-min-bytes', '1k'], /--dedup-min-bytes must be a whole number of bytes ≥ 0/],
      [['--dedup-min-bytes', ''], /--dedup-min-bytes must be a whole number of bytes ≥ 0/],
      [['--dedup-min-bytes'], /argument missing/],
      [['--dedup-min-bytes', '1', '--format', '1'], /--dedup-min-bytes needs format 2/],
      [['--dedup-min-bytes', '1', '--encrypt', '--no-dedup'], /--dedup-min-bytes with --no-dedup/],
    ] as const) {
      const r = await bfs(['init', ...args], { repo })
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr.trim().split('\n'), args.join(' ')).toEqual([expect.stringMatching(msg)])
      expect(fs.existsSync(repo), args.join(' ')).toBe(false)
    }
  })
})
