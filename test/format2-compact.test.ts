/**
 * `bfs compact` on format 2 (issue 16 item 4; format.md §2.20.8), through the real CLI on
 * real repositories: settled units are recompressed as v2 units (revision 1, the level in the
 * header, same frame sizes and frame checks), smaller; verify --all passes and every
 * generation restores byte-identical; `--min-age` leaves fresh data alone; a second compact
 * finds nothing to do and a higher level recompresses again; `generations` shows the stored
 * size at backup and now; kill -9 at several points (before a unit's replace, after some,
 * an external SIGKILL at random moments, a dead compact's temporary file) leaves every unit
 * readable, and the next compact finishes; a unit whose frame does not check is left as it
 * is (exit 4); a mount in its own process reads correctly across a compact, and one mounted
 * afterwards reads the rewritten units; the compact's threads run at nice 19 at the lowest best-effort I/O
 * class; `bfs prune --compact` prunes, then compacts.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BFS, bfs, diffTree, sh, tmpdir } from './helpers.js'
import { keys2 } from '../src/format/v2/layout.js'
import { parseUnitFile } from '../src/format/v2/unit.js'
import { decodeRunRecord } from '../src/format/v2/records.js'
import { payloadOf } from '../src/repo/v2/repo2.js'
import { DEFAULT_COMPACT_LEVEL, DEFAULT_SMALL_FRAME_LEVEL, DamagedUnit, Recompressor } from '../src/repo/v2/compact.js'
import { encodeUnitFileV2 } from '../src/format/v2/unit.js'
import { FrameCompressor } from '../src/codec/zstd.js'
import { frameCheck, hashBlocks } from '../src/codec/hash.js'

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

const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega backup frame unit stream piece'.split(' ')
/** Text that zstd -3 and zstd -16 compress differently (words drawn at random, numbered lines). */
function text(bytes: number, seed: number): Buffer {
  let s = seed >>> 0
  const rnd = (): number => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32)
  const out: string[] = []
  let n = 0
  for (let line = 0; n < bytes; line++) {
    const l = `${line} ${Array.from({ length: 8 }, () => WORDS[Math.floor(rnd() * WORDS.length)]).join(' ')} ${Math.floor(rnd() * 1e6)}\n`
    out.push(l)
    n += l.length
  }
  return Buffer.from(out.join('')).subarray(0, bytes)
}

interface History {
  repo: string
  src: string
  snaps: Map<number, string>
}

