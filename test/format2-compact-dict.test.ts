/**
 * Compact's per-stream dictionaries (issue 16: the image's size after compact; format.md
 * §2.9.1), through the real CLI on real repositories: a volume (128 KiB frames) compacted by
 * default gets a dictionary trained on its own frames, written before any unit names it;
 * every frame of its units needs it. Read back by `cat`, `restore`, `verify --all` and a mount
 * in its own process (the native read path, with the dictionary handed to it); a damaged
 * dictionary is reported as damage (exit 6 / 4), never as wrong bytes; a higher level
 * recompresses with the same dictionary; prune's unit rewrite keeps it; prune deletes it with
 * its stream's last unit; `--no-dictionary` makes none; a tree's 1 MiB frames get none.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bfs, okBfs, sh, tmpdir, umountBfs } from './helpers.js'
import { DICT_RE, keys2 } from '../src/format/v2/layout.js'
import { parseUnitFile } from '../src/format/v2/unit.js'
import { decodeDict } from '../src/format/v2/dict.js'
import { decodeConfigV2 } from '../src/format/v2/config.js'
import { payloadOf } from '../src/repo/v2/repo2.js'

let work: string
const mounts = new Set<string>()

const ok = okBfs
async function umount(mnt: string): Promise<void> {
  await umountBfs(mnt)
  mounts.delete(mnt)
}

const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega inode extent journal superblock'.split(' ')
/** A volume-like image: text in 64 KiB runs (words at random, numbered lines), every eighth run zeros. */
function image(bytes: number, seed: number): Buffer {
  let s = seed >>> 0
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32)
  const out = Buffer.alloc(bytes)
  for (let run = 0, at = 0; at < bytes; run++, at += 65536) {
    if (run % 8 === 7) continue
    const lines: string[] = []
    let n = 0
    for (let line = 0; n < 65536; line++) {
      const l = `${run}:${line} ${Array.from({ length: 6 }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ')} ${Math.floor(rnd() * 1e5)}\n`
      lines.push(l)
      n += l.length
    }
    Buffer.from(lines.join('')).copy(out, at, 0, Math.min(65536, bytes - at))
  }
  return out
}

const units = (repo: string, run: number): string[] =>
  fs.readdirSync(path.join(repo, keys2.genDir(run))).filter((f) => /^unit-\d{8}$/.test(f)).map((f) => path.join(repo, keys2.genDir(run), f))
const dicts = (repo: string, run: number): string[] =>
  fs.existsSync(path.join(repo, keys2.genDir(run))) ? fs.readdirSync(path.join(repo, keys2.genDir(run))).filter((f) => DICT_RE.test(f)) : []
const unitDicts = (repo: string, run: number): number[] => units(repo, run).map((u) => parseUnitFile(fs.readFileSync(u), 4096, u).dict)

let src: string
let img: string

beforeAll(async () => {
  expect(fs.existsSync('/dev/fuse')).toBe(true)
  work = tmpdir('bfs-cdict-')
  src = path.join(work, 'src')
  fs.mkdirSync(src)
  img = path.join(src, 'disk.img')
  fs.writeFileSync(img, image(40 << 20, 7))
})
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

/** A repository holding one volume backup of the image. */
async function volumeRepo(name: string): Promise<string> {
  const repo = path.join(work, name)
  await ok(['init', '--format', '2'], repo)
  await ok(['backup', '--volume', img], repo)
  return repo
}

