/**
 * `bfs prune --max-unused` on format 2 (issue 16 item 3, step 7 of format.md §2.20.7), through
 * the real CLI on real repositories whose units are partly shared between generations: after
 * forgetting half of the history, `--max-unused 0` rewrites every partly used unit (newly dead
 * blocks zeroed, dead ranges recorded) and the repository comes within 5 % of a fresh one
 * holding only the kept generations; verify --all passes, every kept generation restores
 * byte-identical; --dry-run says what would be rewritten and changes nothing; `100%` rewrites
 * nothing; the next prune finds nothing to rewrite; mounts (their own processes) started before
 * the prune — of a kept generation, and of one forgotten while mounted — read correctly during
 * and after it; kill -9 before the first replace, between replaces and from outside at random
 * moments leaves every generation intact, and the next prune ends with unit files byte-identical
 * to an uninterrupted prune's; verify reports a block a generation reads that lies in a dead range.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type History, restoresIdentical as restoresIdenticalIn, rewriteHistory } from './rewrite-history.js'
import { BFS, bfs, diffTree, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { parseUnitFile } from '../src/format/v2/unit.js'
import { decodeRunRecord } from '../src/format/v2/records.js'
import { payloadOf } from '../src/repo/v2/repo2.js'
import { Recompressor } from '../src/repo/v2/compact.js'
import { maxUnusedFor, parseMaxUnused } from '../src/cli/prune.js'
import type { Repo2 } from '../src/repo/v2/repo2.js'

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
const du = async (dir: string): Promise<number> => Number((await sh(`du -sb '${dir}'`)).stdout.split('\t')[0])

const history = (name: string, n: number): Promise<History> => rewriteHistory(path.join(work, name), n, { ok, init: ['init', '--format', '2'] })
const restoresIdentical = (h: History, gens: number[]): Promise<void> => restoresIdenticalIn(h, gens, work, ok)

/** A fresh repository of the given generations' trees, backed up in order from one source path (as the original's). */
async function fresh(h: History, gens: number[], name: string): Promise<string> {
  const repo = path.join(work, name)
  const src = path.join(work, `${name}-src`)
  await ok(['init', '--format', '2'], repo)
  for (const g of gens) {
    fs.rmSync(src, { recursive: true, force: true })
    await sh(`cp -a '${h.snaps.get(g)!}' '${src}'`)
    await ok(['backup', src], repo)
  }
  fs.rmSync(src, { recursive: true, force: true })
  return repo
}

/** Every unit file: revision, dead ranges and the SHA-256 of its bytes. */
function units(repo: string): Map<string, { revision: number; dead: string; sha: string; bytes: number }> {
  const out = new Map<string, { revision: number; dead: string; sha: string; bytes: number }>()
  for (const g of fs.readdirSync(path.join(repo, 'gens')).sort()) {
    for (const f of fs.readdirSync(path.join(repo, 'gens', g)).sort()) {
      if (!/^unit-\d{8}$/.test(f)) continue
      const b = fs.readFileSync(path.join(repo, 'gens', g, f))
      const p = parseUnitFile(b, 4096, f, { stream: Number(g), unitIndex: Number(f.slice(5)) })
      out.set(`${g}/${f}`, { revision: p.revision, dead: JSON.stringify(p.dead), sha: createHash('sha256').update(b).digest('hex'), bytes: b.length })
    }
  }
  return out
}
const ids = async (repo: string): Promise<number[]> => (JSON.parse(await ok(['ls', '--json'], repo)) as Array<{ id: number }>).map((g) => g.id)

beforeAll(() => {
  work = tmpdir('bfs-v2rewrite-')
})

afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('format 2 prune --max-unused (rewriting partly used units)', () => {
  it('forgetting half: --max-unused 0 comes within 5 % of a fresh repository of the kept generations; verify passes and kept generations restore identical; dry run, 100 % and a second prune', async () => {
    const h = await history('half', 8)
    await ok(['forget', '1', '3', '5', '7'], h.repo)
    // 100 % (unlimited): only whole units go; nothing is rewritten
    const none = JSON.parse(await ok(['prune', '--dry-run', '--json', '--max-unused', 'unlimited'], h.repo)) as Record<string, any>
    expect(none.units.partlyUsed).toBe(4)
    expect(none.units.rewritten).toBe(0)
    // the dry run says what would be rewritten and reclaimed, and changes nothing
    const before = units(h.repo)
    const dry = JSON.parse(await ok(['prune', '--dry-run', '--json', '--max-unused', '0'], h.repo)) as Record<string, any>
    expect(dry.units.rewritten).toBe(4)
    expect(dry.units.rewrittenBytesAfter).toBeLessThan(dry.units.rewrittenBytesBefore / 4)
    expect(dry.units.unusedLeft).toBe(0)
    expect(dry.bytes.reclaimable).toBeGreaterThan(4 * 1.5 * 2 ** 20)
    const text = await ok(['prune', '--dry-run', '--max-unused', '0%'], h.repo)
    expect(text).toMatch(/partly used: 4 units holding ~.* of dead data; would rewrite 4 of them: .* → ~.*; ~0 B unused left/)
    expect(units(h.repo)).toEqual(before)
    const sizeBefore = await du(h.repo)
    const res = JSON.parse(await ok(['prune', '--json', '--max-unused', '0'], h.repo)) as Record<string, any>
    expect(res.units.rewritten).toBe(4)
    expect(res.units.damaged).toEqual([])
    const after = units(h.repo)
    for (const s of ['00000001', '00000003', '00000005', '00000007']) {
      const u = after.get(`${s}/unit-00000000`)!
      expect(u.revision, s).toBe(1)
      expect(JSON.parse(u.dead).length, s).toBeGreaterThan(0)
    }
    for (const s of ['00000002', '00000004', '00000006', '00000008']) expect(after.get(`${s}/unit-00000000`)).toEqual(before.get(`${s}/unit-00000000`))
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6, 8])
    // within 5 % of a fresh repository of the kept generations
    const sizeAfter = await du(h.repo)
    const ref = await du(await fresh(h, [2, 4, 6, 8], 'half-fresh'))
    expect(sizeBefore).toBeGreaterThan(ref * 1.5)
    expect(sizeAfter).toBeLessThan(ref * 1.05)
    // a second prune finds nothing to rewrite: the units an earlier prune rewrote are known by their dead ranges
    const again = JSON.parse(await ok(['prune', '--json', '--max-unused', '0'], h.repo)) as Record<string, any>
    expect(again.units).toMatchObject({ partlyUsed: 0, rewritten: 0, zeroedBefore: 4 })
    expect(again.bytes.reclaimable).toBe(0)
    expect(units(h.repo)).toEqual(after)
    // forgetting more: a rewritten unit is rewritten again (revision 2), its dead ranges grow
    await ok(['forget', '2', '4', '6'], h.repo)
    const third = JSON.parse(await ok(['prune', '--json', '--max-unused', '0'], h.repo)) as Record<string, any>
    expect(third.units.rewritten).toBeGreaterThan(0)
    const u1 = units(h.repo).get('00000001/unit-00000000')!
    expect(u1.revision).toBe(2)
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [8])
  }, 600_000)

  it('--max-unused picks the units with the largest unused share first and stops once what is left is within the limit; the default is 2 %; the plan lists them', async () => {
    const h = await history('default', 6)
    await ok(['forget', '1', '3', '5'], h.repo)
    // streams 1, 3, 5 partly used: 3 and 5 hold ~1.5 MiB dead of ~1.6 MiB, stream 1 also all of c's first version (live)
    const share = (r: Record<string, any>): number => r.units.partlyUsedDeadBytes / (r.units.partlyUsedDeadBytes + r.units.usedBytes)
    const dry = JSON.parse(await ok(['prune', '--dry-run', '--json', '--max-unused', '50%'], h.repo)) as Record<string, any>
    expect(dry.units.partlyUsed).toBe(3)
    expect(share(dry)).toBeGreaterThan(0.3)
    expect(share(dry)).toBeLessThan(0.5)
    expect(dry.units.rewritten).toBe(0) // already within 50 %
    const one = JSON.parse(await ok(['prune', '--json', '--max-unused', '40'], h.repo)) as Record<string, any>
    expect(one.units.rewritten).toBe(1)
    expect(one.units.unusedLeft).toBeLessThanOrEqual((40 / 60) * one.units.usedBytes)
    const planOf = (run: number): Record<string, any> => JSON.parse(payloadOf('plan', fs.readFileSync(path.join(h.repo, keys2.plan(run))), 'plan').toString()) as Record<string, any>
    const chosen = Object.entries(planOf(one.run).streams as Record<string, { rewrite: number[] }>).filter(([, v]) => v.rewrite.length).map(([k]) => Number(k))
    expect(chosen).toHaveLength(1)
    expect([3, 5]).toContain(chosen[0]) // not stream 1: the smallest unused share
    // the default, 2 %: the other two
    const rest = JSON.parse(await ok(['prune', '--json'], h.repo)) as Record<string, any>
    expect(rest.units).toMatchObject({ partlyUsed: 2, rewritten: 2, zeroedBefore: 1 })
    expect(rest.units.unusedLeft).toBeLessThanOrEqual((2 / 98) * rest.units.usedBytes)
    const p = planOf(rest.run)
    expect(Object.keys(p.streams).filter((k) => p.streams[k].rewrite.length).map(Number).sort()).toEqual([1, 3, 5].filter((s) => s !== chosen[0]))
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 4, 6])
    // bad values: one line, exit 2
    for (const v of ['101%', '-1', 'lots']) {
      const r = await bfs(['prune', '--max-unused', v], { repo: h.repo })
      expect(r.code, v).toBe(2)
      expect(r.stderr.trim().split('\n'), v).toHaveLength(1)
      expect(r.stderr).toContain('a percentage from 0% to 100%, or unlimited')
    }
  }, 300_000)

  it('mounts started before the prune (their own processes) read correctly during and after it: a kept generation, and one forgotten while mounted (its lease keeps its blocks live)', async () => {
    const h = await history('mount', 6)
    const m6 = path.join(work, 'mnt6')
    const m5 = path.join(work, 'mnt5')
    for (const [g, m] of [[6, m6], [5, m5]] as const) {
      fs.mkdirSync(m, { recursive: true })
      await ok(['mount', `gen${g}`, m], h.repo)
      mounts.add(m)
    }
    const same = (m: string, g: number, name: string): void => expect(fs.readFileSync(path.join(m, name)).equals(fs.readFileSync(path.join(h.snaps.get(g)!, name))), `gen${g}:${name}`).toBe(true)
    // some files read before (their units open in the mounts), others first read during the prune
    same(m6, 6, 'keep/b3')
    same(m5, 5, 'a5')
    await ok(['forget', '1', '3', '5'], h.repo)
    // each unit's replace waits, so that the mounts read while the prune rewrites
    const child = spawn(BFS, ['prune', '--json', '--max-unused', '0'], {
      env: { ...process.env, BFS_REPO: h.repo, NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'latency', latencyMs: 700 }] }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    let code: number | null = null
    const closed = new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)))
    void closed.then((c) => (code = c))
    let rounds = 0
    while (code === null) {
      same(m6, 6, `keep/b${3 + (rounds % 4)}`)
      same(m6, 6, 'c')
      same(m5, 5, `keep/b${2 + (rounds % 4)}`)
      same(m5, 5, 'c')
      rounds++
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(code, err).toBe(0)
    expect(rounds).toBeGreaterThan(2)
    const res = JSON.parse(out) as Record<string, any>
    // gen5 is pinned by its mount: its a5 stays live, so stream 5 is not partly used yet
    expect(res.retired.kept.map((r: any) => r.generation)).toEqual(['gen5'])
    expect(res.units.rewritten).toBe(2)
    expect(units(h.repo).get('00000005/unit-00000000')!.revision).toBe(0)
    expect(await diffTree(h.snaps.get(6)!, m6)).toBe('')
    expect(await diffTree(h.snaps.get(5)!, m5)).toBe('')
    await umount(m5)
    // unmounted: the next prune rewrites gen5's stream; the other mount still reads everything
    const next = JSON.parse(await ok(['prune', '--json', '--max-unused', '0'], h.repo)) as Record<string, any>
    expect(next.retired.dropped).toEqual(['gen-00000005-r0001'])
    expect(next.units.rewritten).toBe(1)
    expect(await diffTree(h.snaps.get(6)!, m6)).toBe('')
    await umount(m6)
    // mounted afterwards (native read path and JavaScript): the rewritten units read
    for (const args of [['gen6', m6], ['--no-native-read', 'gen4', m6]]) {
      await ok(['mount', ...args], h.repo)
      mounts.add(m6)
      expect(await diffTree(h.snaps.get(Number(args[args.length - 2]!.slice(3)))!, m6)).toBe('')
      await umount(m6)
    }
    await ok(['verify', '--all'], h.repo)
  }, 600_000)

  it('kill -9 before the first replace, between replaces and from outside: every generation stays intact, and the next prune ends with the units of an uninterrupted one', async () => {
    const ref = await history('kill-ref', 6)
    await ok(['forget', '1', '3', '5'], ref.repo)
    await ok(['prune', '--max-unused', '0'], ref.repo)
    const want = units(ref.repo)
    expect([...want.values()].filter((u) => u.revision === 1)).toHaveLength(3)
    const finish = async (h: History, what: string): Promise<void> => {
      expect(await ids(h.repo)).toEqual([2, 4, 6])
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [2, 4, 6])
      const res = await bfs(['prune', '--max-unused', '0'], { repo: h.repo })
      expect(res.code, res.stderr).toBe(0)
      expect(units(h.repo), what).toEqual(want)
      expect(fs.readdirSync(path.join(h.repo, 'gens'), { recursive: true }).filter((n) => String(n).includes('.tmp-'))).toEqual([])
      expect(fs.readdirSync(path.join(h.repo, 'retired'))).toEqual([])
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [2, 4, 6])
    }
    let k = 0
    for (const p of [{ after: 0 }, { after: 1 }, { after: 2 }]) {
      const h = await history(`kill-${k++}`, 6)
      await ok(['forget', '1', '3', '5'], h.repo)
      const crash = await bfs(['prune', '--max-unused', '0'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'kill', after: p.after }] }) } })
      expect(crash.stderr, JSON.stringify(p)).toContain('killed by SIGKILL')
      expect([...units(h.repo).values()].filter((u) => u.revision === 1), JSON.stringify(p)).toHaveLength(p.after)
      await finish(h, JSON.stringify(p))
      fs.rmSync(path.dirname(h.repo), { recursive: true, force: true })
    }
    // from outside, at moments spread over a slowed run (each unit's read waits)
    const h = await history('kill-ext', 6)
    await ok(['forget', '1', '3', '5'], h.repo)
    const env = { ...process.env, BFS_REPO: h.repo, NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['get'], fault: 'latency', latencyMs: [100, 500] }] }) }
    const runsDir = path.join(h.repo, 'runs')
    const claimedBy = (pid: number): boolean =>
      fs.readdirSync(runsDir).filter((n) => /^\d{8}$/.test(n)).some((n) => {
        const r = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(runsDir, n)), n), n)
        return r.kind === 'prune' && r.pid === pid
      })
    let killedRunning = 0
    for (const delay of [0, 400, 900]) {
      const child = spawn(BFS, ['prune', '--max-unused', '0'], { env, stdio: 'ignore' })
      const closed = new Promise((r) => child.on('close', r))
      for (let i = 0; i < 1500 && !claimedBy(child.pid!) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20))
      await new Promise((r) => setTimeout(r, delay))
      if (child.exitCode === null) killedRunning++
      child.kill('SIGKILL')
      await closed
      expect(await ids(h.repo)).toEqual([2, 4, 6])
      await ok(['verify', '--all'], h.repo)
    }
    expect(killedRunning).toBeGreaterThan(0)
    await finish(h, 'external SIGKILL')
  }, 900_000)

  it('--max-unused values; on S3 no unit is rewritten (the default becomes unlimited, an explicit value below 100 % is refused)', () => {
    expect(['0', '0%', '5%', '12.5', '100%', 'unlimited', 'UNLIMITED'].map(parseMaxUnused)).toEqual([0, 0, 5, 12.5, 100, 100, 100])
    for (const v of ['101%', '-1', '5 %%', 'lots', '']) expect(() => parseMaxUnused(v), v).toThrow(/a percentage from 0% to 100%, or unlimited/)
    const disk = { dir: '/var/tmp/r' } as Repo2
    const s3 = { dir: 's3:http://127.0.0.1:9000/bucket/r' } as Repo2
    expect(maxUnusedFor(disk, undefined)).toEqual({ pct: 2, s3: false })
    expect(maxUnusedFor(disk, 0)).toEqual({ pct: 0, s3: false })
    expect(maxUnusedFor(s3, undefined)).toEqual({ pct: 100, s3: true })
    expect(maxUnusedFor(s3, 100)).toEqual({ pct: 100, s3: true })
    expect(() => maxUnusedFor(s3, 5)).toThrow(/not supported on an S3 repository yet .*nothing was pruned/)
  })

  it('a reader of a generation a prune has reclaimed (one that read without a lease) gets a read error, not the zeros now stored there', async () => {
    const h = await history('deadread', 3)
    // what a reader without a lease (a read-only user) holds of gen1 while another user forgets
    // and prunes it: its manifest and its directory pieces (put back below, as if still held)
    const held = path.join(work, 'deadread-held')
    fs.mkdirSync(held)
    const keep = [keys2.manifest(1), ...fs.readdirSync(path.join(h.repo, keys2.genDir(1))).filter((n) => n.startsWith('pack-')).map((n) => `${keys2.genDir(1)}/${n}`)]
    for (const k of keep) fs.copyFileSync(path.join(h.repo, k), path.join(held, k.replaceAll('/', '_')))
    await ok(['forget', 'gen1'], h.repo)
    const pr = JSON.parse(await ok(['prune', '--max-unused', '0', '--json'], h.repo))
    expect(pr.units?.rewrite ?? pr.plan?.units?.rewrite ?? 1).toBeGreaterThan(0)
    for (const k of keep) if (!fs.existsSync(path.join(h.repo, k))) fs.copyFileSync(path.join(held, k.replaceAll('/', '_')), path.join(h.repo, k))
    // a1 lived only in gen1: its blocks were zeroed in the rewritten unit (dead ranges)
    const r = await bfs(['cat', 'gen1:a1'], { repo: h.repo })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/reclaimed by a prune/)
    expect(r.stdout.length).toBe(0)
    // a block of the same unit that is still live reads as it was
    await ok(['cat', 'gen1:keep/b1'], h.repo)
    expect(Buffer.compare(fs.readFileSync(path.join(h.snaps.get(1)!, 'keep/b1')), Buffer.from((await sh(`BFS_REPO='${h.repo}' ${BFS} cat gen1:keep/b1 | base64 -w0`)).stdout, 'base64'))).toBe(0)
  })

  it('verify reports a block a generation reads that lies in a unit\'s dead ranges', async () => {
    const h = await history('dead-live', 2)
    const f = path.join(h.repo, keys2.unit(2, 0))
    const file = fs.readFileSync(f)
    // every block of gen2's unit declared dead and zeroed: gen2 reads them
    const p = parseUnitFile(file, 4096, 'u')
    const out = Buffer.concat(new Recompressor(3, 'xxh64', 0n).rewrite(file, 'u', { stream: 2, unitIndex: 0 }, [{ start: 0, blocks: p.rawBlocks }]).parts)
    fs.writeFileSync(f, out)
    const r = await bfs(['verify', '--all'], { repo: h.repo })
    expect(r.code).toBe(4)
    expect(r.stdout).toMatch(/FAIL .*unit-00000000: stream block 0 is in the unit's dead ranges \(zeroed by a prune\), and a generation refers to it/)
  })
})
