/**
 * The tape tier on a format 2 repository (native-notes/format.md §2.18), through the real CLI
 * on real repositories and a virtual tape library at clock scale 0: `bfs tier add`, `bfs
 * migrate` (what moves, the catalog, the `tape` feature, kill -9 at random moments), reads of
 * migrated units by cat, restore (through the recall service) and a real FUSE mount, and
 * prune / compact / verify with units on tape.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { recallServicePaths } from '../src/os/runtime.js'
import { RepoTapeCatalog } from '../src/repo/tapecat.js'
import { DiskStore } from '../src/store/disk.js'
import { bfs, sh, tmpdir } from './helpers.js'
import { backupsAndTier, census as censusOf, hashTree, killServices, migrateKilled, until, writeTree } from './tape-helpers.js'

let work: string
const services = new Set<string>()
const mounts = new Set<string>()
beforeAll(() => {
  work = tmpdir('bfs-f2tape-')
})
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
afterEach(async () => {
  for (const m of [...mounts]) await umount(m)
})
afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  await killServices(services) // the recall services these tests started
  // (a mount server writes its last log line into work/ as it exits after its unmount, and
  // made its runtime directory again when it did so after the removal below: every process
  // started on a repository in work/ has its path on its command line; '[/]' keeps the shell
  // that runs pgrep from matching itself)
  await until('the processes of this file to exit', async () => (await sh(`pgrep -f -- '${work}[/]'`)).stdout.trim() === '', 120_000)
  for (let i = 0; ; i++) {
    try {
      fs.rmSync(work, { recursive: true, force: true, maxRetries: 20, retryDelay: 250 })
      break
    } catch (err) {
      if (i >= 40 || (err as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw err
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}, 180_000)

/** ~8 MB in 40 files, half compressible; `round` > 0 rewrites a fifth of them. */
const tree = (dir: string, round: number): void => writeTree(dir, round, { dirs: 4, files: 10, base: 60_000 })

interface Setup {
  repo: string
  src: string
  vtl: string
  env: Record<string, string>
  expected: Map<number, Map<string, string>>
}

/** A format 2 repository with 3 generations of a tree (1 MiB units), a tape tier (clock 0), and its own runtime directory. */
async function setup(name: string): Promise<Setup> {
  const repo = path.join(work, name)
  const env: Record<string, string> = { BFS_RUNTIME_DIR: path.join(work, `${name}-run`), BFS_RECALL_IDLE_S: '3' }
  fs.mkdirSync(env.BFS_RUNTIME_DIR!, { recursive: true })
  expect((await bfs(['init', '--format', '2'], { repo })).code).toBe(0)
  services.add(recallServicePaths(repo, env).lock)
  const src = path.join(work, `${name}-src`)
  const vtl = path.join(work, `${name}-vtl`)
  const expected = await backupsAndTier(repo, src, vtl, tree)
  return { repo, src, vtl, env, expected }
}

const unitFiles = (repo: string, gen: number): string[] =>
  fs.readdirSync(path.join(repo, 'gens', String(gen).padStart(8, '0'))).filter((n) => /^unit-\d{8}$/.test(n)).map((n) => `gens/${String(gen).padStart(8, '0')}/${n}`)

/** Every unit of the generations `gens` (their unit files when `all` was taken): on disk, on tape (catalog), both, or neither. */
const census = (repo: string, gens: number[], all: Map<number, string[]>): ReturnType<typeof censusOf> => censusOf(repo, gens.flatMap((g) => all.get(g)!))

/** Restores every generation (through the recall service) and compares it with its tree. */
async function checkAll(s: Setup, label = ''): Promise<void> {
  for (const [id, want] of s.expected) {
    const dest = path.join(work, `restore-${path.basename(s.repo)}-${id}`)
    fs.rmSync(dest, { recursive: true, force: true })
    const r = await bfs(['restore', `gen${id}`, dest], { repo: s.repo, env: s.env })
    expect(r.code, `${label} gen${id}: ${r.stderr}`).toBe(0)
    const got = hashTree(dest)
    expect(got.size, `${label} gen${id}`).toBe(want.size)
    for (const [p, h] of want) expect(got.get(p), `${label} gen${id}:${p}`).toBe(h)
    fs.rmSync(dest, { recursive: true, force: true })
  }
}