describe('compact: a dictionary per stream of small frames', () => {
  it('a volume compacted by default gets one dictionary, every unit names it; cat, restore, verify and a mount (native reads) give the image back', async () => {
    const repo = await volumeRepo('r1')
    const before = Number((await sh(`du -sb '${repo}' | cut -f1`)).stdout.trim())
    const out = JSON.parse((await ok(['compact', '--min-age', '0', '--json'], repo)).trim().split('\n').pop()!) as { dictionaries: { written: Array<{ stream: number; id: number }> }; units: { compacted: number } }
    expect(out.dictionaries.written).toHaveLength(1)
    const [d] = dicts(repo, 1)
    expect(d).toBeDefined()
    const dict = decodeDict(fs.readFileSync(path.join(repo, keys2.genDir(1), d!)), d!, { stream: 1, id: out.dictionaries.written[0]!.id })
    expect(dict.bytes.length).toBeGreaterThan(1024)
    expect(new Set(unitDicts(repo, 1))).toEqual(new Set([dict.id]))
    // the repository says so: a bfs that does not know dictionaries refuses it by name
    const cfg = decodeConfigV2(payloadOf('config', fs.readFileSync(path.join(repo, 'config')), 'config'), 'config')
    expect(cfg.features.incompat).toContain('unit-dictionaries')
    expect(Number((await sh(`du -sb '${repo}' | cut -f1`)).stdout.trim())).toBeLessThan(before)
    // read back: cat, restore, verify
    const cat = await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat gen1:disk.img | cmp - '${img}'`)
    expect(cat.code, cat.stderr + cat.stdout).toBe(0)
    const to = path.join(work, 'restored1')
    await ok(['restore', 'gen1', to], repo)
    expect((await sh(`cmp '${to}' '${img}'`)).code).toBe(0) // (a volume restores to the path itself)
    expect(await ok(['verify', '--all'], repo)).toMatch(/gen1 verified/)
    // a mount in its own process: the native read path decompresses with the dictionary
    const mnt = path.join(work, 'm1')
    fs.mkdirSync(mnt)
    const m = await bfs(['mount', 'gen1', mnt], { repo })
    expect(m.code, m.stderr).toBe(0)
    mounts.add(mnt)
    const pid = Number(/\(pid (\d+), log (.*)\);/.exec(m.stdout)![1])
    const log = /\(pid (\d+), log (.*)\);/.exec(m.stdout)![2]!
    expect((await sh(`cmp '${mnt}/disk.img' '${img}'`)).code).toBe(0)
    // and random 4 KiB reads (dd at offsets) match the image
    for (const off of [0, 5, 77, 4000, 9000, 10239]) {
      const r = await sh(`dd if='${mnt}/disk.img' bs=4096 skip=${off} count=1 status=none | cmp - <(dd if='${img}' bs=4096 skip=${off} count=1 status=none)`)
      expect(r.code, `block ${off}`).toBe(0)
    }
    const lines = (): string[] => fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes(' native reads: '))
    const n0 = lines().length
    process.kill(pid, 'SIGUSR2')
    for (let t = Date.now() + 60_000; lines().length === n0 && Date.now() < t; ) await new Promise((r) => setTimeout(r, 50))
    const native = JSON.parse(/ native reads: (\{[^}]*\});/.exec(lines().pop()!)![1]!) as Record<string, number>
    expect(native.served).toBeGreaterThan(100)
    await umount(mnt)
  })

  it('a higher level recompresses with the same dictionary (no second one); --no-dictionary makes none; a tree of 1 MiB frames gets none', async () => {
    const repo = await volumeRepo('r2')
    await ok(['compact', '--min-age', '0', '--level', '13'], repo)
    const [d] = dicts(repo, 1)
    const id = parseInt(DICT_RE.exec(d!)![1]!, 16)
    expect(new Set(unitDicts(repo, 1))).toEqual(new Set([id]))
    expect(await ok(['compact', '--min-age', '0', '--level', '13'], repo)).toMatch(/already compacted: \d+ units?/)
    await ok(['compact', '--min-age', '0', '--level', '15'], repo)
    expect(dicts(repo, 1)).toEqual([d])
    expect(units(repo, 1).map((u) => parseUnitFile(fs.readFileSync(u), 4096, u).level)).toEqual(units(repo, 1).map(() => 15))
    expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat gen1:disk.img | cmp - '${img}'`)).code).toBe(0)

    const plain = await volumeRepo('r3')
    await ok(['compact', '--min-age', '0', '--no-dictionary'], plain)
    expect(dicts(plain, 1)).toEqual([])
    expect(unitDicts(plain, 1).every((x) => x === 0)).toBe(true)
    expect(units(plain, 1).map((u) => parseUnitFile(fs.readFileSync(u), 4096, u).level).every((l) => l === 15)).toBe(true)

    const tree = path.join(work, 'r4')
    await ok(['init', '--format', '2'], tree)
    await ok(['backup', src, '--frame-blocks', '256'], tree) // files' frames before 2026-12-04
    await ok(['compact', '--min-age', '0'], tree)
    expect(dicts(tree, 1)).toEqual([])
    expect(units(tree, 1).map((u) => parseUnitFile(fs.readFileSync(u), 4096, u).level).every((l) => l === 12)).toBe(true)
  })

  it('kill -9 before the dictionary is written, after it and before the first unit, and after one unit: every moment reads and verifies; the next compact reuses the dictionary and finishes', async () => {
    const points: Array<Record<string, unknown>> = [
      { keys: 'gens/*/dict-*', ops: ['put'] }, // nothing written yet
      { keys: 'gens/*/unit-*', ops: ['put'] }, // the dictionary durable, no unit names it yet
      { keys: 'gens/*/unit-*', ops: ['put'], after: 1 }, // one unit uses it
    ]
    let k = 0
    for (const p of points) {
      const repo = await volumeRepo(`kill-${k++}`)
      const crash = await bfs(['compact', '--min-age', '0'], { repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ ...p, fault: 'kill' }] }) } })
      expect(crash.stderr, JSON.stringify(p)).toContain('killed by SIGKILL')
      const written = dicts(repo, 1)
      expect(written, JSON.stringify(p)).toHaveLength(p.keys === 'gens/*/dict-*' ? 0 : 1)
      expect(unitDicts(repo, 1).filter((x) => x !== 0), JSON.stringify(p)).toHaveLength((p.after as number | undefined) ?? 0)
      await ok(['verify', '--all'], repo)
      expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat gen1:disk.img | cmp - '${img}'`)).code).toBe(0)
      const next = await bfs(['compact', '--min-age', '0', '--json'], { repo })
      expect(next.code, next.stderr).toBe(0)
      const after = dicts(repo, 1)
      expect(after).toHaveLength(1)
      if (written.length) expect(after).toEqual(written) // reused, not trained again
      const id = parseInt(DICT_RE.exec(after[0]!)![1]!, 16)
      expect(new Set(unitDicts(repo, 1))).toEqual(new Set([id]))
      await ok(['verify', '--all'], repo)
      expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat gen1:disk.img | cmp - '${img}'`)).code).toBe(0)
    }
  })

  it('a dictionary that rotted before any unit used it is written again whole (same samples, same bytes); a stream with too few non-zero frames to train on is compacted once, not again by every compact', async () => {
    const repo = await volumeRepo('rot')
    const crash = await bfs(['compact', '--min-age', '0'], { repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'kill' }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    const [d] = dicts(repo, 1)
    const file = path.join(repo, keys2.genDir(1), d!)
    const good = fs.readFileSync(file)
    const bad = Buffer.from(good)
    bad[64 + 500] ^= 0x01
    fs.writeFileSync(file, bad)
    await ok(['compact', '--min-age', '0'], repo)
    expect(dicts(repo, 1)).toEqual([d])
    expect(fs.readFileSync(file).equals(good)).toBe(true)
    await ok(['verify', '--all'], repo)
    expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat gen1:disk.img | cmp - '${img}'`)).code).toBe(0)

    // 40 MiB, nearly all zeros: a handful of non-zero frames, too few to train on
    const sparse = path.join(work, 'sparse')
    fs.mkdirSync(sparse)
    const z = Buffer.alloc(40 << 20)
    for (let i = 0; i < 6; i++) image(4096, i).copy(z, i * (6 << 20))
    fs.writeFileSync(path.join(sparse, 'zero.img'), z)
    const zr = path.join(work, 'zr')
    await ok(['init', '--format', '2'], zr)
    await ok(['backup', '--volume', path.join(sparse, 'zero.img')], zr)
    const first = JSON.parse((await ok(['compact', '--min-age', '0', '--json'], zr)).trim().split('\n').pop()!) as { units: { compacted: number; alreadyCompact: number }; dictionaries: { written: unknown[] } }
    expect(first.dictionaries.written).toEqual([])
    expect(first.units.compacted).toBeGreaterThan(0)
    const second = JSON.parse((await ok(['compact', '--min-age', '0', '--json'], zr)).trim().split('\n').pop()!) as { units: { compacted: number; alreadyCompact: number } }
    expect(second.units).toMatchObject({ compacted: 0, alreadyCompact: first.units.compacted })
    expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${zr}' cat gen1:zero.img | cmp - '${path.join(sparse, 'zero.img')}'`)).code).toBe(0)
  })

  it('a damaged dictionary is damage: cat fails with one line naming it (exit 6), verify finds it (exit 4); nothing reads wrong bytes', async () => {
    const repo = await volumeRepo('r5')
    await ok(['compact', '--min-age', '0'], repo)
    const [d] = dicts(repo, 1)
    const file = path.join(repo, keys2.genDir(1), d!)
    const b = fs.readFileSync(file)
    b[64 + 2000] ^= 0x40
    fs.writeFileSync(file, b)
    const cat = await bfs(['cat', 'gen1:disk.img'], { repo })
    expect(cat.code).toBe(6)
    expect(cat.stderr.trim().split('\n')).toHaveLength(1)
    expect(cat.stderr).toMatch(/dict-[0-9a-f]{8}.*checksum mismatch/)
    const v = await bfs(['verify', '--all'], { repo })
    expect(v.code).toBe(4)
    expect(v.stdout + v.stderr).toMatch(/dict-[0-9a-f]{8}/)
  })

  it('prune: a rewrite of a unit with a dictionary keeps it; the dictionary goes with its stream\'s last unit', async () => {
    const repo = await volumeRepo('r6')
    await ok(['compact', '--min-age', '0'], repo)
    const id = unitDicts(repo, 1)[0]!
    expect(id).toBeGreaterThan(0)
    // generation 2 changes a quarter of the image: a prune after forgetting gen1 rewrites its partly used units
    const changed = Buffer.from(fs.readFileSync(img))
    image(10 << 20, 99).copy(changed, 5 << 20)
    fs.writeFileSync(img, changed)
    try {
      await ok(['backup', '--volume', img], repo)
      await ok(['forget', 'gen1'], repo)
      const pr = await bfs(['prune', '--max-unused', '0', '--json'], { repo })
      expect(pr.code, pr.stderr).toBe(0)
      expect((JSON.parse(pr.stdout) as { units: { rewritten: number } }).units.rewritten).toBeGreaterThan(0)
      expect(unitDicts(repo, 1).every((x) => x === id)).toBe(true) // the rewrite kept the dictionary
      expect(dicts(repo, 1)).toHaveLength(1)
      // (the compact's run took id 2: the new backup is the latest)
      expect((await sh(`'${path.resolve('bin/bfs')}' --repo '${repo}' cat latest:disk.img | cmp - '${img}'`)).code).toBe(0)
      expect(await ok(['verify', '--all'], repo)).toMatch(/gen3 verified/)
    } finally {
      fs.writeFileSync(img, image(40 << 20, 7))
    }
    // a stream no generation uses any more: prune deletes its units and its dictionary
    const other = path.join(work, 'other')
    fs.mkdirSync(other, { recursive: true })
    fs.writeFileSync(path.join(other, 'a.txt'), 'another source\n')
    const r7 = await volumeRepo('r7')
    await ok(['compact', '--min-age', '0'], r7)
    expect(dicts(r7, 1)).toHaveLength(1)
    await ok(['backup', other], r7)
    await ok(['forget', 'gen1'], r7)
    await ok(['prune'], r7)
    expect(fs.existsSync(path.join(r7, keys2.genDir(1)))).toBe(false)
    expect(await ok(['verify', '--all'], r7)).toMatch(/gen3 verified/)
  })
})
