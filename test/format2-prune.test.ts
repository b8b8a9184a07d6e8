/**
 * `bfs prune` on format 2 (issue 16 item 3; format.md §2.20.7), through the real CLI on real
 * repositories: after forgetting half of the generations, prune deletes the units, packs,
 * stream records and retired manifests nothing needs; verify --all passes, every kept
 * generation restores byte-identical (diff -r) and the repository shrinks; --dry-run changes
 * nothing; a generation mounted (its own process) and then forgotten keeps reading across a
 * prune, and its data goes only once it is unmounted; a backup running meanwhile (stalled at
 * its commit point) is left alone and its parent, forgotten meanwhile, kept by its lease; kill -9 (BFS_TEST_FAULTS `kill`) at
 * every step of the sweep leaves every committed generation intact, and the next prune ends
 * with the same repository as an uninterrupted one; leases protect what they pin; a reader
 * that appears while prune marks stops it before anything is deleted.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bfs, diffTree, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { PieceKind, finishPiece, pieceWriter, writePieceRef } from '../src/format/v2/common.js'
import { type BiOverlayRow, encodeIdPage, TableKind } from '../src/format/v2/idtable.js'
import { PackWriter } from '../src/pieces/packs.js'
import { decodePrunePlan, decodeRunRecord, encodeLease, encodeManifestV2, encodeRunRecord, LEASE_EXPIRES_MS, type LeaseRecord } from '../src/format/v2/records.js'
import { pidStartOf } from '../src/repo/v2/lease.js'
import { recheckLeases, survey } from '../src/repo/v2/prune.js'
import { envelope2, payloadOf, Repo2 } from '../src/repo/v2/repo2.js'

let work: string
const mounts = new Set<string>()
const children: ChildProcess[] = []

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
/** Every file of a repository with its size and mtime, and every directory. */
async function snapshot(dir: string): Promise<string> {
  return (await sh(`cd '${dir}' && { find . -type d; find . -not -type d -printf '%p %y %s %T@\\n'; } | sort`)).stdout
}
/** Names of the files under gens/ (what an interrupted and an uninterrupted prune must agree on). */
async function gensFiles(repo: string): Promise<string> {
  return (await sh(`cd '${repo}' && find gens -type f | sort`)).stdout
}
const du = async (dir: string): Promise<number> => Number((await sh(`du -sb '${dir}'`)).stdout.split('\t')[0])
const ids = async (repo: string): Promise<number[]> => (JSON.parse(await ok(['ls', '--json'], repo)) as Array<{ id: number }>).map((g) => g.id)
function sleeper(): ChildProcess {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' })
  children.push(c)
  return c
}
function putLease(repo: string, l: Partial<LeaseRecord> & { pid: number; lease: string }): void {
  const now = new Date().toISOString()
  const rec: LeaseRecord = { kind: 'mount', host: os.hostname(), pidStart: pidStartOf(l.pid) ?? 0, started: now, renewed: now, expiresAfterMs: LEASE_EXPIRES_MS, ...l }
  fs.mkdirSync(path.join(repo, 'leases'), { recursive: true })
  fs.writeFileSync(path.join(repo, keys2.lease(l.lease)), envelope2('lease', encodeLease(rec)))
}

interface History {
  repo: string
  src: string
  /** Copies of the source as each generation stored it. */
  snaps: Map<number, string>
}

/**
 * `n` generations of a small tree: a constant part (kept by every generation: its data lives
 * in stream 1), one 256 KiB random file replaced by each generation (so a forgotten
 * generation's own stream is dead once the next one is kept), and a small file rewritten.
 */