describe('format 2: tape tier', () => {
  it("tier add and migrate: the chosen generations' units go to tape, the tape feature is set, cat, restore and verify read them back", async () => {
    const s = await setup('basic')
    const ls = await bfs(['tier', 'ls', '--json'], { repo: s.repo })
    expect(JSON.parse(ls.stdout)).toMatchObject([{ name: 'tape1', kind: 'vtl', cartridges: 3, drives: 1, clockScale: 0 }])
    const units = new Map([1, 2, 3].map((g) => [g, unitFiles(s.repo, g)]))
    const aside = path.join(work, 'basic-unit')
    fs.copyFileSync(path.join(s.repo, units.get(1)![0]!), aside)
    const dry = await bfs(['migrate', 'gen1-gen2', '--dry-run'], { repo: s.repo })
    expect(dry.stdout).toMatch(/^would migrate \d+ units \([\d.]+ MiB\) of gen1, gen2 to tier tape1\n$/)
    expect(fs.existsSync(path.join(s.repo, 'tape'))).toBe(false)
    const cfg = (): string => fs.readFileSync(path.join(s.repo, 'config')).toString('latin1')
    expect(cfg()).not.toContain('"tape"')
    const m = await bfs(['migrate', 'gen1-gen2', '--verify', '--file-size', '2M', '--json'], { repo: s.repo })
    expect(m.stderr).toBe('')
    expect(m.code).toBe(0)
    const n = units.get(1)!.length + units.get(2)!.length
    expect(JSON.parse(m.stdout)).toMatchObject({ tier: 'tape1', gens: [1, 2], units: n, removed: n, cartridges: ['BFS001L9'], failed: [] })
    expect(census(s.repo, [1, 2, 3], units)).toEqual({ disk: units.get(3)!.length, tape: n, both: 0, lost: [] })
    // the feature, in config and its copy; stream records, hashes and packs stay on disk
    expect(cfg()).toMatch(/"incompat":\["pieces","tape"\]/)
    expect(fs.readFileSync(path.join(s.repo, 'config-copy')).equals(fs.readFileSync(path.join(s.repo, 'config')))).toBe(true)
    expect(fs.readdirSync(path.join(s.repo, 'gens/00000001')).sort()).toEqual(['hashes', 'pack-00000000', 'stream'])
    // the catalog's head and tail are the unit's header and seek table + trailer (a format 1 unit under v1-streams)
    const e = new RepoTapeCatalog(DiskStore.open(s.repo)).entry(units.get(1)![0]!)!
    const b = fs.readFileSync(aside)
    expect(e.head.equals(b.subarray(0, 32))).toBe(true)
    expect(e.tail.equals(b.subarray(b.length - e.tail.length))).toBe(true)
    expect(b.length - e.tail.length).toBe(Number(b.readBigUInt64LE(b.length - 32)))
    // a second run has nothing to do
    const again = await bfs(['migrate', 'gen1-2'], { repo: s.repo })
    expect(again.stdout).toMatch(/^nothing to migrate to tier tape1 \(\d+ units of gen1, gen2 already on tape\)\n$/)
    // cat of a file of gen1 (recalled first, through the recall service)
    const want = s.expected.get(1)!.get('d0/f0')!
    const c = await bfs(['cat', 'gen1:d0/f0'], { repo: s.repo, env: s.env })
    expect(c.code, c.stderr).toBe(0)
    expect(createHash('sha256').update(c.out).digest('hex')).toBe(want)
    await checkAll(s)
    // restore with a small buffer cache while the service still holds every unit unpinned: the
    // smaller limit evicts them as the restore starts, and a pass must pin through the service
    // what it saw in the cache (a worker found a planned unit gone: ENOENT, format 1 too)
    const dest = path.join(work, 'basic-small')
    const r = await bfs(['restore', 'gen2', dest, '--buffer-cache', '2M'], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    expect(hashTree(dest)).toEqual(s.expected.get(2))
    // verify reads what is on disk; units on tape are not missing
    const v = await bfs(['verify', '--all'], { repo: s.repo })
    expect(v.stdout, v.stderr).toMatch(/^ok: gen1, gen2, gen3 verified/)
    expect(v.code).toBe(0)
  }, 300_000)

  it('kill -9 at random moments loses nothing: every generation reads the same, and the next run finishes the job', async () => {
    const s = await setup('kill')
    const all = [1, 2, 3]
    const units = new Map(all.map((g) => [g, unitFiles(s.repo, g)]))
    const total = all.reduce((a, g) => a + units.get(g)!.length, 0)
    let killed = 0
    for (let round = 0; round < 5; round++) {
      // a commit (flush, read-back, catalog record, disk copies removed) after every 1 MiB tape file
      const onDisk = (): number => all.reduce((a, g) => a + unitFiles(s.repo, g).length, 0)
      const code = await migrateKilled(s.repo, ['gen1-3', '--verify', '--file-size', '1M', '--commit-files', '1'], onDisk)
      if (code === null) killed++
      const c = census(s.repo, all, units)
      expect(c.lost, `round ${round}`).toEqual([])
      expect(c.disk + c.tape + c.both).toBe(total)
      await checkAll(s, `round ${round}`)
    }
    expect(killed).toBeGreaterThan(0)
    // the killed run's maintenance lock is stale: a backup and the next migration go on
    const b = await bfs(['backup', s.src, '--unit-blocks', '256', '--frame-blocks', '64'], { repo: s.repo })
    expect(b.code, b.stderr).toBe(0)
    s.expected.set(4, s.expected.get(3)!)
    const fin = await bfs(['migrate', 'gen1-3', '--verify', '--json'], { repo: s.repo })
    expect(fin.code, fin.stderr).toBe(0)
    expect(census(s.repo, all, units)).toEqual({ disk: 0, tape: total, both: 0, lost: [] })
    expect(fs.readdirSync(path.join(s.repo, 'tape')).every((n) => /^rec-\d{8}$/.test(n))).toBe(true)
    expect(fs.existsSync(path.join(s.repo, 'locks/maintenance'))).toBe(false)
    await checkAll(s, 'after')
  }, 600_000)

  it('prune and compact leave units on tape alone: a stream wholly on tape keeps its records, a disk copy of a unit on tape is not rewritten', async () => {
    const s = await setup('prune')
    const units = new Map([1, 2, 3].map((g) => [g, unitFiles(s.repo, g)]))
    // what a migration killed between its catalog commit and its removal leaves: gen2's first unit on disk and on tape
    const both = units.get(2)![0]!
    const bytes = fs.readFileSync(path.join(s.repo, both))
    const m = await bfs(['migrate', 'gen1-2', '--file-size', '2M'], { repo: s.repo })
    expect(m.code, m.stderr).toBe(0)
    fs.writeFileSync(path.join(s.repo, both), bytes)
    const cat = (): string[] => [...new RepoTapeCatalog(DiskStore.open(s.repo)).all()].map((e) => e.key).sort()
    const before = cat()
    expect(before).toEqual([...units.get(1)!, ...units.get(2)!].sort())
    // gen1 forgotten: gen2 and gen3 still read much of its stream, which is wholly on tape
    expect((await bfs(['forget', '1'], { repo: s.repo })).code).toBe(0)
    const p = await bfs(['prune', '--grace', '0', '--json'], { repo: s.repo })
    expect(p.code, p.stderr).toBe(0)
    // the stream's records stay (readers of its tape units need its geometry and hashes); no unit touched; the catalog whole
    expect(fs.existsSync(path.join(s.repo, 'gens/00000001/stream'))).toBe(true)
    expect(fs.existsSync(path.join(s.repo, 'gens/00000001/hashes'))).toBe(true)
    expect(fs.readFileSync(path.join(s.repo, both)).equals(bytes)).toBe(true)
    expect(cat()).toEqual(before)
    const c = await bfs(['compact', '--min-age', '0', '--json'], { repo: s.repo })
    expect(c.code, c.stderr).toBe(0)
    expect(fs.readFileSync(path.join(s.repo, both)).equals(bytes)).toBe(true) // not rewritten
    expect(cat()).toEqual(before)
    s.expected.delete(1)
    await checkAll(s, 'after prune and compact')
    // gen3's units, rewritten by compact as format 2 units, go to tape sized from their unit index
    const v2 = units.get(3)!.filter((k) => fs.readFileSync(path.join(s.repo, k)).readUInt16LE(8) === 2)
    expect(v2.length).toBeGreaterThan(0)
    const copies = new Map(v2.map((k) => [k, fs.readFileSync(path.join(s.repo, k))]))
    const m3 = await bfs(['migrate', 'gen2-3', '--verify', '--file-size', '2M'], { repo: s.repo })
    expect(m3.code, m3.stderr).toBe(0)
    expect(fs.existsSync(path.join(s.repo, both))).toBe(false) // the leftover's disk copy went
    const tc = new RepoTapeCatalog(DiskStore.open(s.repo))
    for (const [k, b] of copies) {
      const e = tc.entry(k)!
      expect(e.head.equals(b.subarray(0, 96))).toBe(true)
      expect(b.length - e.tail.length).toBe(Number(b.readBigUInt64LE(b.length - 32)))
      expect(e.tail.equals(b.subarray(b.length - e.tail.length))).toBe(true)
    }
    await checkAll(s, 'all on tape')
    const v = await bfs(['verify', '--all'], { repo: s.repo })
    expect(v.code, v.stdout + v.stderr).toBe(0)
  }, 300_000)

  it('bfs recall of a subtree, then a real FUSE mount: --offline eio serves what was recalled and fails the rest at once; without it every file reads through the recall service, with --tape-readahead too', async () => {
    const s = await setup('mount')
    expect((await bfs(['migrate', 'gen1', '--file-size', '2M'], { repo: s.repo })).code).toBe(0)
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt)
    // bfs recall of one directory: the estimate, then its units (only) into the buffer cache
    const dry = await bfs(['recall', 'gen1:d1', '--dry-run', '--json'], { repo: s.repo, env: s.env })
    expect(dry.code, dry.stderr).toBe(0)
    const est = JSON.parse(dry.stdout.trim().split('\n').pop()!)
    expect(est).toMatchObject({ gen: 1, path: 'd1', dryRun: true, inCache: 0, onDisk: 0, cartridges: ['BFS001L9'] })
    expect(est.onTape).toBeGreaterThan(0)
    expect(est.estimateSeconds).toBeGreaterThan(0)
    const rc = await bfs(['recall', 'gen1:d1', '--json'], { repo: s.repo, env: s.env })
    expect(rc.code, rc.stderr).toBe(0)
    expect(JSON.parse(rc.stdout.trim().split('\n').pop()!)).toMatchObject({ recalled: est.onTape, failed: [] })
    // --offline eio: a read of a file on tape fails (EIO) at once, ls works, what recall brought back reads
    let r = await bfs(['mount', 'gen1', mnt, '--offline', 'eio'], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    mounts.add(mnt)
    expect(fs.readdirSync(mnt).sort()).toEqual(['d0', 'd1', 'd2', 'd3'])
    expect(() => fs.readFileSync(path.join(mnt, 'd0/f0'))).toThrow(/EIO/)
    for (const f of fs.readdirSync(path.join(mnt, 'd1'))) expect(createHash('sha256').update(fs.readFileSync(path.join(mnt, 'd1', f))).digest('hex')).toBe(s.expected.get(1)!.get(`d1/${f}`))
    await umount(mnt)
    r = await bfs(['mount', 'gen1', mnt], { repo: s.repo, env: s.env })
    expect(r.code, r.stderr).toBe(0)
    mounts.add(mnt)
    expect(hashTree(mnt)).toEqual(s.expected.get(1))
    await umount(mnt)
    // --tape-readahead is taken (test/format2-tape-mount.test.ts tests what it does)
    const ra = await bfs(['mount', 'gen1', mnt, '--tape-readahead', '8'], { repo: s.repo, env: s.env })
    expect(ra.code, ra.stderr).toBe(0)
    mounts.add(mnt)
    expect(hashTree(mnt)).toEqual(s.expected.get(1))
    await umount(mnt)
  }, 300_000)
})
