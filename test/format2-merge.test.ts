/**
 * `bfs merge genA..genB` on format 2 (issue 16 item 2; format.md §2.20.5), through the real CLI
 * on real repositories: the result is generation B at rev r+1, written by a merge run, whose
 * directory pieces are all DIR/DIRINDEX (the DIRDELTAs of B's tree folded), A … B−1 retired;
 * B and the generations outside the range restore byte-identical (diff -r), before and after a
 * prune, including the generation after B whose pieces refer into the merged range; a real
 * mount (its own process) of the merged B equals its source; kill -9 (BFS_TEST_FAULTS `kill`)
 * at each step leaves every generation intact, and rerunning the merge (or a prune, then the
 * merge) finishes it; bad command lines and foreign ranges are refused in one line.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { PieceKind, type PieceRef } from '../src/format/v2/common.js'
import { type Entry2, FileType } from '../src/format/v2/dir.js'
import { decodeRunRecord, encodeLease, LEASE_EXPIRES_MS, type LeaseRecord, type RunRecord } from '../src/format/v2/records.js'
import { pidStartOf } from '../src/repo/v2/lease.js'
import { PieceReader } from '../src/pieces/reader.js'
import { envelope2, payloadOf, Repo2 } from '../src/repo/v2/repo2.js'

let work: string
const mounts = new Set<string>()

const ok = async (args: string[], repo: string, env?: Record<string, string>): Promise<string> => {
  const res = await bfs(args, { repo, env })
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0)
  return res.stdout
}
async function umount(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
  mounts.delete(mnt)
}
const ids = async (repo: string): Promise<number[]> => (JSON.parse(await ok(['ls', '--json'], repo)) as Array<{ id: number }>).map((g) => g.id)
const runs = (repo: string): RunRecord[] => fs.readdirSync(path.join(repo, 'runs')).map((n) => decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(repo, 'runs', n)), n), n))

interface History {
  repo: string
  src: string
  snaps: Map<number, string>
}

/**
 * `n` generations of a tree whose directories become DIRDELTAs: `d` (200 small files, one
 * changed and one added per generation), `deep/er/big` (5,000 entries: paged, one page
 * touched per generation; left out with `paged` false), a random 200 KiB file replaced each time (each generation's own
 * stream), and a constant part.
 */
async function history(name: string, n: number, paged = true): Promise<History> {
  const d = path.join(work, name)
  const src = path.join(d, 'src')
  fs.mkdirSync(path.join(src, 'd'), { recursive: true })
  fs.mkdirSync(path.join(src, 'deep/er/big'), { recursive: true })
  fs.mkdirSync(path.join(src, 'keep'), { recursive: true })
  for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(src, 'd', `f${String(i).padStart(3, '0')}`), `small ${i}\n`)
  if (paged) for (let i = 0; i < 5000; i++) fs.writeFileSync(path.join(src, 'deep/er/big', `e${String(i).padStart(5, '0')}`), `${i}\n`)
  fs.writeFileSync(path.join(src, 'keep/a'), 'constant\n'.repeat(5000))
  fs.symlinkSync('a', path.join(src, 'keep/link'))
  const repo = path.join(d, 'repo')
  await ok(['init', '--format', '2'], repo)
  const snaps = new Map<number, string>()
  for (let i = 1; i <= n; i++) {
    fs.rmSync(path.join(src, `rand${i - 1}`), { force: true })
    fs.writeFileSync(path.join(src, `rand${i}`), randomBytes(200 * 1024))
    fs.writeFileSync(path.join(src, 'd', `f${String(i).padStart(3, '0')}`), `changed in generation ${i}\n`)
    fs.writeFileSync(path.join(src, 'd', `new${i}`), `added in generation ${i}\n`)
    fs.writeFileSync(path.join(src, 'deep/er/big', `e${String(i * 7).padStart(5, '0')}`), `generation ${i}\n`)
    await ok(['backup', src], repo)
    const snap = path.join(d, `snap${i}`)
    await sh(`cp -a '${src}' '${snap}'`)
    snaps.set(i, snap)
  }
  return { repo, src, snaps }
}

async function restoresIdentical(h: History, gens: number[]): Promise<void> {
  for (const g of gens) {
    const out = path.join(work, `restore-${path.basename(path.dirname(h.repo))}-${g}`)
    fs.rmSync(out, { recursive: true, force: true })
    await ok(['restore', `gen${g}`, out], h.repo)
    expect(await diffTree(h.snaps.get(g)!, out), `gen${g}`).toBe('')
    fs.rmSync(out, { recursive: true, force: true })
  }
}