async function history(name: string, n: number): Promise<History> {
  const d = path.join(work, name)
  const src = path.join(d, 'src')
  fs.mkdirSync(path.join(src, 'keep/sub'), { recursive: true })
  fs.writeFileSync(path.join(src, 'keep/a'), 'constant\n'.repeat(1000))
  fs.writeFileSync(path.join(src, 'keep/sub/b'), Buffer.alloc(50_000, 7))
  fs.symlinkSync('a', path.join(src, 'keep/link'))
  const repo = path.join(d, 'repo')
  await ok(['init', '--format', '2'], repo)
  const snaps = new Map<number, string>()
  for (let i = 1; i <= n; i++) {
    fs.rmSync(path.join(src, `big${i - 1}`), { force: true })
    const big = Buffer.alloc(256 * 1024)
    for (let o = 0; o < big.length; o += 4) big.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, o)
    fs.writeFileSync(path.join(src, `big${i}`), big)
    fs.writeFileSync(path.join(src, 'small'), `generation ${i}\n`)
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

beforeAll(() => {
  work = tmpdir('bfs-v2prune-')
})

afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  for (const c of children) c.kill('SIGKILL')
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 prune', () => {
  it('after forgetting half of the generations: deletes what nothing needs; verify passes, kept generations restore identical, the repository shrinks', async () => {
    const h = await history('half', 8)
    await ok(['forget', '1', '3', '5', '7'], h.repo)
    const before = await du(h.repo)
    const res = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(res.dryRun).toBe(false)
    expect(res.committed).toEqual([2, 4, 6, 8])
    expect(res.retired.dropped).toEqual(['gen-00000001-r0001', 'gen-00000003-r0001', 'gen-00000005-r0001', 'gen-00000007-r0001'])
    // streams 3, 5, 7 held only their big file: deleted whole; stream 1 holds the constant part too
    expect(res.streams.dropped).toEqual([3, 5, 7])
    expect(res.units.deleted).toBe(3)
    expect(res.units.partlyUsed).toBe(1)
    expect(res.bytes.reclaimable).toBeGreaterThan(3 * 256 * 1024 * 0.9)
    const after = await du(h.repo)
    expect(before - after).toBeGreaterThan(3 * 256 * 1024 * 0.9)
    for (const g of [3, 5, 7]) expect(fs.existsSync(path.join(h.repo, keys2.genDir(g)))).toBe(false)
    expect(fs.readdirSync(path.join(h.repo, 'retired'))).toEqual([])
    expect(await ids(h.repo)).toEqual([2, 4, 6, 8])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6, 8])
    // the run and its plan
    const run = res.run as number
    const rec = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(h.repo, keys2.run(run))), 'run'), 'run')
    expect(rec).toMatchObject({ kind: 'prune', state: 'committed' })
    const plan = decodePrunePlan(payloadOf('plan', fs.readFileSync(path.join(h.repo, keys2.plan(run))), 'plan'), 'plan')
    expect(plan.roots).toEqual(['2@1', '4@1', '6@1', '8@1'])
    expect(plan.streamsDrop).toEqual([3, 5, 7])
    expect(plan.retiredDrop).toHaveLength(4)
    // the history records it
    const hist = JSON.parse(await ok(['history', '--json'], h.repo)) as Array<Record<string, any>>
    const last = hist.filter((x) => x.command === 'prune').pop()!
    expect(last).toMatchObject({ result: 'ok', exit: 0, generations: [1, 3, 5, 7] })
    expect(last.bytes.reclaimed).toBe(res.bytes.reclaimable)
    // a second prune finds nothing, and keeps only its own plan
    const again = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(again.bytes.reclaimable).toBe(0)
    expect(again.units.deleted).toBe(0)
    expect(fs.readdirSync(path.join(h.repo, 'prune'))).toEqual([path.basename(keys2.plan(again.run))])
    await ok(['verify', '--all'], h.repo)
    // forgetting all but the newest: their streams go; stream 1's unit stays (gen8 holds the constant part)
    await ok(['forget', '2', '4', '6'], h.repo)
    const third = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(third.streams.dropped).toEqual([2, 4, 6])
    expect(fs.existsSync(path.join(h.repo, keys2.unit(1, 0)))).toBe(true)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [8])
  })

  it('--dry-run says what would go and changes nothing', async () => {
    const h = await history('dry', 4)
    await ok(['forget', '1', '2'], h.repo)
    const snap = await snapshot(h.repo)
    const text = await ok(['prune', '--dry-run'], h.repo)
    expect(text).toMatch(/would delete: 1 unit .*2 retired manifests \(gen1 rev 1, gen2 rev 1\)/)
    expect(text).toMatch(/dry run: would reclaim .*; nothing was changed/)
    const json = JSON.parse(await ok(['prune', '-n', '--json'], h.repo)) as Record<string, any>
    expect(json).toMatchObject({ dryRun: true, run: null, committed: [3, 4] })
    // gen1's stream holds the constant part still used: only stream 2 goes whole, gen1's unit stays partly used
    expect(json.streams.dropped).toEqual([2])
    expect(await snapshot(h.repo)).toBe(snap)
    const real = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(real.bytes.reclaimable).toBe(json.bytes.reclaimable)
    expect(real.streams.dropped).toEqual([2])
  })

  it("a DIRDELTA's base that is another root's own directory is walked whole: a protected generation's file the delta replaced keeps its data", async () => {
    const repo = path.join(work, 'delta-base')
    const src = path.join(work, 'delta-base-src')
    const d = path.join(src, 'd')
    fs.mkdirSync(d, { recursive: true })
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(d, `f${String(i).padStart(3, '0')}`), `small ${i}\n`)
    await ok(['init', '--format', '2'], repo)
    await ok(['backup', src], repo) // gen1
    // gen2: every entry changed (a whole new DIR) and f, whose only copy is stream 2
    await sh(`touch -m -d '2020-01-02' '${d}'/f*`)
    fs.writeFileSync(path.join(d, 'f'), randomBytes(300_000))
    await ok(['backup', src], repo)
    // gen3: only f rewritten: a DIRDELTA over gen2's DIR
    fs.writeFileSync(path.join(d, 'f'), randomBytes(300_000))
    await ok(['backup', src], repo)
    await ok(['forget', '2'], repo)
    // gen2 is kept by --grace: its directory is the base of gen3's delta, walked first through gen3
    const plan = JSON.parse(await ok(['prune', '--dry-run', '--json', '--grace', '1h'], repo)) as Record<string, any>
    expect(plan.streams.dropped).not.toContain(2)
    await ok(['prune', '--grace', '1h'], repo)
    await ok(['verify', '--all'], repo)
    // gen2's retired manifest is what the grace keeps, and its stream still holds its f
    expect(fs.readdirSync(path.join(repo, 'retired'))).toEqual([path.basename(keys2.retiredManifest(2, 1))])
    expect(fs.readdirSync(path.join(repo, 'gens', '00000002')).filter((n) => n.startsWith('unit-')).length).toBeGreaterThan(0)
  })

  it('a mounted generation, then forgotten, keeps reading across a prune (its lease pins it); unmounted, the next prune reclaims it', async () => {
    const h = await history('mount', 4)
    const mnt = path.join(work, 'mnt-prune')
    fs.mkdirSync(mnt, { recursive: true })
    await ok(['mount', 'gen2', mnt], h.repo)
    mounts.add(mnt)
    // only listed before the prune: no unit is open yet, so a prune that deleted gen2's data
    // would make the reads below fail (an open unit's fd would keep its inode readable)
    expect(fs.readdirSync(mnt).sort()).toEqual(['big2', 'keep', 'small'])
    await ok(['forget', '1', '2', '3'], h.repo)
    const res = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(res.retired.kept.map((r: any) => r.generation)).toEqual(['gen2'])
    expect(res.retired.kept[0].why).toMatch(/in use by pid \d+/)
    expect(res.retired.dropped).toEqual(['gen-00000001-r0001', 'gen-00000003-r0001'])
    expect(res.streams.dropped).toEqual([3])
    expect(fs.existsSync(path.join(h.repo, keys2.unit(2, 0)))).toBe(true)
    // every byte of the mount still as gen2 stored it
    expect(await diffTree(h.snaps.get(2)!, mnt)).toBe('')
    await ok(['verify', '--all'], h.repo)
    await umount(mnt)
    const next = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(next.retired.dropped).toEqual(['gen-00000002-r0001'])
    expect(next.streams.dropped).toEqual([2])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [4])
  })

  it('a backup running during the prune: its run is left alone, its parent forgotten meanwhile stays (its lease), and it commits a generation that verifies and restores identical', async () => {
    const h = await history('backup', 3)
    fs.rmSync(path.join(h.src, 'big3'))
    fs.writeFileSync(path.join(h.src, 'big4'), Buffer.alloc(200_000, 4))
    fs.writeFileSync(path.join(h.src, 'small'), 'generation 4\n')
    const snap4 = path.join(path.dirname(h.repo), 'snap4')
    await sh(`cp -a '${h.src}' '${snap4}'`)
    h.snaps.set(4, snap4)
    // the backup stalls 5 s at its commit point (its data and pieces are written by then)
    const backup = bfs(['backup', h.src], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['put'], fault: 'latency', latencyMs: 5000 }] }) } })
    const streamRec = path.join(h.repo, keys2.stream(4))
    for (let i = 0; i < 200 && !fs.existsSync(streamRec); i++) await new Promise((r) => setTimeout(r, 50))
    expect(fs.existsSync(streamRec)).toBe(true)
    await ok(['forget', '1', '2', '3'], h.repo) // gen3 is the running backup's parent
    const res = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(res.leftAlone).toEqual([{ run: 4, why: 'its run is still running' }])
    expect(res.retired.kept.map((r: any) => [r.generation, r.why.replace(/pid \d+/, 'pid P')])).toEqual([
      ['gen1', 'in use by pid P on ' + os.hostname() + ' (backup)'], ['gen2', 'in use by pid P on ' + os.hostname() + ' (backup)'], ['gen3', 'in use by pid P on ' + os.hostname() + ' (backup)'],
    ])
    const b = await backup
    expect(b.code, b.stderr).toBe(0)
    expect(await ids(h.repo)).toEqual([4])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [4])
    // once it is done, the retired generations go; stream 1 stays (gen4 holds the constant part)
    const next = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(next.retired.dropped).toHaveLength(3)
    expect(next.streams.dropped).toEqual([2, 3])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [4])
  })

  it('kill -9 at each step of the sweep: every committed generation stays intact, and the next prune ends where an uninterrupted one does', async () => {
    const ref = await history('kill-ref', 5)
    await ok(['forget', '1', '2', '4'], ref.repo)
    await ok(['prune'], ref.repo)
    const want = await gensFiles(ref.repo)
    const points: Array<{ keys: string; ops: string[]; after?: number }> = [
      { keys: 'prune/*', ops: ['put'] }, // before the plan: nothing deleted
      { keys: 'gens/*/unit-*', ops: ['remove'], after: 1 }, // one unit deleted
      { keys: 'gens/*/pack-*', ops: ['remove'], after: 1 },
      { keys: 'gens/*/stream', ops: ['remove'] }, // hashes deleted, stream record not
      { keys: 'retired/*', ops: ['remove'], after: 1 },
      { keys: 'runs/*', ops: ['put'], after: 1 }, // everything deleted, the run not yet committed
    ]
    let k = 0
    for (const p of points) {
      const h = await history(`kill-${k++}`, 5)
      await ok(['forget', '1', '2', '4'], h.repo)
      const crash = await bfs(['prune'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ ...p, fault: 'kill' }] }) } })
      expect(crash.stderr, JSON.stringify(p)).toContain('killed by SIGKILL')
      expect(await ids(h.repo)).toEqual([3, 5])
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [3, 5])
      const killed = fs.readdirSync(path.join(h.repo, 'runs')).map((n) => decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(h.repo, 'runs', n)), n), n)).find((r) => r.kind === 'prune')!
      expect(killed.state).toBe('running')
      // the next prune finishes (breaking the dead prune's maintenance lock) and marks the killed run aborted
      const res = await bfs(['prune'], { repo: h.repo })
      expect(res.code, res.stderr).toBe(0)
      expect(res.stderr).toContain('broke a stale maintenance lock')
      const after = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(h.repo, keys2.run(killed.run))), 'run'), 'run')
      expect(after.state).toBe('aborted')
      expect(await gensFiles(h.repo), JSON.stringify(p)).toBe(want)
      expect(fs.readdirSync(path.join(h.repo, 'retired'))).toEqual([])
      expect(fs.readdirSync(path.join(h.repo, 'leases'))).toEqual([])
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [3, 5])
      fs.rmSync(path.dirname(h.repo), { recursive: true, force: true })
    }
  }, 600_000)

  it('leases: a pin or an older unpinned lease protects a retired generation; a reader that appears while prune marks stops it before anything is deleted', async () => {
    const h = await history('leases', 3)
    await ok(['forget', '1', '2'], h.repo)
    const s = sleeper()
    // pinned: only gen2 is protected
    putLease(h.repo, { lease: 'aaaaaaaaaaaaaaaa', pid: s.pid!, pins: ['2@1'] })
    let res = JSON.parse(await ok(['prune', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(res.retired.kept.map((r: any) => r.generation)).toEqual(['gen2'])
    // without pins and started before the retirement: both
    putLease(h.repo, { lease: 'bbbbbbbbbbbbbbbb', pid: s.pid!, started: '2026-01-01T00:00:00.000Z' })
    res = JSON.parse(await ok(['prune', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(res.retired.kept.map((r: any) => r.generation)).toEqual(['gen1', 'gen2'])
    // a dead holder protects nothing
    fs.rmSync(path.join(h.repo, 'leases'), { recursive: true })
    putLease(h.repo, { lease: 'cccccccccccccccc', pid: 999_999_99, pins: ['1@1', '2@1'] })
    res = JSON.parse(await ok(['prune', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(res.retired.kept).toEqual([])
    // --grace keeps what was retired within it
    res = JSON.parse(await ok(['prune', '--dry-run', '--json', '--grace', '1h'], h.repo)) as Record<string, any>
    expect(res.retired.kept.map((r: any) => r.why)).toEqual(['retired within --grace', 'retired within --grace'])
    // step 6: a live lease started before T1 that the survey did not see
    const repo = Repo2.open(h.repo)
    const sv = survey(repo, 0, null)
    recheckLeases(repo, sv, null) // nothing new
    putLease(h.repo, { lease: 'dddddddddddddddd', pid: s.pid!, started: new Date(sv.t1.getTime() - 1000).toISOString() })
    expect(() => recheckLeases(repo, sv, null)).toThrow(/appeared while prune was marking; nothing was deleted/)
    // one started after T1 only lists committed manifests: no reason to stop
    fs.rmSync(path.join(h.repo, keys2.lease('dddddddddddddddd')))
    const later = new Date(sv.t1.getTime() + 1000).toISOString()
    putLease(h.repo, { lease: 'eeeeeeeeeeeeeeee', pid: s.pid!, started: later, renewed: later })
    recheckLeases(repo, sv, null)
  })

  it("a killed backup's run is recovered by the next writer; an aborted run's gens/K left behind goes whole; a damaged generation stops the prune before anything is deleted (exit 6)", async () => {
    const h = await history('aborted', 3)
    fs.writeFileSync(path.join(h.src, 'big9'), Buffer.alloc(100_000, 9))
    const crash = await bfs(['backup', h.src], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['put'], fault: 'kill' }] }) } })
    expect(crash.stderr).toContain('killed by SIGKILL')
    expect(fs.existsSync(path.join(h.repo, keys2.stream(4)))).toBe(true)
    // a run recorded aborted whose gens/K is still there (its writer's clean-up failed): made by hand
    const crash2 = await bfs(['backup', h.src], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'manifests/*', ops: ['put'], fault: 'kill' }] }) } })
    expect(crash2.stderr).toContain('killed by SIGKILL')
    // (the second backup recovered run 4 first: its gens/ went, and it is aborted)
    expect(fs.existsSync(path.join(h.repo, keys2.genDir(4)))).toBe(false)
    const runKey = path.join(h.repo, keys2.run(5))
    const r5 = decodeRunRecord(payloadOf('run', fs.readFileSync(runKey), 'run'), 'run')
    expect(r5.state).toBe('running')
    fs.writeFileSync(runKey, envelope2('run', encodeRunRecord({ ...r5, state: 'aborted', ended: new Date().toISOString() })))
    // a flipped byte in gen3's pack: what gen3 references cannot be known, nothing is deleted
    await ok(['forget', '1', '2'], h.repo)
    const pack = path.join(h.repo, keys2.pack(3, 0))
    const good = fs.readFileSync(pack)
    const bad = Buffer.from(good)
    bad[80] ^= 0xff
    fs.writeFileSync(pack, bad)
    const snap = await snapshot(path.join(h.repo, 'gens'))
    const refused = await bfs(['prune'], { repo: h.repo })
    expect(refused.code).toBe(6)
    expect(refused.stderr).toMatch(/^bfs: gen3: .*prune deletes nothing \(bfs verify\)\n$/)
    expect(await snapshot(path.join(h.repo, 'gens'))).toBe(snap)
    expect(fs.readdirSync(path.join(h.repo, 'retired'))).toHaveLength(2)
    fs.writeFileSync(pack, good)
    const res = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(res.abortedRuns).toEqual([5])
    expect(fs.existsSync(path.join(h.repo, keys2.genDir(5)))).toBe(false)
    expect(res.streams.dropped).toEqual([2])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [3])
  })

  it('forget --prune forgets, then prunes in the same command (one history record); with --dry-run prune is not simulated', async () => {
    const h = await history('forget-prune', 4)
    const dry = await ok(['forget', '--keep-last', '2', '--prune', '--dry-run'], h.repo)
    expect(dry).toMatch(/prune: not simulated by --dry-run/)
    expect(await ids(h.repo)).toEqual([1, 2, 3, 4])
    const res = JSON.parse(await ok(['forget', '--keep-last', '2', '--prune', '--json'], h.repo)) as Record<string, any>
    expect([...res.forgotten].sort()).toEqual([1, 2])
    expect(res.prune.retired.dropped).toEqual(['gen-00000001-r0001', 'gen-00000002-r0001'])
    expect(res.prune.streams.dropped).toEqual([2])
    expect(fs.readdirSync(path.join(h.repo, 'retired'))).toEqual([])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [3, 4])
    const hist = JSON.parse(await ok(['history', '--json'], h.repo)) as Array<Record<string, any>>
    expect(hist.filter((x) => x.command === 'prune')).toEqual([])
    const last = hist.filter((x) => x.command === 'forget').pop()!
    expect(last).toMatchObject({ result: 'ok', generations: [1, 2] })
    expect(last.bytes.reclaimed).toBe(res.prune.bytes.reclaimable)
    const text = await ok(['forget', '--keep-last', '1', '--prune'], h.repo)
    expect(text).toMatch(/forgot gen3 [^]*reclaimed .* \(prune run \d+\)\n$/)
  })

  it('forget --prune whose prune fails: the forget is reported (text and --json), then the prune\'s error with its exit code', async () => {
    const h = await history('forget-prune-fails', 3)
    // a flipped byte in gen3's pack: prune refuses (exit 6); forget does not read pieces
    const pack = path.join(h.repo, keys2.pack(3, 0))
    const bad = fs.readFileSync(pack)
    bad[80] ^= 0xff
    fs.writeFileSync(pack, bad)
    const t = await bfs(['forget', '1', '--prune'], { repo: h.repo })
    expect(t.code).toBe(6)
    expect(t.stdout).toMatch(/forgot gen1/)
    expect(t.stderr).toMatch(/^bfs: gen3: .*prune deletes nothing/)
    const j = await bfs(['forget', '2', '--prune', '--json'], { repo: h.repo })
    expect(j.code).toBe(6)
    const res = JSON.parse(j.stdout) as Record<string, any>
    expect(res.forgotten).toEqual([2])
    expect(res.prune.error).toMatch(/prune deletes nothing/)
    expect(await ids(h.repo)).toEqual([3])
  })

  it('BI data is marked: the BI index overlays keep the blocks they name, the BI log its pages (a generation written by hand: no backup writes BI in format 2 yet)', async () => {
    const h = await history('bi', 2)
    await ok(['forget', '1'], h.repo)
    const before = JSON.parse(await ok(['prune', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(before.units.partlyUsed).toBe(1) // stream 1: big1 is dead, the constant part lives
    // gen3 = gen2's tree plus a BI index whose overlay names every block of stream 1, and a BI log
    const repo = Repo2.open(h.repo)
    const s1 = repo.stream(1)
    const packs = new PackWriter(repo.store, { run: 3 })
    const row: BiOverlayRow = { srcDev: 1, srcInoHi: 0, srcInoLo: 5, igen: 0, t0Size: s1.streamBlocks * 4096, t0MtimeSec: 0, t0MtimeNsec: 0, t0CtimeSec: 0, t0CtimeNsec: 0, flags: 0, overlay: { kind: 'inline', extents: [{ fileBlock: 0, count: s1.streamBlocks, stream: 1, streamBlock: 0 }] } }
    const biIndex = packs.add(encodeIdPage({ tableKind: TableKind.BiOverlay, rows: [row] }))
    const page = packs.add(finishPiece(pieceWriter(PieceKind.BiLog).varint(1).varint(0)))
    const w = pieceWriter(PieceKind.BiList).varint(1)
    writePieceRef(w, page)
    const biLog = packs.add(finishPiece(w.varint(0)))
    await packs.finish()
    const m2 = repo.manifest(2)
    const m3 = { ...m2, id: 3, run: 3, rev: 1, biIndex, biLog, stream: null, sources: m2.sources.map((x) => ({ ...x, parent: 2 })) }
    const now = new Date().toISOString()
    repo.sync.putSync(keys2.run(3), envelope2('run', encodeRunRecord({ run: 3, kind: 'backup', state: 'committed', host: os.hostname(), pid: process.pid, lease: '', started: now, ended: now, gen: 3 })))
    repo.sync.putSync(keys2.manifest(3), envelope2('manifest', encodeManifestV2(m3)))
    const res = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(res.committed).toEqual([2, 3])
    expect(res.leftAlone).toEqual([])
    expect(res.units.partlyUsed).toBe(0) // every block of stream 1 is live through the overlay
    expect(res.units.deleted).toBe(0)
    expect(fs.existsSync(path.join(h.repo, keys2.pack(3, 0)))).toBe(true)
    expect(res.pieces).toBe(before.pieces + 3) // the IDPAGE, the BILIST, the BILOG page
    // gen3 forgotten: stream 1 is partly used again, run 3's pack goes
    await ok(['forget', '3'], h.repo)
    const after = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(after.units.partlyUsed).toBe(1)
    expect(after.packs.deleted).toBe(1)
    expect(fs.existsSync(path.join(h.repo, keys2.genDir(3)))).toBe(false)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2])
  })

  it('zero blocks nothing refers to (a volume kept in phase with its frames) are not unused: a fresh backup plans no rewrite; a rewrite for real dead data leaves them out of the dead ranges, and verify passes', async () => {
    const d = path.join(work, 'zero-slots')
    fs.mkdirSync(d)
    const repo = path.join(d, 'repo')
    await ok(['init', '--format', '2'], repo)
    // 2,000 blocks, every 7th one and a few short runs all zeros: the stream keeps their slots
    const img = path.join(d, 'disk.img')
    const v1 = randomBytes(2000 * 4096)
    for (let b = 0; b < 2000; b += 7) v1.fill(0, b * 4096, (b + 1) * 4096)
    for (const b of [100, 500, 1500]) v1.fill(0, b * 4096, (b + 5) * 4096)
    fs.writeFileSync(img, v1)
    await ok(['backup', '--volume', img], repo)
    const plan = async (): Promise<Record<string, number>> => (JSON.parse(await ok(['prune', '--dry-run', '--max-unused', '0', '--json'], repo)) as { units: Record<string, number> }).units
    expect(await plan()).toMatchObject({ deleted: 0, partlyUsed: 0, partlyUsedDeadBytes: 0, zeroedBefore: 0, whole: 1, rewritten: 0, unusedLeft: 0 })
    // gen2 replaces 300 blocks; gen1 forgotten: those are dead in gen1's unit, the zero slots still not
    const v2 = Buffer.from(v1)
    randomBytes(300 * 4096).copy(v2, 800 * 4096)
    fs.writeFileSync(img, v2)
    await ok(['backup', '--volume', img], repo)
    await ok(['forget', '1'], repo)
    const before = await plan()
    expect(before).toMatchObject({ partlyUsed: 1, rewritten: 1 })
    // the estimate is of the replaced data only (257 incompressible blocks: 43 of the 300 were zeros), not of the zero slots
    expect(before.partlyUsedDeadBytes).toBeGreaterThan(250 * 4096)
    expect(before.partlyUsedDeadBytes).toBeLessThan(265 * 4096)
    await ok(['prune', '--max-unused', '0'], repo)
    await ok(['verify', '--all'], repo)
    expect((await bfs(['cat', '2'], { repo })).out.equals(v2)).toBe(true)
    expect(await plan()).toMatchObject({ partlyUsed: 0, zeroedBefore: 1, rewritten: 0 })
  })

  it('refuses bad command lines, format 1 repositories and a held maintenance lock in one line', async () => {
    const h = await history('refuse', 2)
    const bad = await bfs(['prune', '--grace', 'soon'], { repo: h.repo })
    expect(bad.code).toBe(2)
    const v1 = path.join(work, 'v1')
    await ok(['init', '--format', '1'], v1)
    const r1 = await bfs(['prune'], { repo: v1 })
    expect(r1.code).toBe(6)
    expect(r1.stderr.trim().split('\n')).toEqual([`bfs: ${v1} is a format 1 repository: 'bfs prune' needs a format 2 one (bfs init --format 2); nothing was changed`])
    const s = sleeper()
    const now = new Date().toISOString()
    fs.mkdirSync(path.join(h.repo, 'locks'), { recursive: true })
    fs.writeFileSync(path.join(h.repo, keys2.maintenanceLock), envelope2('lease', encodeLease({ lease: 'maintenance', kind: 'maintenance', host: os.hostname(), pid: s.pid!, pidStart: pidStartOf(s.pid!) ?? 0, started: now, renewed: now, expiresAfterMs: LEASE_EXPIRES_MS, command: 'forget' })))
    const locked = await bfs(['prune'], { repo: h.repo })
    expect(locked.code).toBe(5)
    expect(locked.stderr).toMatch(/maintenance lock is held by pid \d+ .*'prune' did nothing/)
    expect(locked.stderr.trim().split('\n')).toHaveLength(1)
  })
})