/** `n` generations, each adding its own files (its own stream, so one unit per generation). */
async function history(name: string, n: number, perGen = 600_000, replace = false, backupArgs: string[] = []): Promise<History> {
  const d = path.join(work, name)
  const src = path.join(d, 'src')
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
  if (!replace) fs.writeFileSync(path.join(src, 'sub/const'), 'constant\n'.repeat(1000))
  const repo = path.join(d, 'repo')
  await ok(['init', '--format', '2'], repo)
  const snaps = new Map<number, string>()
  for (let i = 1; i <= n; i++) {
    // replace: each generation holds only its own files (a forgotten one's stream is then dead)
    if (replace) for (const f of [`t${i - 1}`, `sub/s${i - 1}`]) fs.rmSync(path.join(src, f), { force: true })
    fs.writeFileSync(path.join(src, `t${i}`), text(perGen, i))
    fs.writeFileSync(path.join(src, 'sub', `s${i}`), text(perGen / 4, 1000 + i))
    await ok(['backup', src, ...backupArgs], repo)
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

/** Every unit file: its version, revision, level and frame sizes (raw) and checks. */
function units(repo: string): Map<string, { version: number; revision: number; level: number | null; bytes: number; raw: number[]; checks: string[] }> {
  const out = new Map<string, { version: number; revision: number; level: number | null; bytes: number; raw: number[]; checks: string[] }>()
  for (const g of fs.readdirSync(path.join(repo, 'gens')).sort()) {
    for (const f of fs.readdirSync(path.join(repo, 'gens', g)).sort()) {
      if (!/^unit-\d{8}$/.test(f)) continue
      const b = fs.readFileSync(path.join(repo, 'gens', g, f))
      const p = parseUnitFile(b, 4096, f, { stream: Number(g), unitIndex: Number(f.slice(5)) })
      out.set(`${g}/${f}`, { version: p.version, revision: p.revision, level: p.level, bytes: b.length, raw: p.seek.map((e) => e.rawBytes), checks: p.seek.map((e) => e.check.toString('hex')) })
    }
  }
  return out
}
const unitBytes = (repo: string): number => [...units(repo).values()].reduce((s, u) => s + u.bytes, 0)

beforeAll(() => {
  work = tmpdir('bfs-v2compact-')
})

afterAll(async () => {
  for (const m of [...mounts]) await umount(m)
  fs.rmSync(work, { recursive: true, force: true })
})

describe('Recompressor (in process)', () => {
  /** A v2 unit of `frames` frames of 2 blocks (the last 1), frame 1 dead (zeros, a dead range). */
  function unitV2(level: number): { file: Buffer; raws: Buffer[] } {
    const c = new FrameCompressor(level)
    const raws = [text(8192, 1), Buffer.alloc(8192), text(4096, 2)]
    const frames: Buffer[] = []
    const seek = raws.map((raw) => {
      const out = Buffer.alloc(FrameCompressor.bound(raw.length))
      const f = Buffer.from(out.subarray(0, c.compressInto(out, raw)))
      frames.push(f)
      const h = Buffer.alloc((raw.length / 4096) * 8)
      hashBlocks('xxh64', raw, 0, raw.length / 4096, h, 0, 0n)
      return { compBytes: f.length, rawBytes: raw.length, check: frameCheck('xxh64', h, 0n) }
    })
    const parts = encodeUnitFileV2({ stream: 7, unitIndex: 3, rawBlocks: 5, frameBlocks: 2, revision: 1, level, hashAlg: 'xxh64' }, frames, seek, [{ start: 2, blocks: 2 }])
    return { file: Buffer.concat(parts), raws }
  }

  it('rewrites a v2 unit: revision + 1, the level, dead ranges and checks carried over, same raw bytes; refuses damage and a unit under the wrong key', () => {
    const { file } = unitV2(1)
    const before = parseUnitFile(file, 4096, 'u', { stream: 7, unitIndex: 3 })
    const out = Buffer.concat(new Recompressor(19, 'xxh64', 0n).rewrite(file, 'u', { stream: 7, unitIndex: 3 }).parts)
    const after = parseUnitFile(out, 4096, 'u', { stream: 7, unitIndex: 3 })
    expect({ version: after.version, revision: after.revision, level: after.level, dead: after.dead }).toEqual({ version: 2, revision: 2, level: 19, dead: [{ start: 2, blocks: 2 }] })
    expect(after.seek.map((e) => [e.rawBytes, e.check.toString('hex')])).toEqual(before.seek.map((e) => [e.rawBytes, e.check.toString('hex')]))
    expect(after.seek.every((e, i) => e.compBytes <= before.seek[i]!.compBytes)).toBe(true)
    // rewriting again (another level) reads what it wrote
    expect(parseUnitFile(Buffer.concat(new Recompressor(5, 'xxh64', 0n).rewrite(out, 'u', { stream: 7, unitIndex: 3 }).parts), 4096, 'u').revision).toBe(3)
    const bad = Buffer.from(file)
    bad[96 + 5] ^= 0x55
    expect(() => new Recompressor(19, 'xxh64', 0n).rewrite(bad, 'u', { stream: 7, unitIndex: 3 })).toThrow(DamagedUnit)
    expect(() => new Recompressor(19, 'xxh64', 0n).rewrite(file, 'u', { stream: 7, unitIndex: 4 })).toThrow(/its key says 7, 4/)
  })
})

describe('bfs compact (format 2)', () => {
  it('recompresses settled units at the target level, same frames and checks, smaller; verify and restore; min-age; resumable by level; generations shows before and after', async () => {
    const h = await history('basic', 3)
    const before = units(h.repo)
    expect([...before.values()].every((u) => u.version === 1)).toBe(true)
    // fresh data is not settled (default --min-age 1w): nothing changes
    const fresh = JSON.parse(await ok(['compact', '--json'], h.repo)) as Record<string, any>
    expect(fresh.units.compacted).toBe(0)
    expect(fresh.units.tooYoung).toBe(before.size)
    // --dry-run changes nothing
    const dry = JSON.parse(await ok(['compact', '--dry-run', '--min-age', '0', '--json'], h.repo)) as Record<string, any>
    expect(dry.units.todo).toBe(before.size)
    expect(dry.run).toBe(null)
    expect(units(h.repo)).toEqual(before)

    const res = JSON.parse(await ok(['compact', '--min-age', '0', '--json'], h.repo)) as Record<string, any>
    expect(res.units.compacted).toBe(before.size)
    expect(res.bytes.after).toBeLessThan(res.bytes.before)
    expect(res.priority).toEqual({ nice: 19, ioLow: true })
    const after = units(h.repo)
    for (const [k, u] of after) {
      const b = before.get(k)!
      // files' default 128 KiB frames are small ones: level 15 (no dictionary: streams under 32 MiB)
      expect(Math.max(...b.raw)).toBe(128 << 10)
      expect({ k, version: u.version, revision: u.revision, level: u.level }).toEqual({ k, version: 2, revision: 1, level: DEFAULT_SMALL_FRAME_LEVEL })
      expect(u.raw).toEqual(b.raw) // same frame sizes
      expect(u.checks).toEqual(b.checks) // same raw bytes
      expect(u.bytes).toBeLessThan(b.bytes)
    }
    expect(unitBytes(h.repo)).toBe(unitBytes(h.repo))
    const run = JSON.parse(await ok(['history', '--json'], h.repo)) as Array<Record<string, any>>
    expect(run.some((r) => r.command === 'compact')).toBe(true)
    const rec = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(h.repo, keys2.run(res.run))), 'run'), 'run')
    expect(rec).toMatchObject({ kind: 'compact', state: 'committed' })
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 2, 3])

    // generations: the stored size at backup and now
    const gens = JSON.parse(await ok(['generations', '--json'], h.repo)) as Array<{ id: number; stored: { backup: number; now: number } }>
    for (const g of gens) {
      expect(g.stored.now).toBe(after.get(`${String(g.id).padStart(8, '0')}/unit-00000000`)!.bytes)
      expect(g.stored.now).toBeLessThan(g.stored.backup)
    }
    expect(await ok(['generations'], h.repo)).toMatch(/^gen1 .* files +\d+ +\S+ \S+ +[\d.]+ KiB \(now [\d.]+ KiB\) +\S+ +-$/m)

    // at the target level already: nothing to do; a higher level recompresses again
    const again = JSON.parse(await ok(['compact', '--min-age', '0', '--json'], h.repo)) as Record<string, any>
    expect(again.units).toMatchObject({ compacted: 0, alreadyCompact: before.size })
    expect(units(h.repo)).toEqual(after)
    await ok(['compact', '--min-age', '0', '--level', '19'], h.repo)
    expect([...units(h.repo).values()].map((u) => [u.revision, u.level])).toEqual([...after.values()].map(() => [2, 19]))
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [3])
    // a lower level: those units are at or above it
    expect(JSON.parse(await ok(['compact', '--min-age', '0', '--level', String(DEFAULT_SMALL_FRAME_LEVEL - 1), '--json'], h.repo)).units.compacted).toBe(0)
  })

  it('generations: a merged generation\'s stored size is its own stream\'s (the merge run stores no data)', async () => {
    const h = await history('merged-size', 3, 20_000)
    await ok(['merge', 'gen2..gen3'], h.repo)
    const g = JSON.parse((await bfs(['generations', '--json'], { repo: h.repo })).stdout) as Array<{ id: number; stored: { backup: number; now: number } }>
    const three = g.find((x) => x.id === 3)!
    expect(three.stored.backup).toBeGreaterThan(0)
    expect(three.stored.now).toBe(three.stored.backup)
    expect((await bfs(['generations'], { repo: h.repo })).stdout).not.toMatch(/\(now 0 B\)/)
  })

  it('refuses bad options with a one-line error and exit 2; a format 1 repository by name', async () => {
    const h = await history('usage', 1, 10_000)
    for (const args of [['compact', '--level', '23'], ['compact', '--level', 'x'], ['compact', '--min-age', 'soon'], ['prune', '--level', '9']]) {
      const r = await bfs(args, { repo: h.repo })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
    }
    const v1 = path.join(work, 'v1')
    await ok(['init', '--format', '1'], v1)
    const r = await bfs(['compact'], { repo: v1 })
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(/format 1 repository: 'bfs compact' needs a format 2 one/)
  })

  it('kill -9 anywhere leaves every unit readable; the next compact goes on where the killed one stopped', async () => {
    const points: Array<Record<string, unknown>> = [
      { keys: 'gens/*/unit-*', ops: ['put'] }, // before the first replace
      { keys: 'gens/*/unit-*', ops: ['put'], after: 2 }, // two units done
      { keys: 'runs/*', ops: ['put'], after: 1 }, // every unit done, the run not committed
    ]
    let k = 0
    for (const p of points) {
      // 1 MiB frames (files' default before 2026-12-04): the large-frame target, level 12
      const h = await history(`kill-${k++}`, 4, 300_000, false, ['--frame-blocks', '256'])
      const before = units(h.repo)
      const crash = await bfs(['compact', '--min-age', '0'], { repo: h.repo, env: { NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ ...p, fault: 'kill' }] }) } })
      expect(crash.stderr, JSON.stringify(p)).toContain('killed by SIGKILL')
      const mid = units(h.repo)
      const done = [...mid.values()].filter((u) => u.version === 2).length
      expect(done, JSON.stringify(p)).toBe(p.keys === 'runs/*' ? before.size : ((p.after as number | undefined) ?? 0))
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [2, 4])
      // the next compact breaks the dead one's lock, marks its run aborted and does the rest only
      const next = await bfs(['compact', '--min-age', '0', '--json'], { repo: h.repo })
      expect(next.code, next.stderr).toBe(0)
      expect(next.stderr).toContain('broke a stale maintenance lock')
      const j = JSON.parse(next.stdout.trim().split('\n').pop()!) as Record<string, any>
      expect(j.units).toMatchObject({ compacted: before.size - done, alreadyCompact: done })
      const runs = fs.readdirSync(path.join(h.repo, 'runs')).map((n) => decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(h.repo, 'runs', n)), n), n)).filter((r) => r.kind === 'compact')
      expect(runs.map((r) => r.state)).toEqual(['aborted', 'committed'])
      expect([...units(h.repo).values()].every((u) => u.version === 2 && u.level === DEFAULT_COMPACT_LEVEL)).toBe(true)
      await ok(['verify', '--all'], h.repo)
      await restoresIdentical(h, [1, 3, 4])
    }
  })

  it('an external SIGKILL at random moments, and a dead compact\'s temporary file: every generation verifies and restores identical after each, and compacting ends done', async () => {
    const h = await history('sigkill', 5, 400_000)
    // a temporary file as a compact killed between its write and its rename leaves it (a dead pid's)
    const dead = spawn('true')
    await new Promise((r) => dead.on('close', r))
    const litter = path.join(h.repo, 'gens/00000002', `unit-00000000.tmp-${(await sh('hostname')).stdout.trim()}-${dead.pid}-0123abcd`)
    fs.writeFileSync(litter, Buffer.alloc(5000, 1))
    // each unit's read is slowed, so that kills land in the middle of the run
    const env = { ...process.env, BFS_REPO: h.repo, NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['get'], fault: 'latency', latencyMs: [50, 400] }] }) }
    const runsDir = path.join(h.repo, 'runs')
    const claimedBy = (pid: number): boolean =>
      fs.readdirSync(runsDir).filter((n) => /^\d{8}$/.test(n)).some((n) => {
        const r = decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(runsDir, n)), n), n)
        return r.kind === 'compact' && r.pid === pid
      })
    let killedRunning = 0
    for (const delay of [0, 300, 700, 1100]) {
      const child = spawn(BFS, ['compact', '--min-age', '0', '-q'], { env, stdio: 'ignore' })
      // (listened for from the start: a compact that ends before its kill has closed already)
      const closed = new Promise((r) => child.on('close', r))
      // killed `delay` ms after it claimed its run (a loaded machine's start-up aside)
      for (let i = 0; i < 1500 && !claimedBy(child.pid!) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 20))
      await new Promise((r) => setTimeout(r, delay))
      if (child.exitCode === null) killedRunning++
      child.kill('SIGKILL')
      await closed
      await ok(['verify', '--all'], h.repo)
    }
    expect(killedRunning).toBeGreaterThan(0)
    await restoresIdentical(h, [1, 3, 5])
    const res = JSON.parse(await ok(['compact', '--min-age', '0', '--json'], h.repo)) as Record<string, any>
    expect(res.units.compacted + res.units.alreadyCompact).toBe(5)
    expect(fs.existsSync(litter)).toBe(false)
    expect(fs.readdirSync(path.join(h.repo, 'gens'), { recursive: true }).filter((n) => String(n).includes('.tmp-'))).toEqual([])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [1, 2, 3, 4, 5])
  })

  it('a unit whose frame does not check is left as it is (exit 4), the others are compacted', async () => {
    const h = await history('damaged', 2, 300_000)
    const f = path.join(h.repo, keys2.unit(1, 0))
    const b = fs.readFileSync(f)
    b[200] ^= 0xff // inside frame 0
    fs.writeFileSync(f, b)
    const r = await bfs(['compact', '--min-age', '0', '--json'], { repo: h.repo })
    expect(r.code).toBe(4)
    const j = JSON.parse(r.stdout) as Record<string, any>
    expect(j.units.compacted).toBe(1)
    expect(j.units.damaged).toHaveLength(1)
    expect(j.units.damaged[0].key).toBe(keys2.unit(1, 0))
    expect(fs.readFileSync(f).equals(b)).toBe(true)
    expect(units(h.repo).get('00000002/unit-00000000')!.version).toBe(2)
  })

  it('a mount (its own process) reads correctly across a compact; one mounted afterwards reads the rewritten units; the compact runs at nice 19 at the lowest best-effort I/O priority', async () => {
    const h = await history('mount', 6, 500_000)
    const mnt = path.join(work, 'mnt')
    fs.mkdirSync(mnt, { recursive: true })
    await ok(['mount', 'gen6', mnt], h.repo)
    mounts.add(mnt)
    const snap = h.snaps.get(6)!
    const same = (name: string): void => expect(fs.readFileSync(path.join(mnt, name)).equals(fs.readFileSync(path.join(snap, name))), name).toBe(true)
    // read before: these units are open in the mount (their old inodes)
    for (const n of ['t1', 't2', 'sub/s1', 'sub/s2']) same(n)
    // the compact is slowed (each unit's replace waits), so that the mount reads while it runs
    const child = spawn(BFS, ['compact', '--min-age', '0', '--json'], {
      env: { ...process.env, BFS_REPO: h.repo, NODE_ENV: 'test', BFS_TEST_FAULTS: JSON.stringify({ rules: [{ keys: 'gens/*/unit-*', ops: ['put'], fault: 'latency', latencyMs: 700 }] }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    const closed = new Promise<number>((r) => child.on('close', (c) => r(c ?? -1)))
    // running once its run is claimed (after its priority was lowered)
    const runsDir = path.join(h.repo, 'runs')
    const claimed = (): boolean => fs.readdirSync(runsDir).filter((n) => /^\d{8}$/.test(n)).some((n) => decodeRunRecord(payloadOf('run', fs.readFileSync(path.join(runsDir, n)), n), n).kind === 'compact')
    for (let i = 0; i < 600 && !claimed(); i++) await new Promise((r) => setTimeout(r, 50))
    expect(claimed()).toBe(true)
    // the compact's threads: nice 19, best-effort I/O at level 7
    const tids = fs.readdirSync(`/proc/${child.pid}/task`)
    for (const t of tids) {
      const stat = fs.readFileSync(`/proc/${child.pid}/task/${t}/stat`, 'latin1')
      expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]), `thread ${t}`).toBe(19)
    }
    expect((await sh(`ionice -p ${child.pid}`)).stdout.trim()).toBe('best-effort: prio 7')
    // reads during the compact: files read before, and files never read (opened now, old or new unit)
    let rounds = 0
    let code: number | null = null
    void closed.then((c) => (code = c))
    while (code === null) {
      for (const n of ['t1', 'sub/s2', `t${3 + (rounds % 2)}`, `sub/s${3 + (rounds % 2)}`]) same(n)
      rounds++
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(code).toBe(0)
    expect(rounds).toBeGreaterThan(2)
    expect(JSON.parse(out.trim().split('\n').pop()!).units.compacted).toBe(6)
    for (const n of ['t5', 't6', 'sub/s5', 'sub/s6']) same(n)
    expect(await diffTree(snap, mnt)).toBe('')
    await umount(mnt)
    // mounted afterwards: every unit is a rewritten v2 unit (the native read path and JavaScript)
    expect([...units(h.repo).values()].every((u) => u.version === 2)).toBe(true)
    for (const args of [['gen6', mnt], ['--no-native-read', 'gen6', mnt]]) {
      await ok(['mount', ...args], h.repo)
      mounts.add(mnt)
      expect(await diffTree(snap, mnt)).toBe('')
      await umount(mnt)
    }
  })

  it('bfs prune --compact: prunes, then compacts what is left', async () => {
    const h = await history('prune', 3, 300_000, true)
    await ok(['forget', '1'], h.repo)
    const dry = JSON.parse(await ok(['prune', '--compact', '--min-age', '0', '--dry-run', '--json'], h.repo)) as Record<string, any>
    expect(dry.compact.units.todo).toBe(3) // gen1's unit too: the dry run deletes nothing first
    const res = JSON.parse(await ok(['prune', '--compact', '--min-age', '0', '--json'], h.repo)) as Record<string, any>
    expect(res.units.deleted).toBe(1)
    expect(res.compact.units.compacted).toBe(2)
    expect(res.compact.bytes.after).toBeLessThan(res.compact.bytes.before)
    expect([...units(h.repo).keys()]).toEqual(['00000002/unit-00000000', '00000003/unit-00000000'])
    await ok(['verify', '--all'], h.repo)
    await restoresIdentical(h, [2, 3])
    const text = await ok(['prune', '--compact', '--min-age', '0'], h.repo)
    expect(text).toContain(`already compacted: 2 units`)
  })
})