/** Kinds of every directory piece a generation's tree reads (index nodes and pages included), counted. */
async function dirKinds(repoDir: string, id: number): Promise<Record<string, number>> {
  const repo = Repo2.open(repoDir)
  const m = repo.manifest(id)
  const reader = new PieceReader(repo.store, { cacheBytes: 8 << 20 })
  const count: Record<string, number> = { dir: 0, delta: 0, index: 0 }
  const seen = new Set<string>()
  const piece = async (ref: PieceRef): Promise<void> => {
    const k = ref.id.toString('hex')
    if (seen.has(k)) return
    seen.add(k)
    const p = await reader.pieceOf(ref, [PieceKind.Dir, PieceKind.DirDelta, PieceKind.DirIndex], 'directory')
    if (p.kind === PieceKind.DirIndex) {
      count.index!++
      for (const c of p.index.children) await piece(c.ref)
      return
    }
    count[p.kind === PieceKind.Dir ? 'dir' : 'delta']!++
    for (const e of p.entries) await entry(e)
  }
  const entry = async (e: Entry2): Promise<void> => {
    if (e.type === FileType.Dir && e.dir) await piece(e.dir.child)
  }
  await entry(m.rootEntry)
  reader.close()
  return count
}

beforeAll(() => {
  work = tmpdir('bfs-v2merge-')
})

afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 merge', () => {
  it('merge gen2..gen5: gen5 rev 2 of whole DIRs, gen2-4 retired; gen1, gen5 and gen6 (which refers into the range) restore identical before and after prune; verify --all passes; a mount of gen5 equals its source', async () => {
    const h = await history('main', 6)
    const before = await dirKinds(h.repo, 5)
    expect(before.delta).toBeGreaterThan(0) // the test means something: gen5's tree has DIRDELTAs
    expect(before.index).toBeGreaterThan(0) // and a paged directory
    const r = JSON.parse(await ok(['merge', 'gen2..gen5', '--json'], h.repo)) as Record<string, any>
    expect(r.target).toBe(5)
    expect(r.rev).toBe(2)
    expect(r.retired).toEqual([2, 3, 4])
    expect(r.fold.deltasFolded).toBeGreaterThan(0)
    expect(await ids(h.repo)).toEqual([1, 5, 6])
    const after = await dirKinds(h.repo, 5)
    expect(after.delta).toBe(0)
    expect(after.index).toBe(before.index)
    const repo = Repo2.open(h.repo)
    const m5 = repo.manifest(5)
    expect(m5).toMatchObject({ id: 5, rev: 2, run: r.run, merged: { from: 2, to: 5, runs: [2, 3, 4, 5] }, biLog: null, biIndex: null })
    expect(runs(h.repo).find((x) => x.run === r.run)).toMatchObject({ kind: 'merge', state: 'committed', target: 5 })
    expect(fs.readdirSync(path.join(h.repo, 'retired')).sort()).toEqual(['gen-00000002-r0001', 'gen-00000003-r0001', 'gen-00000004-r0001', 'gen-00000005-r0001'])
    // every new piece is in gens/M
    expect(fs.readdirSync(path.join(h.repo, keys2.genDir(r.run)))).toEqual(['pack-00000000'])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 5, 6])
    // gen6 is an incremental of the old gen5: its DIRDELTAs' bases and unchanged pieces lie in the merged range's packs
    expect((await dirKinds(h.repo, 6)).delta).toBeGreaterThan(0)
    const pruned = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(pruned.retired.dropped.length).toBe(4)
    expect(pruned.packs.deleted).toBeGreaterThan(0)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 5, 6])
    // the mount (its own process) shows the merged gen5
    const mnt = path.join(work, 'mnt-merge')
    fs.mkdirSync(mnt, { recursive: true })
    await ok(['mount', 'gen5', mnt], h.repo)
    mounts.add(mnt)
    expect(await diffTree(h.snaps.get(5)!, mnt)).toBe('')
    await umount(mnt)
    // merging again from the same start has nothing to do; a new backup after the merge takes gen5 rev 2 as its parent and restores identical
    const again = JSON.parse(await ok(['merge', '2..5', '--json'], h.repo)) as Record<string, any>
    expect(again).toMatchObject({ run: null, rev: 2, retired: [] })
    fs.writeFileSync(path.join(h.src, 'd', 'f100'), 'after the merge\n')
    await ok(['backup', h.src], h.repo)
    const last = (await ids(h.repo)).at(-1)!
    h.snaps.set(last, path.join(work, 'main', 'snap-last'))
    await sh(`cp -a '${h.src}' '${h.snaps.get(last)}'`)
    await ok(['merge', `gen5..gen${last}`], h.repo)
    expect(await ids(h.repo)).toEqual([1, last])
    expect((await dirKinds(h.repo, last)).delta).toBe(0)
    await ok(['prune'], h.repo)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, last])
  }, 900_000)

  it('kill -9 at each step: every generation stays intact; rerunning the merge (or a prune, then the merge) finishes it', async () => {
    const points: Array<{ rule: { keys: string; ops: string[]; after?: number }; committed: boolean; runDone?: boolean; pruneFirst?: boolean }> = [
      { rule: { keys: 'gens/*/pack-*', ops: ['commitStaged'] }, committed: false }, // while writing pieces
      { rule: { keys: 'retired/*', ops: ['put'] }, committed: false, pruneFirst: true }, // before the superseded copy
      { rule: { keys: 'manifests/*', ops: ['put'] }, committed: false }, // superseded copy written, before the replace
      { rule: { keys: 'runs/*', ops: ['put'], after: 1 }, committed: true }, // replaced, run not yet committed
      { rule: { keys: 'manifests/*', ops: ['remove'] }, committed: true, runDone: true }, // gen1 retired, its manifest not yet deleted
      { rule: { keys: 'manifests/*', ops: ['remove'], after: 1 }, committed: true, runDone: true, pruneFirst: true }, // gen1 gone, gen2 not
    ]
    let k = 0
    for (const p of points) {
      const what = JSON.stringify(p.rule)
      const h = await history(`kill-${k++}`, 4, false)
      const crash = await bfs(['merge', 'gen1..gen3'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ ...p.rule, fault: 'kill' }] }) } })
      expect(crash.stderr, what).toContain('killed by SIGKILL')
      const killed = runs(h.repo).find((r) => r.kind === 'merge')!
      expect(killed.state, what).toBe(p.runDone ? 'committed' : 'running')
      const left = await ids(h.repo)
      if (!p.committed) expect(left, what).toEqual([1, 2, 3, 4])
      expect(Repo2.open(h.repo).manifest(3).rev, what).toBe(p.committed ? 2 : 1)
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, left)
      if (p.pruneFirst) {
        await ok(['prune'], h.repo)
        const rec = runs(h.repo).find((r) => r.run === killed.run)!
        expect(rec.state, what).toBe(p.committed ? 'committed' : 'aborted')
        expect(fs.existsSync(path.join(h.repo, keys2.genDir(killed.run))), what).toBe(p.committed)
      }
      const res = await bfs(['merge', 'gen1..gen3', '--json'], { repo: h.repo })
      expect(res.code, `${what}: ${res.stderr}`).toBe(0)
      if (!p.pruneFirst) expect(res.stderr).toContain('broke a stale maintenance lock')
      const out = JSON.parse(res.stdout) as Record<string, any>
      expect(out.run === null, what).toBe(p.committed)
      const rec = runs(h.repo).find((r) => r.run === killed.run)!
      expect(rec.state, what).toBe(p.committed ? 'committed' : 'aborted')
      if (!p.committed) expect(fs.existsSync(path.join(h.repo, keys2.genDir(killed.run))), what).toBe(false)
      expect(await ids(h.repo), what).toEqual([3, 4])
      expect(Repo2.open(h.repo).manifest(3).rev, what).toBe(2)
      expect((await dirKinds(h.repo, 3)).delta, what).toBe(0)
      expect(fs.readdirSync(path.join(h.repo, 'leases')), what).toEqual([])
      await ok(['prune'], h.repo)
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [3, 4])
      fs.rmSync(path.dirname(h.repo), { recursive: true, force: true })
    }
  }, 900_000)

  const retiredNames = (repo: string): string[] => fs.readdirSync(path.join(repo, 'retired')).sort()
  const retiredCopy = (repo: string, name: string): Record<string, any> => JSON.parse(payloadOf('manifest', fs.readFileSync(path.join(repo, 'retired', name)), name).toString('utf8')) as Record<string, any>
  /** A `superseded` copy of gen`id`'s current manifest, as a merge that did not commit leaves it (retiredBy: a run that is not running). */
  const plantSuperseded = (repo: string, id: number, retiredBy: number, retiredAt: string): string => {
    const name = path.basename(keys2.manifest(id))
    const json = JSON.parse(payloadOf('manifest', fs.readFileSync(path.join(repo, 'manifests', name)), name).toString('utf8')) as Record<string, any>
    const copy = path.basename(keys2.retiredManifest(id, json.rev as number))
    fs.writeFileSync(path.join(repo, 'retired', copy), envelope2('manifest', Buffer.from(JSON.stringify({ ...json, retiredAt, retiredBy, reason: 'superseded' }))))
    return copy
  }

  it('a merge that fails between its superseded copy and the replace drops the copy: forget of its target, a later merge over it and prune work; a stale copy is replaced, with a fresh retiredAt', async () => {
    const h = await history('abort', 5, false)
    const failed = await bfs(['merge', 'gen1..gen3'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['put'], fault: 'EIO' }] }) } })
    expect(failed.code, failed.stderr).not.toBe(0)
    expect(failed.stderr.trim().split('\n')).toHaveLength(1)
    const m = runs(h.repo).find((r) => r.kind === 'merge')!
    expect(m.state).toBe('aborted')
    expect(fs.existsSync(path.join(h.repo, keys2.genDir(m.run)))).toBe(false)
    expect(retiredNames(h.repo)).toEqual([]) // its superseded copy of gen3 r1 (still current) is gone
    expect(await ids(h.repo)).toEqual([1, 2, 3, 4, 5])
    expect(Repo2.open(h.repo).manifest(3).rev).toBe(1)
    // the target can be forgotten
    await ok(['forget', 'gen3'], h.repo)
    expect(await ids(h.repo)).toEqual([1, 2, 4, 5])
    // a superseded copy of a still-current revision that a recovery missed (an older bfs left it): prune says what it is, forget and merge replace it
    const stale2 = plantSuperseded(h.repo, 2, 999, '2020-01-01T00:00:00.000Z')
    const stale5 = plantSuperseded(h.repo, 5, 999, '2020-01-01T00:00:00.000Z')
    const survey = JSON.parse(await ok(['prune', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(JSON.stringify(survey), JSON.stringify(survey)).toContain('left by a merge that did not commit: the next merge or forget of gen2 replaces it')
    expect(JSON.stringify(survey)).not.toContain('an interrupted forget')
    const t0 = Date.now()
    const r = JSON.parse(await ok(['merge', 'gen1..gen5', '--json'], h.repo)) as Record<string, any>
    expect(r).toMatchObject({ target: 5, rev: 2, retired: [1, 2, 4] })
    expect(retiredCopy(h.repo, stale2)).toMatchObject({ id: 2, rev: 1, reason: 'merged-into' })
    // the superseded copy of gen5 r1 is the merge's own, retired now (not 2020's: readers since are in prune's grace)
    expect(retiredCopy(h.repo, stale5)).toMatchObject({ id: 5, rev: 1, reason: 'superseded', retiredBy: r.run })
    expect(Date.parse(retiredCopy(h.repo, stale5).retiredAt as string)).toBeGreaterThanOrEqual(t0 - 1000)
    expect(await ids(h.repo)).toEqual([5])
    await ok(['prune'], h.repo)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [5])
  }, 600_000)

  it('kill -9 between the superseded copy and the replace: recovery (here prune\'s) drops the copy; forget of the target and forget --keep-last then work', async () => {
    const h = await history('abort-kill', 4, false)
    const crash = await bfs(['merge', 'gen1..gen3'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['put'], fault: 'kill' }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    expect(retiredNames(h.repo)).toEqual(['gen-00000003-r0001'])
    const killed = runs(h.repo).find((r) => r.kind === 'merge')!
    const pruned = await bfs(['prune', '--json'], { repo: h.repo })
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(runs(h.repo).find((r) => r.run === killed.run)!.state).toBe('aborted')
    expect(fs.existsSync(path.join(h.repo, keys2.genDir(killed.run)))).toBe(false)
    expect(retiredNames(h.repo)).toEqual([])
    await ok(['forget', 'gen3'], h.repo)
    await ok(['forget', '--keep-last', '1'], h.repo)
    expect(await ids(h.repo)).toEqual([4])
    await ok(['prune'], h.repo)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [4])
  }, 600_000)

  it('a replace that landed but does not read back: gens/M and the running record stay; the next merge\'s recovery finds it committed', async () => {
    const h = await history('unread', 4, false)
    // the replace lands and reports EIO; the read-back of gen3's manifest (its third get in this run) fails
    const faults = { rules: [{ keys: 'manifests/gen-00000003', ops: ['put'], fault: 'unacked' }, { keys: 'manifests/gen-00000003', ops: ['get'], fault: 'EIO', after: 3, times: 1 }] }
    const failed = await bfs(['merge', 'gen1..gen3'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify(faults) } })
    expect(failed.code, failed.stderr).not.toBe(0)
    const m = runs(h.repo).find((r) => r.kind === 'merge')!
    const m3 = Repo2.open(h.repo).manifest(3)
    expect(m3).toMatchObject({ rev: 2, run: m.run }) // it landed
    expect(m.state).toBe('running')
    expect(fs.readdirSync(path.join(h.repo, keys2.genDir(m.run))).length).toBeGreaterThan(0) // what gen3 rev 2 references
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 2, 3, 4])
    const again = JSON.parse(await ok(['merge', 'gen1..gen3', '--json'], h.repo)) as Record<string, any>
    expect(again).toMatchObject({ run: null, rev: 2, retired: [1, 2] })
    expect(runs(h.repo).find((r) => r.run === m.run)!.state).toBe('committed')
    await ok(['prune'], h.repo)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [3, 4])
  }, 600_000)

  it('refuses bad ranges, missing generations, ranges of another source, format 1 repositories and a held lock in one line', async () => {
    const h = await history('refuse', 2, false)
    const other = path.join(work, 'refuse', 'other')
    fs.mkdirSync(other)
    fs.writeFileSync(path.join(other, 'x'), 'x')
    await ok(['backup', other], h.repo) // gen3, another source
    await ok(['backup', h.src], h.repo) // gen4
    const cases: Array<[string[], number, RegExp]> = [
      [['merge', 'gen3..gen1'], 2, /the range ends before it starts/],
      [['merge', 'foo'], 2, /name the range as genA\.\.genB/],
      [['merge', '1..9'], 1, /no generation 9/],
      [['merge', '1..4'], 1, /gen3 \(.*other.*\) is not of gen4's source, host and group: merge takes a range of one backup chain; nothing was changed/],
    ]
    for (const [args, code, re] of cases) {
      const r = await bfs(args, { repo: h.repo })
      expect(r.code, args.join(' ')).toBe(code)
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1)
      expect(r.stderr).toMatch(re)
    }
    expect(await ids(h.repo)).toEqual([1, 2, 3, 4])
    const v1 = path.join(work, 'refuse', 'v1')
    await ok(['init', '--format', '1'], v1)
    const r1 = await bfs(['merge', '1..2'], { repo: v1 })
    expect(r1.code).toBe(6)
    expect(r1.stderr).toBe(`bfs: ${v1} is a format 1 repository: 'bfs merge' needs a format 2 one (bfs init --format 2); nothing was changed\n`)
    // a held maintenance lock (a live process's): exit 5 at once, in one line
    const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' })
    try {
      const now = new Date().toISOString()
      const rec: LeaseRecord = { lease: 'maintenance', kind: 'maintenance', host: os.hostname(), pid: sleeper.pid!, pidStart: pidStartOf(sleeper.pid!) ?? 0, started: now, renewed: now, expiresAfterMs: LEASE_EXPIRES_MS, command: 'prune' }
      fs.writeFileSync(path.join(h.repo, keys2.maintenanceLock), envelope2('lease', encodeLease(rec)))
      const locked = await bfs(['merge', '1..2'], { repo: h.repo })
      expect(locked.code).toBe(5)
      expect(locked.stderr).toMatch(/^bfs: .*the maintenance lock is held by pid \d+ .*'merge' did nothing \(use --wait to wait for it\)\n$/)
      fs.rmSync(path.join(h.repo, keys2.maintenanceLock))
    } finally {
      sleeper.kill('SIGKILL')
    }
    expect(await ids(h.repo)).toEqual([1, 2, 3, 4])
    expect(runs(h.repo).filter((r) => r.kind === 'merge')).toEqual([])
  }, 300_000)
})
